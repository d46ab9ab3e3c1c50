"""Retention: retire closed workflows' histories after ``settings.retention_ms``.

A periodic task of the engine's Faust app retires, in each partition this worker owns, the
workflows whose latest run closed (not continued as new) more than ``retention_ms`` ago. It
keeps an index of closed workflows by close time per partition: built by one scan of the
partition's ``workflows`` rows the first time it sweeps the partition after it was assigned, then
kept up by the engine's committed batches (:meth:`Retention.rows_committed`: a row that closes a
workflow goes in). A sweep takes only the expired entries off the front: its cost is what it
retires, not every row every minute. An expired workflow is retired:

1. a tombstone (``value=None``) for each of its ``{workflow_id, seq}`` keys on the compacted
   events topic, on the workflow's partition, and for its rows on the ``workflows`` and
   ``timer_terminal`` changelogs (a closed workflow has no armed timers), in one transaction of
   the partition's producer (a worker fenced out of the partition retires nothing);
2. only once it committed its rows leave the local tables (and its resident instance the cache), and
   Faust's persisted offsets move past the tombstones.

The log cleaner later drops the records and, after ``delete.retention.ms``, the tombstones; a
consumer that reads the topic meanwhile sees the tombstones (``EventConsumer`` can pass them on).
Running workflows are never touched: a workflow qualifies only when its row *and* its last
recorded event say it is closed. Retiring runs under a lock that command batches also take, so
no batch of the same worker appends to a workflow while its history is being retired. After
retirement the workflow id is unknown to the engine: a start with that id begins a new history
at seq 1 (as after a retention period elsewhere).

**A continue-as-new chain's closed runs** retire the same way while the chain goes on (a
workflow that continues as new every day would otherwise keep every run it ever had). The
index also holds, per chain, when its current run began (= when the run before it closed)
and where (``load_from_seq`` of its row: the step that closed the previous run and began this
one). Once that is older than the retention, every event before that step is retired —
except the chain's first ``WorkflowStarted`` (``chain_start_seq``), which the current run
needs (its first run id and start: the execution deadline, the start's result waiter) — with
the ``timer_terminal`` rows of the runs those events were the last of, and the resident
instance (the next command loads the current run). The history then reads: the chain's first
start, a gap, the runs from that step on (``WorkflowExecution.from_history`` takes that shape
as a chain start and a current run, the checker and the clients' readers skip the retired
seqs). After a partition moves, its new owner knows only each chain's latest boundary, so runs
closed before it retire with it: at most one retention later than they would have.

``retention_ms=0`` (``AION_RETENTION_MS=0``) disables it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import re
import time
from typing import Any, Iterable, Iterator, Protocol, Sequence

from ..codec import Codec
from ..model import RUN_CLOSING_EVENTS, WorkflowContinuedAsNew, WorkflowStarted
from ._faust import db_for, offset_row
from ._store import _prefix_items, event_keys, scan_items, workflow_rows, write_rows
from ._txn import Fenced, Record
from ..common.settings import Settings
from ..common.topics import TopicNames

log = logging.getLogger("aion.engine.retention")

#: Most workflows retired per partition per sweep (keeps each hold of the lock short).
SWEEP_LIMIT = 500


def sweep_interval_s(retention_ms: int) -> float:
    """How often to look for expired workflows: a quarter of the retention, 0.5 s to 60 s."""
    return min(60.0, max(0.5, retention_ms / 4000))


def closed_at(row: bytes) -> int | None:
    """When the workflow of a ``workflows`` row closed; None while it runs (or continued as new)."""
    if b'"status": "RUNNING"' in row:
        return None
    try:
        r = json.loads(row)
    except ValueError:
        return None
    closed = r.get("closed_at_ms")
    if r.get("status") in (None, "RUNNING", "CONTINUED_AS_NEW") or not isinstance(closed, int):
        return None
    return closed


def expired(row: bytes, now_ms: int, retention_ms: int) -> bool:
    """Whether a ``workflows`` row describes a closed workflow older than the retention."""
    closed = closed_at(row)
    return closed is not None and closed + retention_ms <= now_ms


#: The two seqs of a ``workflows`` row (``_store.visibility_row`` writes them last, in this order).
_SEQS = re.compile(rb'"load_from_seq": (\d+), "chain_start_seq": (\d+)')


def run_bound(row: bytes) -> tuple[int, int, int] | None:
    """``(started_at_ms, load_from_seq, chain_start_seq)`` of a ``workflows`` row whose
    continue-as-new chain has closed runs before its current one (events between its first
    start and ``load_from_seq``); else None."""
    if b'"load_from_seq"' not in row:
        return None
    try:
        r = json.loads(row)
        started, load_from, chain_start = r.get("started_at_ms"), r.get("load_from_seq"), r.get("chain_start_seq")
    except ValueError:
        return None
    if not (isinstance(started, int) and isinstance(load_from, int) and isinstance(chain_start, int)):
        return None
    if chain_start < 1 or load_from <= chain_start + 1:
        return None  # the first run of its chain: nothing closed before it
    return started, load_from, chain_start


class _Index:
    """One partition's index (module docs): closed workflows by close time, and chains'
    run boundaries by the time the run before them closed."""

    __slots__ = ("closed", "runs", "bounds")

    def __init__(self) -> None:
        #: heap of (closed_at_ms, workflow id)
        self.closed: list[tuple[int, str]] = []
        #: heap of (closed_at_ms of the run before, workflow id, load_from_seq)
        self.runs: list[tuple[int, str, int]] = []
        #: workflow id -> the latest load_from_seq in ``runs`` (one entry per boundary, not per row)
        self.bounds: dict[str, int] = {}

    def add(self, rows: Iterable[tuple[bytes, bytes | None]]) -> None:
        for key, value in rows:
            if value is None:
                continue
            closed = closed_at(value)
            if closed is not None:
                heapq.heappush(self.closed, (closed, key.decode()))
            # Most rows are of a first run: told apart without parsing (every committed row comes here).
            m = _SEQS.search(value)
            if m is None or int(m[1]) <= int(m[2]) + 1:
                continue
            wid = key.decode()
            if self.bounds.get(wid, 0) >= int(m[1]):
                continue  # a later step of a run already in the index
            bound = run_bound(value)
            if bound is not None:
                self.add_run(bound[0], wid, bound[1])

    def add_run(self, started_ms: int, workflow_id: str, upto: int) -> None:
        """A chain's run boundary (one entry per boundary: a later one of the same chain only)."""
        if self.bounds.get(workflow_id, 0) < upto:
            self.bounds[workflow_id] = upto
            heapq.heappush(self.runs, (started_ms, workflow_id, upto))

    def expired(self, now_ms: int, retention_ms: int) -> tuple[list[str], list[tuple[str, int]]]:
        """Take the expired entries off both heaps (at most ``SWEEP_LIMIT`` each)."""
        workflows: list[str] = []
        closed, runs = self.closed, self.runs
        while closed and closed[0][0] + retention_ms <= now_ms and len(workflows) < SWEEP_LIMIT:
            workflows.append(heapq.heappop(closed)[1])
        chains: dict[str, int] = {}
        while runs and runs[0][0] + retention_ms <= now_ms and len(chains) < SWEEP_LIMIT:
            _, wid, upto = heapq.heappop(runs)
            chains[wid] = max(upto, chains.get(wid, 0))
            if self.bounds.get(wid) == upto:
                del self.bounds[wid]
        return workflows, list(chains.items())


def _keys_with_prefix(db: Any, prefix: bytes) -> list[bytes]:
    return [key for key, _ in _prefix_items(db, prefix)]


class RetentionOutput(Protocol):
    """What the retention writes through: the engine's transactions (``_engine._EngineOutput``)."""

    def lock_for(self, partition: int) -> asyncio.Lock: ...

    def owned(self) -> set[int]: ...

    async def write(self, partition: int, records: Sequence[Any]) -> list[int]: ...

    def lost(self, partition: int) -> None: ...

    def forget(self, partition: int, workflow_ids: Iterable[str]) -> None:
        """The workflows left the tables: drop their resident instances."""
        ...


class Retention:
    """The retention service of one engine worker (started by ``Engine.__init__``): handed
    the app (for its task), the tables (``_app.EngineTables``) and the engine's output."""

    def __init__(self, app: Any, settings: Settings, codec: Codec, names: TopicNames, tables: Any,
                 output: RetentionOutput) -> None:
        self.app = app
        self.codec = codec
        self.names = names
        self.history, self.workflows, self.terminal = tables.history, tables.workflows, tables.terminal
        self.output = output
        self.retention_ms = settings.retention_ms
        self.stats = {"retired_workflows": 0, "retired_runs_of": 0, "tombstones": 0, "sweeps": 0, "index_scans": 0}
        #: partition -> its index (closed workflows, chains' run boundaries)
        self._index_of: dict[int, _Index] = {}
        if self.retention_ms <= 0:
            return
        app.task(self._loop)

    async def _loop(self) -> None:
        interval = sweep_interval_s(self.retention_ms)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention sweep failed; retrying in %.1fs", interval)

    def rows_committed(self, partition: int, records: Iterable[Record]) -> None:
        """The engine committed these ``workflows`` row records of ``partition``: the ones that
        close a workflow, or begin a chain's next run, join the index (when the partition has
        one; else its first sweep scans)."""
        index = self._index_of.get(partition)  # none while retention is off: sweeps make them
        if index is not None:
            index.add((key, value) for _, key, value, *_ in records)

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """These partitions left this worker: their index is built again if they come back."""
        for p in partitions:
            self._index_of.pop(p, None)

    async def _index(self, partition: int) -> _Index:
        """The partition's index, scanning its rows once (yielding to the loop as it goes)."""
        index = self._index_of.get(partition)
        if index is not None:
            return index
        # Rows committed while the scan yields go in here (rows_committed), so none is missed.
        pending = _Index()
        self._index_of[partition] = pending
        built = _Index()
        rows = iter(scan_items(self.workflows, partition))
        while chunk := list(itertools.islice(rows, 1000)):
            built.add(chunk)
            await asyncio.sleep(0)
        # an entry seen twice is harmless: _retire and _retire_runs check the row again
        built.closed.extend(pending.closed)
        heapq.heapify(built.closed)
        for start, wid, upto in pending.runs:
            built.add_run(start, wid, upto)
        self.stats["index_scans"] += 1
        if self._index_of.get(partition) is pending:  # still owned (not forgotten meanwhile)
            self._index_of[partition] = built
        return built

    async def sweep(self, now_ms: int | None = None) -> int:
        """Retire the expired workflows of the owned partitions (at most ``SWEEP_LIMIT`` each);
        returns how many."""
        app = self.app
        if app.rebalancing or getattr(app, "in_recovery", False):
            return 0
        now = int(time.time() * 1000) if now_ms is None else now_ms
        retired = 0
        owned = self.output.owned()
        self.forget_partitions([p for p in self._index_of if p not in owned])
        for p in sorted(owned):
            index = await self._index(p)
            candidates, chains = index.expired(now, self.retention_ms)  # each checked again below
            if candidates or chains:
                async with self.output.lock_for(p):  # the partition's batches wait (module docs)
                    if p in self.output.owned() and candidates:
                        retired += await self._retire(p, candidates, now)
                    if p in self.output.owned() and chains:
                        await self._retire_runs(p, chains)
        self.stats["sweeps"] += 1
        return retired

    def _history_keys(self, partition: int, workflow_id: str) -> tuple[list[bytes], bool]:
        """The workflow's history keys, and whether its last event closes the workflow."""
        codec = self.codec
        db = db_for(self.history, partition)
        keys: list[bytes] = []
        last: tuple[int, bytes] | None = None
        for key, seq, value in workflow_rows(codec, db, workflow_id):
            keys.append(key)
            if value is not None and (last is None or seq > last[0]):
                last = (seq, value)
        if last is None:
            return keys, False
        body = codec.decode_event(last[1]).body
        return keys, isinstance(body, RUN_CLOSING_EVENTS) and not isinstance(body, WorkflowContinuedAsNew)

    async def _retire(self, partition: int, workflow_ids: list[str], now_ms: int) -> int:
        wf_db = db_for(self.workflows, partition)
        plan: list[tuple[str, list[bytes]]] = []
        for wid in workflow_ids:
            row = wf_db.get(wid.encode())
            if row is None or not expired(row, now_ms, self.retention_ms):
                continue  # restarted (or already gone) since the scan
            keys, closed = self._history_keys(partition, wid)
            if not closed:
                continue  # the row lags the history: the workflow is running again
            plan.append((wid, keys))
        if not plan:
            return 0
        # The timer wheel's terminal states of the workflow's runs (closed-run markers) go too.
        term_db = db_for(self.terminal, partition) if self.terminal is not None else None
        term_keys = [key for wid, _ in plan for key in _keys_with_prefix(term_db, wid.encode() + b"\0")] \
            if term_db is not None else []
        events = [key for _, keys in plan for key in keys]
        if not await self._tombstones(partition, [(self.history, events), (self.workflows, [wid.encode() for wid, _ in plan]),
                                                  (self.terminal, term_keys)]):
            return 0
        self.output.forget(partition, [wid for wid, _ in plan])
        self.stats["retired_workflows"] += len(plan)
        self.stats["tombstones"] += len(events)
        log.info("retired %d closed workflow(s) of partition %d (%d tombstones)", len(plan), partition, len(events))
        return len(plan)

    async def _tombstones(self, partition: int, tables: Sequence[tuple[Any, Sequence[bytes]]]) -> bool:
        """Tombstones for the keys of each ``(table, keys)`` on its changelog, in one transaction
        of the partition's producer (a worker fenced out of the partition writes none: False);
        once it committed, the rows leave each local table with the changelog offset they reach,
        in one write batch per table."""
        parts = [(table, keys) for table, keys in tables if table is not None and keys]
        records: list[Record] = [(table.changelog_topic.get_topic_name(), key, None, partition)
                                 for table, keys in parts for key in keys]
        try:
            offsets = await self.output.write(partition, records)
        except Fenced:
            self.output.lost(partition)
            return False
        i = 0
        for table, keys in parts:
            write_rows(db_for(table, partition),
                       [*((key, None) for key in keys), offset_row(table, max(offsets[i:i + len(keys)]))])
            i += len(keys)
        return True

    def _runs_plan(self, partition: int, workflow_id: str, upto: int) -> tuple[list[bytes], list[bytes]] | None:
        """What retiring the runs of ``workflow_id``'s chain before ``upto`` takes: its history
        keys before that step (except the chain's first start) and the ``timer_terminal`` rows
        of the runs whose events are all among them; None when its row no longer says so."""
        row = db_for(self.workflows, partition).get(workflow_id.encode())
        bound = run_bound(row) if row is not None else None
        if bound is None:
            return None
        _, load_from, chain_start = bound
        if not chain_start < upto <= load_from:
            return None  # another chain began since (or an older engine's row): keep it all
        codec = self.codec
        db = db_for(self.history, partition)
        keys: list[bytes] = []
        retired_runs: set[str] = set()
        kept_runs: set[str] = set()
        for key, seq, value in workflow_rows(codec, db, workflow_id):
            if seq < upto and seq != chain_start and value is not None:
                keys.append(key)
                retired_runs.add(codec.decode_event(value).run_id)
        if not keys:
            return None
        # The step at ``upto`` keeps the run before's close (its terminal rows stay, as a rebuild
        # from what is kept makes them); it ends at the next run's start.
        key_of = event_keys(codec, workflow_id)
        seq = upto
        while (raw := db.get(key_of(seq))) is not None:
            ev = codec.decode_event(raw)
            kept_runs.add(ev.run_id)
            if isinstance(ev.body, WorkflowStarted):
                break
            seq += 1
        term: list[bytes] = []
        term_db = db_for(self.terminal, partition) if self.terminal is not None else None
        if term_db is not None:
            for run_id in sorted(retired_runs - kept_runs):
                term.extend(_keys_with_prefix(term_db, f"{workflow_id}\0{run_id}\0".encode()))
        return keys, term

    async def _retire_runs(self, partition: int, chains: list[tuple[str, int]]) -> int:
        """Retire the closed runs of these chains (``(workflow id, load_from_seq)``): module docs."""
        plan = [(wid, got) for wid, upto in chains if (got := self._runs_plan(partition, wid, upto)) is not None]
        if not plan:
            return 0
        events = [key for _, (keys, _t) in plan for key in keys]
        if not await self._tombstones(partition, [(self.history, events),
                                                  (self.terminal, [key for _, (_k, tkeys) in plan for key in tkeys])]):
            return 0
        self.output.forget(partition, [wid for wid, _ in plan])  # the next command loads the current run
        self.stats["retired_runs_of"] += len(plan)
        self.stats["tombstones"] += len(events)
        log.info("retired the closed runs of %d continue-as-new chain(s) of partition %d (%d tombstones)",
                 len(plan), partition, len(events))
        return len(plan)
