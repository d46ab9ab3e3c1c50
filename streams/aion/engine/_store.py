"""Partition-local access to the engine's RocksDB tables.

Faust keeps one rocksdict database per table partition. The engine writes its rows there
itself, right after Kafka confirmed the matching changelog record (so the local cache never
holds what the log does not), and reads a workflow's history with one prefix scan: every
history key is the Avro-encoded ``EventKey {workflow_id, seq}``, whose bytes start with the
schema header and the length-prefixed workflow id, so all keys of one workflow share a prefix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Collection, Iterable, Iterator

import faust
from faust.types import TP

from ..codec import Codec
from ..model import Event, EventKey, WorkflowStarted
from ..runtime import WorkflowExecution

if TYPE_CHECKING:
    from ..common.settings import Settings

log = logging.getLogger("aion.engine")


from ._changelog import LATEST, _consumer, _offsets_at, scan_ranges
from ._faust import db_for as _db
from ._faust import (forget_recovery_skips, idle_databases, offset_row, open_idle, set_idle_limit, skip_recovery_of,
                     standby_partitions, stored_offset)


def workflow_key_prefix(codec: Codec, workflow_id: str) -> bytes:
    """The byte prefix shared by every history key of ``workflow_id``.

    Avro encodes the key as ``header + string(workflow_id) + long(seq)``; the header and the
    length-prefixed string do not depend on ``seq``, so cutting off the ``seq`` varint of a
    key with seq=0 (one byte, ``0x00``) leaves the prefix.
    """
    return codec.encode_event_key(EventKey(workflow_id, 0))[:-1]


def event_keys(codec: Codec, workflow_id: str) -> Callable[[int], bytes]:
    """``seq -> `` the history key of ``(workflow_id, seq)``, as ``codec.encode_event_key`` makes
    it, without the encoder: the shared prefix and Avro's long (zig-zag, then base-128 with the
    low group first)."""
    prefix = workflow_key_prefix(codec, workflow_id)

    def key(seq: int) -> bytes:
        n = (seq << 1) ^ (seq >> 63)
        out = bytearray(prefix)
        while n > 0x7F:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)

    return key


@dataclass
class CurrentRun:
    """A cache miss's read (:meth:`HistoryStore.load_run`): the history from the start of the
    step that began the current run, and the chain's first ``WorkflowStarted`` when it is
    before them (else None)."""

    chain_start: Event | None
    events: list[Event]


class HistoryStore:
    """Reads and writes of the ``history`` table (its changelog is the events topic)."""

    def __init__(self, table: Any, codec: Codec) -> None:
        self.table = table
        self.codec = codec

    def load(self, partition: int, workflow_id: str) -> list[Event]:
        """Every recorded event of ``workflow_id``, ordered by seq."""
        db = _db(self.table, partition)
        prefix = workflow_key_prefix(self.codec, workflow_id)
        events: list[Event] = []
        for key, value in _prefix_items(db, prefix):
            if value is None:
                continue
            ev = self.codec.decode_event(value)
            if ev.workflow_id == workflow_id:
                events.append(ev)
        events.sort(key=lambda e: e.seq)
        return events

    def load_run(self, partition: int, workflow_id: str, row: bytes | None) -> CurrentRun | None:
        """What a cache miss of ``workflow_id`` replays (:meth:`WorkflowExecution.from_history
        <aion.runtime.WorkflowExecution.from_history>` with ``chain_start``): the events from
        the start of the step that began its current run, and the chain's first
        ``WorkflowStarted`` — read by key, one point read each, so the cost is the current
        run's whatever the number of runs before it (:meth:`load` reads and decodes them all).

        ``row`` is the workflow's ``workflows`` row, which says where both are
        (:func:`visibility_row`). None when it does not (no row, a row of an older engine) or
        when the history does not hold what it says: then :meth:`load` reads the whole history.
        """
        if not row:
            return None
        try:
            r = json.loads(row)
            load_from, chain_start = int(r["load_from_seq"]), int(r["chain_start_seq"])
        except (ValueError, TypeError, KeyError):
            return None
        if load_from < 1 or chain_start < 1:
            return None  # no run recorded yet
        db = _db(self.table, partition)
        key = event_keys(self.codec, workflow_id)
        decode = self.codec.decode_event
        seed = None
        if chain_start < load_from:
            raw = db.get(key(chain_start))
            seed = decode(raw) if raw is not None else None
            if seed is None or not isinstance(seed.body, WorkflowStarted):
                return None
        events: list[Event] = []
        seq = load_from
        while (raw := db.get(key(seq))) is not None:
            events.append(decode(raw))
            seq += 1
        if not events or not any(isinstance(e.body, WorkflowStarted) for e in events):
            return None
        return CurrentRun(seed, events)

    def between(self, partition: int, workflow_id: str, from_seq: int, to_seq: int) -> Iterator[Event]:
        """The events of ``workflow_id`` with seq in ``[from_seq, to_seq)``, in seq order, read
        one by one as the caller goes (a history page of an execution that holds its current
        run only: ``WorkflowExecution.earlier``). Seqs the retention retired (a chain's earlier
        runs, ``_retention.py``) are skipped: at a missing seq the workflow's keys are looked
        through once for the next one held (few: the earlier runs are gone)."""
        db = _db(self.table, partition)
        key = event_keys(self.codec, workflow_id)
        seq = from_seq
        held: list[int] | None = None
        while seq < to_seq:
            raw = db.get(key(seq))
            if raw is not None:
                yield self.codec.decode_event(raw)
                seq += 1
                continue
            if held is None:
                held = sorted(self.seqs(partition, workflow_id))
            later = [s for s in held if seq < s < to_seq]
            if not later:
                return
            seq = later[0]

    def seqs(self, partition: int, workflow_id: str) -> Iterator[int]:
        """The seqs of ``workflow_id``'s events held in the table (in key order, not seq order)."""
        for _, seq, _ in workflow_rows(self.codec, _db(self.table, partition), workflow_id):
            yield seq

    def write_local(self, partition: int, rows: list[tuple[bytes, bytes | None]], offset: int) -> None:
        """Committed events' rows, and the changelog ``offset`` they reach (Faust's recovery
        starts after it), in one write batch."""
        write_rows(_db(self.table, partition), [*rows, offset_row(self.table, offset)])


def workflow_rows(codec: Codec, db: Any, workflow_id: str) -> Iterator[tuple[bytes, int, bytes]]:
    """``(key, seq, value)`` of each history row of ``workflow_id`` in ``db`` (a partition's
    ``history`` database), in key order (not seq order); only the keys are decoded."""
    decode_key = codec.decode_event_key
    for key, value in _prefix_items(db, workflow_key_prefix(codec, workflow_id)):
        ek = decode_key(key)
        if ek.workflow_id == workflow_id:
            yield key, ek.seq, value


def write_rows(db: Any, rows: Iterable[tuple[bytes, bytes | None]]) -> None:
    """Write changelog records' rows into ``db`` (a rocksdict database) in one write batch:
    in order, as one ``set_row`` each would (a later row of a key wins), in about half the
    time of a write per row (RocksDB's write path once, not once per row), and all or none."""
    import rocksdict

    batch = rocksdict.WriteBatch(raw_mode=True)
    for key, value in rows:
        set_row(batch, key, value)
    db.write(batch)


def set_row(target: Any, key: bytes, value: bytes | None) -> None:
    """Write one changelog record's row into ``target`` (a rocksdict database or write batch):
    no value deletes the row."""
    if value is None:
        target.delete(key)
    else:
        target.put(key, value)


def _prefix_items(db: Any, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    it = db.iter()
    it.seek(prefix)
    while it.valid():
        key = it.key()
        if not key.startswith(prefix):
            break
        yield key, it.value()
        it.next()


def scan_items(table: Any, partition: int, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
    """Rows of ``table`` in ``partition`` in key order from ``start``."""
    db = _db(table, partition)
    it = db.iter()
    if start:
        it.seek(start)
    else:
        it.seek_to_first()
    while it.valid():
        key = it.key()
        if not key.startswith(b"__faust"):
            yield key, it.value()
        it.next()


class CaughtUpTable(faust.Table):
    """An engine table (raw bytes rows, RocksDB) fenced in and caught up from its changelog
    before Faust's recovery reads it.

    On every assignment, before Faust's recovery starts:

    1. **Fencing.** ``aion_before_restore`` (the engine's), before Faust takes up and lets go of
       the partitions' databases (kept open either way: ``_faust.keep_databases_open``), drops the partitions that moved away and initialises the
       transactional producer of every newly assigned commands partition (``_txn.py``); the
       partitions it kept from the previous generation go on untouched. The previous owner's open
       transaction is aborted and its producer can write nothing more. Only then is the
       partition's state read, so what is restored is all the previous owner will ever have
       written (a stalled worker that wakes up cannot append behind the restore's back).
    2. **Catch-up.** Each assigned active partition not kept is read from its stored offset to the end
       of its changelog with librdkafka, committed records only, straight into RocksDB (the
       rebuild's reader, hundreds of thousands of records/s; Faust's recovery reads ~10,000
       records/s), and the stored offset is set to the end of the log. The end of a changelog
       written in transactions is a commit marker, which Faust's recovery (outside its own
       exactly-once mode) would wait for forever as if it were a record: after the catch-up it
       finds nothing left to read.

    Standby partitions are left to Faust.
    """

    #: Set by the engine: the settings the catch-up reads the changelog with.
    aion_settings: "Settings | None" = None
    #: Set by the engine: fences in the assigned partitions before any table is read.
    #: Returns the partitions it kept from the previous generation (current: not caught up).
    aion_before_restore: "Callable[[int], Awaitable[set[int]]] | None" = None
    #: Set by the engine: told after this table's catch-up of a generation ended.
    aion_after_catch_up: "Callable[[int], None] | None" = None

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        # The engine first: it drops the partitions that moved away (after their batch in
        # flight) before Faust lets go of their databases, and fences in the new ones.
        kept: set[int] = set()
        if self.aion_before_restore is not None:
            kept = await self.aion_before_restore(generation_id)
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        if self.aion_settings is None:
            return
        # Faust calls the tables one after the other: the first call starts the catch-up of
        # every table at once (one reader for all), each call waits for it.
        gen, jobs = getattr(self.app, "_aion_catch_ups", (None, {}))
        if gen != generation_id:
            forget_recovery_skips(self.app)
            tables = [t for t in self.app.tables.values() if isinstance(t, CaughtUpTable)]
            joint = asyncio.ensure_future(_catch_up_tables(self.app, tables, assigned, kept))
            jobs = {t.name: joint for t in tables}
            self.app._aion_catch_ups = (generation_id, jobs)
        job = jobs.get(self.name)
        if job is not None:
            await asyncio.shield(job)
        if self.aion_after_catch_up is not None:
            self.aion_after_catch_up(generation_id)


async def _catch_up_tables(app: Any, tables: list[CaughtUpTable], assigned: set[TP], kept: Collection[int]) -> bool:
    """Whether the tables' assigned active partitions are caught up (False: the catch-up failed
    and Faust's recovery reads them). Partitions the engine ``kept`` from the previous
    generation are current and written by the engine as this runs: neither this catch-up nor
    Faust's recovery touches them (either would put back rows older than the engine's latest).

    One reader for every table (:func:`catch_up`): a reader per table, five side by side, each
    connecting and looking up its ends anew, took 0.3-0.5 s for a few records under load while
    the partitions that moved waited (issue 17)."""
    settings = next((t.aion_settings for t in tables if t.aion_settings is not None), None)
    standbys = standby_partitions(app)
    work: dict[str, tuple[Any, str, dict[int, int]]] = {}
    for t in tables:
        topic = t.changelog_topic.get_topic_name()
        mine = {tp.partition for tp in assigned if tp.topic == topic and tp not in standbys}
        skip_recovery_of(app, {TP(topic, p) for p in mine & set(kept)})
        starts = {p: (stored_offset(t, p) or -1) + 1 for p in mine - set(kept)}
        if starts:
            work[t.name] = (t.data, topic, starts)
    if settings is None or not work:
        return True
    t0 = time.monotonic()
    try:
        read = await asyncio.get_running_loop().run_in_executor(None, catch_up, work, settings)
    except Exception as exc:  # Faust's recovery reads them instead: slower, not wrong
        log.warning("catch-up of %s failed (%s: %s); Faust's recovery reads them",
                    {name: sorted(starts) for name, (_, _, starts) in work.items()}, type(exc).__name__, exc)
        return False
    for _store, topic, starts in work.values():
        skip_recovery_of(app, {TP(topic, p) for p in starts})
    log.info("caught up %s records (partitions %s) in %.2fs before recovery", read,
             sorted({p for _, _, starts in work.values() for p in starts}), time.monotonic() - t0)
    return True


def warm_up(tables: Iterable[Any], settings: "Settings", partitions: int) -> dict[str, int]:
    """Before a worker joins its group: catch up the partitions its data folder holds (as an
    owner or a standby, before it stopped) of each table, from their stored offsets to the end
    of their changelogs (committed records only, as the catch-up of an assignment reads them),
    then open the databases of the other partitions (:func:`open_databases`).

    A restarted worker's copies lag by its downtime. Read at the assignment, that lag was read
    while the partitions it took over waited (a worker joining again under load: 1.0–1.4 s of
    the hand-over, for a second or two of records read by a process just started, issue 17);
    read here, the assignment's catch-up reads only what was written since. Nothing else runs
    yet. Returns the records read per table; a catch-up that fails is logged and left to the
    assignment's."""
    tables = list(tables)
    work: dict[str, tuple[Any, str, dict[int, int]]] = {}
    for table in tables:
        store = table.data
        local = [p for p in range(partitions) if store.partition_path(p).exists()]
        starts = {p: off + 1 for p in local if (off := stored_offset(table, p)) is not None}
        if starts:
            work[table.name] = (store, table.changelog_topic.get_topic_name(), starts)
    read: dict[str, int] = {}
    if work:
        t0 = time.monotonic()
        try:
            read = catch_up(work, settings)
        except Exception as exc:  # the assignment's catch-up reads it
            log.warning("warm-up before joining failed (%s: %s); the assignment's catch-up reads it",
                        type(exc).__name__, exc)
        else:
            log.info("warmed up the local copies before joining the group: %s records (partitions %s) in %.2fs",
                     read, {name: sorted(starts) for name, (_, _, starts) in work.items()}, time.monotonic() - t0)
    open_databases(tables, partitions)
    return read


def open_files() -> int:
    """How many files (and sockets) this process has open (0 where the system does not say)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def open_databases(tables: list[Any], partitions: int, files: int | None = None,
                   count_open: Callable[[], int] = open_files) -> int:
    """Open every table's database of every partition, idle (``_faust.keep_databases_open``),
    before the worker joins its group, so that no assignment waits for one to open — one
    partition after the other, until the process's open files (``count_open``) reach a quarter
    of its limit (``files``: its soft ``RLIMIT_NOFILE``). Returns how many it opened.

    A hand-over's opens used to run on the event loop while every partition of the worker
    taking over waited: 15–30 of them, 10–70 ms each under load (issue 17); here they cost the
    start-up ~5–15 ms each, before the worker has anything to serve. When the limit stops it
    early (or an open fails), each store keeps at most as many idle databases as it opened
    here (``_faust.set_idle_limit``): a revoke beyond that closes the database, as Faust did."""
    if files is None:
        import resource

        files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if files == resource.RLIM_INFINITY:
            files = 1 << 20
    for t in tables:
        open_idle(t.data)  # what the warm-up's catch-up opened goes idle
    t0 = time.monotonic()
    opened = done = 0  # done: partitions opened ahead, in order
    stopped = ""
    for p in range(partitions):
        missing = any(p not in idle_databases(t.data) for t in tables)
        if missing and count_open() >= files // 4:
            stopped = f"the open files limit ({files}, raise it with ulimit -n)"
            break
        try:
            opened += sum(open_idle(t.data, p) for t in tables)
        except Exception as exc:  # that partition opens at its assignment, as before
            stopped = f"an open failed ({type(exc).__name__}: {exc})"
            break
        done = p + 1
    for t in tables:
        set_idle_limit(t.data, None if done == partitions else len(idle_databases(t.data)))
    if opened:
        log.info("opened %d table databases before joining the group in %.2fs", opened, time.monotonic() - t0)
    if stopped:
        ready = min(len(idle_databases(t.data)) for t in tables) if tables else 0
        log.warning("the table databases of %d of the %d partitions are open before joining the group: %s "
                    "stopped the opening ahead at partition %d; the others open while their partitions wait "
                    "at a hand-over (%d files open now)", ready, partitions, stopped, done, count_open())
    return opened


def catch_up_state(app: Any, generation_id: int) -> bool | None:
    """Where the catch-up of the assignment of ``generation_id`` stands: None while any table's
    catch-up of it runs (or none started yet: the record is another assignment's), True once
    every table caught up, False once they are done and one failed (Faust's recovery reads
    that table's partitions; only its completion says they are restored)."""
    gen, jobs = getattr(app, "_aion_catch_ups", (None, {}))
    if gen != generation_id:
        return None
    if not all(job.done() for job in jobs.values()):
        return None
    return all(not job.cancelled() and job.exception() is None and job.result() is not False
               for job in jobs.values())


#: A catch-up that reads nothing for this long gives up (Faust's recovery then reads it all):
#: it runs inside the rebalance callback, which must not hang on a broker that is restarting.
STALL_S = 15.0


def catch_up(work: dict[str, tuple[Any, str, dict[int, int]]], settings: "Settings",
             flush_bytes: int = 32 * 1024 * 1024) -> dict[str, int]:
    """For each table of ``work`` (name -> (its Faust rocksdict store, its changelog topic,
    partition -> first offset)): read each partition of the changelog from its first offset to
    the end (the last stable offset: committed records only) into the store's database of that
    partition, moving the stored offset along (as Faust's ``apply_changelog_batch`` does: the
    offset goes in the same write batch as the rows), and finally to the last offset of the log
    (a commit marker, past every record read). One librdkafka reader for all of them. Returns
    the records read per table."""
    import rocksdict

    by_topic = {topic: (name, store) for name, (store, topic, _starts) in work.items()}
    dbs = {(topic, p): store._db_for_partition(p) for name, (store, topic, starts) in work.items() for p in starts}
    c = _consumer(settings, "catch-up")
    try:
        # Every table's partitions in one look-up (a broker that is down: STALL_S in all).
        highs = _offsets_at(c, [(topic, p) for _store, topic, starts in work.values() for p in sorted(starts)],
                            LATEST, timeout=STALL_S)
        first = {(topic, p): start for _store, topic, starts in work.values() for p, start in starts.items()}
        ranges = {tp: (min(first[tp], highs[tp]), highs[tp]) for tp in first}
        batches: dict[tuple[str, int], Any] = {}
        last: dict[tuple[str, int], int] = {}
        counts = {name: 0 for name in work}
        pending = 0

        def flush() -> None:
            for tp, batch in batches.items():
                batch.put(by_topic[tp[0]][1].offset_key, str(last[tp]).encode())  # as Store.set_persisted_offset
                dbs[tp].write(batch)
            batches.clear()

        for topic, p, offset, key, value in scan_ranges(c, ranges, timeout_s=STALL_S):
            tp = (topic, p)
            batch = batches.get(tp)
            if batch is None:
                batch = batches[tp] = rocksdict.WriteBatch(raw_mode=True)
            set_row(batch, key, value)
            last[tp] = offset
            counts[by_topic[topic][0]] += 1
            pending += len(key or b"") + len(value or b"")
            if pending >= flush_bytes:
                flush()
                pending = 0
        flush()
    finally:
        c.close()
    for tp, high in highs.items():  # past the trailing control records: nothing left for Faust to wait for
        if high > 0 and high - 1 > last.get(tp, first[tp] - 1):
            dbs[tp].put(by_topic[tp[0]][1].offset_key, str(high - 1).encode())
    return counts


#: ``json.dumps(row, default=str)`` without building an encoder per call (the same bytes:
#: ``dumps`` makes this very encoder when it is given ``default``).
_ROW_JSON = json.JSONEncoder(default=str)


def visibility_row(ex: Any) -> bytes:
    """The ``workflows`` table row: status and search attributes (the visibility index), and
    where a cache miss reads the history from (``load_from_seq``, ``chain_start_seq``). Its
    start time and task queue are the current run's (as Temporal lists an execution), not the
    first run's of a continue-as-new chain, and no step walks the history to find them."""
    run = ex.run if type(ex) is WorkflowExecution else None
    if run is None:
        return _visibility_row_of(ex)
    # An execution with a run (every row the batch path writes): its fields read directly,
    # the same row as _visibility_row_of's (a unit test holds them equal).
    history = ex.history
    status = run.status
    started = run.started
    return _ROW_JSON.encode({
        "workflow_id": ex.workflow_id,
        "workflow_type": started.workflow_type,
        "run_id": run.run_id,
        "status": status,
        "history_length": (ex.next_seq or 1) - 1,
        "started_at_ms": run.started_at_ms,
        "closed_at_ms": history[-1].recorded_at_ms if history and status != "RUNNING" else None,
        "task_queue": started.task_queue,
        "search_attributes": run.search_attributes,
        "search_attribute_types": run.search_attribute_types,
        "code_version": started.code_version or "",
        "load_from_seq": ex.step_start_seq,
        "chain_start_seq": ex.chain_start_seq,
    }).encode()


def _visibility_row_of(ex: Any) -> bytes:
    """:func:`visibility_row` of anything that has (some of) an execution's attributes."""
    get = lambda name, default=None: getattr(ex, name, default)  # noqa: E731
    history = get("history", []) or []
    run = get("run")
    if run is not None:
        started_at, task_queue = run.started_at_ms, getattr(run.started, "task_queue", None)
    else:
        first = next((e for e in history if type(e.body).__name__ == "WorkflowStarted"), None)
        started_at = first.recorded_at_ms if first else None
        task_queue = getattr(first.body, "task_queue", None) if first else None
    row = {
        "workflow_id": get("workflow_id"),
        "workflow_type": get("workflow_type"),
        "run_id": get("run_id"),
        "status": get("status"),
        "history_length": (get("next_seq", len(history) + 1) or 1) - 1,
        "started_at_ms": started_at,
        "closed_at_ms": history[-1].recorded_at_ms if history and get("status") not in (None, "RUNNING") else None,
        "task_queue": task_queue,
        "search_attributes": get("search_attributes", {}) or {},
        # the types of the typed ones (aion.common): a list filter compares those by type
        "search_attribute_types": get("search_attribute_types", {}) or {},
        # the build the current run is pinned to ("" = the workers' own code): aion deploy unload/list
        "code_version": getattr(getattr(get("run"), "started", None), "code_version", "") or "",
        # where a cache miss reads the history from (HistoryStore.load_run): the step that began
        # the current run, and the chain's first WorkflowStarted
        "load_from_seq": get("step_start_seq", 0),
        "chain_start_seq": get("chain_start_seq", 0),
    }
    return _ROW_JSON.encode(row).encode()
