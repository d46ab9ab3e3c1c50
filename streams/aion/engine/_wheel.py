"""The timer wheel: durable timer rows, a near-due window in memory, fires as ``FireTimer``.

One :class:`TimerWheel` per engine worker serves the partitions the worker owns
(storage and window logic per partition: ``_timers.py``).

- **Arm / disarm.** ``stage()`` turns a batch's ``ScheduleTimer`` / ``DropTimer`` effects into
  rows of the ``timers`` table: pending (:class:`Pending`: seen by the wheel's reads, not yet in
  RocksDB) and returned as changelog records that go in the batch's transaction; they reach the
  local table once it has committed (``committed``), an aborted one's are forgotten
  (``rolled_back``). A timer due within the window (``WINDOW_MS``) also goes into memory at
  once; later ones only into the table, with an index row so a ``DropTimer`` finds them.
- **The window.** The loop loads rows due before ``now + WINDOW_MS`` from the table in slices
  of at most ``SCAN_ROWS`` rows, starting at the partition's persisted scan position (so a
  worker taking over never walks the deleted rows firing leaves behind), and again every
  ``ADVANCE_S`` as time moves on.
- **Firing inside the batches** (``AION_TIMER_FIRE=inline``, the default). When a partition
  has timers due, the loop asks the engine to run the partition's batch pipeline
  (``TimerOutput.fire_due``); the batch takes up to ``batch_size`` of them (:meth:`TimerWheel.take_inline`)
  and steps their ``FireTimer`` commands after the commands it read, with the deletion of
  their rows in its transaction. A fire costs no transaction, produce or fetch of its own, and
  ``TimerFired`` commits with the row's deletion: exactly once by construction. A batch that
  fails with fires in it turns the partition to the topic way for ``INLINE_OFF_S``
  (:meth:`TimerWheel.inline_off`), where a fire that fails again is pinned on its own.
- **Firing through the commands topic** (``AION_TIMER_FIRE=topic``). Due timers are sent as ``FireTimer`` commands to the workflow's partition of
  the commands topic in one transaction with the deletion of their rows (the partition's
  producer: a worker fenced out of the partition fires nothing). A timer whose terminal state
  (``timer_terminal``: fired / cancelled / run closed) is already recorded is dropped instead
  of sent, so a rebalance or a cancel that raced the fire costs no second fire. (The runtime also
  ignores fires of timers that are not live: the table is the partition-local first line.)
- **Bounded work.** No stretch of the loop runs longer than ``SLICE_S`` without yielding to
  the event loop (command processing shares it); at most ``settings.timer_batch`` fires per
  tick. Correctness does not depend on ticks: rows are durable and reloaded on assignment.
- **Bursts do not starve commands.** Each partition fires on its own (a burst in one leaves the
  others' fires alone), and at most ``FIRE_BACKLOG`` of a partition's fires are in flight: sent
  but not yet taken by the engine's batches (:meth:`TimerWheel.fires_consumed`). A million
  timers due in the same second so enter the commands topic as the engine takes them, and a
  start or signal sent meanwhile waits behind at most ``FIRE_BACKLOG`` fires, not the whole
  burst. The count is forgotten when nothing was taken for ``FIRE_BACKLOG_STALE_S`` (fires
  taken by another worker after a rebalance): the bound can only slow fires, never stop them.
- **Terminal states** come from ``on_recorded`` (called by ``stage`` with the batch's events; their rows go in the same transaction):
  ``TimerFired`` / ``TimerCancelled`` per (workflow, run, timer), and a run-closed marker when
  a run ends (which covers its internal timers too: activity timeouts, retries, deadlines).
- **Metrics** (``stats`` / :meth:`snapshot`, and a log line every ``STATS_EVERY_S``): fire lag
  (recorded ``TimerFired`` time - ``fire_at``) as a histogram, send lag of every fire,
  timers pending in memory per partition, the stored rows' estimate, fired/dropped counts and
  the longest stretch the loop held the event loop.

Fault injection (tests only): ``after_fire_emit`` (see _faults.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Protocol, Sequence

from sortedcontainers import SortedDict  # type: ignore[import-untyped]  # no stubs

from ..codec import Codec
from ..model import RUN_CLOSING_EVENTS, Command, Event, FireTimer, TimerCancelled, TimerFired, WorkflowReopened, now_ms
from ..runtime import effects as fx
from ._faults import crash, faults
from ._faust import db_for, offset_row
from ._store import write_rows
from ._timers import LagHistogram, TerminalStore, WheelPartition, Write, ident_of, parse_ident
from ._txn import Fenced, Record, TxnError
from ..common.settings import Settings
from ..common.topics import TopicNames

log = logging.getLogger("aion.engine.timers")


class TimerOutput(Protocol):
    """What the wheel writes through (the engine's transactions, ``_txn.py``)."""

    def lock_for(self, partition: int) -> asyncio.Lock:
        """Held while the wheel stages and writes for ``partition``: no batch of the partition
        interleaves with its pending local writes."""
        ...

    def owned(self) -> set[int]:
        """The partitions this worker owns and has restored (the only ones it may fire)."""
        ...

    async def write(self, partition: int, records: Sequence[Record]) -> list[int]:
        """One transaction of ``partition``; the records' offsets. Raises ``TxnError``."""
        ...

    def fire_due(self, partition: int) -> None:
        """``partition`` has timers due and fires inline: its batch pipeline should run now and
        take them (:meth:`TimerWheel.take_inline`), with commands queued for it or without."""
        ...

    def lost(self, partition: int) -> None:
        """``partition`` was fenced: another worker owns it."""
        ...


class Pending:
    """Local table writes of transactions not yet committed, per partition: reads through
    :class:`PendingDB` see them over the table, RocksDB gets the writes of a transaction only
    once it has committed (:meth:`TimerWheel.committed` writes exactly the records the log
    took), and an aborted transaction's are forgotten (:meth:`discard`). So the local tables
    never hold what the log does not — even across a ``kill -9`` between a batch's staging and
    its commit, after which another worker may reuse the data folder (rows written before the
    commit and never put back were found in reused folders by the chaos test: stale timer rows
    that could fire a re-armed timer at its aborted time)."""

    def __init__(self) -> None:
        #: partition -> id(db) -> (db, key -> value or None for a deletion, in key order)
        self._writes: dict[int, dict[int, tuple[Any, SortedDict]]] = {}

    def overlay(self, partition: int, db: Any) -> SortedDict:
        """The pending writes of ``db`` (one table's database of ``partition``), for writing."""
        per_db = self._writes.setdefault(partition, {})
        entry = per_db.get(id(db))
        if entry is None:
            entry = per_db[id(db)] = (db, SortedDict())
        return entry[1]

    def peek(self, partition: int, db: Any) -> SortedDict | None:
        """The pending writes of ``db``, for reading (None when there are none)."""
        entry = self._writes.get(partition, {}).get(id(db))
        return entry[1] if entry is not None and entry[1] else None

    def discard(self, partition: int) -> int:
        """Forget the partition's pending writes (its transaction did not commit, or did and
        its records were written). Returns how many there were."""
        return sum(len(rows) for _db, rows in self._writes.pop(partition, {}).values())


class PendingDB:
    """A partition's rocksdict database (raw mode) seen with its pending writes on top
    (see :class:`Pending`): reads see them, writes join them."""

    __slots__ = ("db", "partition", "pending")

    def __init__(self, db: Any, partition: int, pending: Pending) -> None:
        self.db, self.partition, self.pending = db, partition, pending

    def get(self, key: bytes) -> bytes | None:
        rows = self.pending.peek(self.partition, self.db)
        if rows is not None and key in rows:
            pending: bytes | None = rows[key]
            return pending
        value: bytes | None = self.db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self.pending.overlay(self.partition, self.db)[key] = value

    def delete(self, key: bytes) -> None:
        self.pending.overlay(self.partition, self.db)[key] = None

    def iter(self) -> Any:
        it = self.db.iter()
        rows = self.pending.peek(self.partition, self.db)
        return _MergedIter(it, rows) if rows is not None else it


class _MergedIter:
    """A rocksdict iterator (``seek``, ``valid``, ``key``, ``value``, ``next``) over a table
    with pending writes on top: a pending value replaces the table's, a pending deletion hides
    it, a pending new key appears in its place."""

    __slots__ = ("_it", "_rows", "_keys", "_i", "_cur")

    def __init__(self, it: Any, rows: SortedDict) -> None:
        self._it, self._rows = it, rows
        self._keys = rows.keys()  # a view in key order (the rows do not change while one iterates)
        self._i = 0
        self._cur: tuple[bytes, bytes] | None = None

    def seek(self, key: bytes) -> None:
        self._it.seek(key)
        self._i = self._rows.bisect_left(key)
        self._fetch()

    def seek_to_first(self) -> None:
        self._it.seek_to_first()
        self._i = 0
        self._fetch()

    def _fetch(self) -> None:
        it, rows, keys = self._it, self._rows, self._keys
        while True:
            dk: bytes | None = it.key() if it.valid() else None
            ok = keys[self._i] if self._i < len(keys) else None
            if dk is None and ok is None:
                self._cur = None
                return
            if ok is None or (dk is not None and dk < ok):
                assert dk is not None
                value = it.value()
                it.next()
                if dk in rows:  # the pending write of this key was passed already: it decides
                    continue
                self._cur = (dk, value)
                return
            if dk == ok:
                it.next()
            self._i += 1
            pending = rows[ok]
            if pending is None:
                continue
            self._cur = (ok, pending)
            return

    def valid(self) -> bool:
        return self._cur is not None

    def key(self) -> bytes:
        assert self._cur is not None
        return self._cur[0]

    def value(self) -> bytes:
        assert self._cur is not None
        return self._cur[1]

    def next(self) -> None:
        self._fetch()


#: Most fires of one partition in flight (sent, not yet taken by the engine's batches): what a
#: start or signal sent during a burst waits behind at most (module docs).
FIRE_BACKLOG = 1_000
#: Fires in flight that no batch took for this long were taken elsewhere: forgotten.
FIRE_BACKLOG_STALE_S = 5.0
#: After a batch with inline fires failed, the partition's fires go through the commands topic this long.
INLINE_OFF_S = 30.0
#: A partition's pipeline asked to take its due fires that has not is asked again after this long.
ASK_AGAIN_S = 0.5


class TimerWheel:
    """The engine's timer service (one per engine worker)."""

    #: Timers due within this many ms are kept in memory.
    WINDOW_MS = 60_000
    #: How often the window is moved on (a row entering it is still ~WINDOW_MS from due).
    ADVANCE_S = 1.0
    #: Most rows loaded from the table per slice.
    SCAN_ROWS = 1_000
    #: Longest stretch of work before yielding to the event loop.
    SLICE_S = 0.004
    #: Longest sleep between ticks (nothing depends on it: arms wake the loop).
    IDLE_S = 0.5
    STATS_EVERY_S = 30.0

    def __init__(self, app: Any, settings: Settings, codec: Codec, names: TopicNames, output: TimerOutput, *,
                 timers: Any, terminal: Any) -> None:
        self.app = app
        self.settings = settings
        self.codec = codec
        self.names = names
        self.output = output
        self._unsaved = Pending()
        self.timers = timers  # the app's tables (``_app.py``)
        self.terminal = terminal
        self._parts: dict[int, WheelPartition] = {}
        self._revoked: set[int] = set()
        self._gen = 0
        self._queued: list[tuple[Any, int, Write]] = []  # (table, partition, write) to changelog
        self._sent: dict[bytes, int] = {}  # ident -> fire_at of user-timer fires sent, for lag
        self._in_flight: dict[int, int] = {}  # partition -> fires sent, not yet taken by a batch
        self._taken: dict[int, set[bytes]] = {}  # partition -> idents its batch in preparation took (inline)
        self._asked: dict[int, float] = {}  # inline: partition -> when its pipeline was asked to take due fires
        self._inline_off: dict[int, float] = {}  # partition -> until when its fires go through the topic
        self._consumed_at: dict[int, float] = {}  # partition -> when a batch last took fires
        self._acks: dict[tuple[Any, int], int] = {}  # (table, partition) -> highest acked offset
        self._acks_flush = False
        self._wakeup = asyncio.Event()
        self._next_advance = 0.0
        self._last_stats = time.monotonic()
        self._faults = faults()
        self.lag = LagHistogram()
        self.send_lag = LagHistogram()
        self.stats: dict[str, Any] = {
            "fired": 0, "fired_inline": 0, "dropped_terminal": 0, "armed": 0, "disarmed": 0, "drop_missed": 0, "loaded": 0,
            "held_back": 0,
            "tick_max_block_ms": 0.0, "tick_max_block_cpu_ms": 0.0,
        }
        self._cpu0 = 0.0
        self.app.task(self._loop)

    # ------------------------------------------------------------------ engine hooks

    def fires_consumed(self, partition: int, n: int) -> None:
        """The engine committed a batch that took ``n`` FireTimer commands of ``partition``."""
        left = self._in_flight.get(partition, 0) - n
        self._in_flight[partition] = max(0, left)
        self._consumed_at[partition] = time.monotonic()
        if left <= FIRE_BACKLOG // 2:
            self._wakeup.set()  # room again: fire the rest of a burst now, not at the next tick

    def _room(self, partition: int) -> int:
        """How many fires ``partition`` may send now (``FIRE_BACKLOG`` minus those in flight)."""
        flying = self._in_flight.get(partition, 0)
        if flying and time.monotonic() - self._consumed_at.get(partition, 0.0) > FIRE_BACKLOG_STALE_S:
            flying = self._in_flight[partition] = 0  # taken elsewhere (a rebalance): forget them
        return FIRE_BACKLOG - flying

    def on_revoked(self, partitions: set[int]) -> None:
        self._gen += 1
        for p in partitions:
            self._unsaved.discard(p)
            self._parts.pop(p, None)
            self._revoked.add(p)

    def on_assigned(self) -> None:
        # Reload everything from the table once recovery has caught up: the rows may have
        # changed while another worker owned a partition.
        self._gen += 1
        self._parts.clear()
        self._revoked.clear()
        self._in_flight.clear()
        self._next_advance = 0.0
        self._wakeup.set()

    def on_recorded(self, events: list[tuple[int, Event]]) -> None:
        """A batch's events are durable: keep the terminal states (``timer_terminal``)."""
        for partition, ev in events:
            b = ev.body
            if isinstance(b, TimerFired):
                ident = ident_of(ev.workflow_id, ev.run_id, b.timer_id)
                self._mark(partition, ident, TerminalStore.FIRED)
                at = self._sent.pop(ident, None)
                if at is not None:
                    self.lag.observe(ev.recorded_at_ms - at)
            elif isinstance(b, TimerCancelled):
                self._mark(partition, ident_of(ev.workflow_id, ev.run_id, b.timer_id), TerminalStore.CANCELLED)
            elif isinstance(b, RUN_CLOSING_EVENTS):
                if partition in self._revoked:
                    continue
                out: list[Write] = []
                TerminalStore(self._db(self.terminal, partition)).close_run(ev.workflow_id, ev.run_id, out)
                self._queued.extend((self.terminal, partition, w) for w in out)
            elif isinstance(b, WorkflowReopened):
                if partition in self._revoked:
                    continue
                out = []
                TerminalStore(self._db(self.terminal, partition)).reopen_run(ev.workflow_id, ev.run_id, out)
                self._queued.extend((self.terminal, partition, w) for w in out)

    def begin(self, partition: int) -> None:
        """A transaction of ``partition`` is about to be staged (its lock held): pending writes
        left by one that neither committed nor was rolled back (a path that failed in between)
        are forgotten, and the window is loaded again from the table, so that nothing the log
        never took is read or written as if it had."""
        n = self._unsaved.discard(partition)
        if n:
            log.warning("partition %d: %d pending timer row writes of a transaction that never ended forgotten",
                        partition, n)
            self._reload(partition)

    def _reload(self, partition: int) -> None:
        """The partition's window is loaded again from the table (its memory may hold rows the
        table does not), at the next tick."""
        self._parts.pop(partition, None)
        self._next_advance = 0.0
        self._wakeup.set()

    def stage(self, events: list[tuple[int, Event]], effects: list[tuple[int, Any]]) -> list[tuple[Any, int, Write]]:
        """A batch's timer work before its transaction: the terminal states of its events and
        the arms/disarms of its ``ScheduleTimer`` / ``DropTimer`` effects. The local rows are
        pending (in RocksDB once committed, forgotten by :meth:`rolled_back`); returns the changelog
        writes ``(table, partition, (key, value))`` that go in the batch's transactions. A
        repeated ``ScheduleTimer`` writes nothing."""
        self.on_recorded(events)
        writes: list[tuple[Any, int, Write]] = []
        wake = False
        for partition, eff in effects:
            if isinstance(eff, fx.ScheduleTimer):
                ident = ident_of(eff.workflow_id, eff.run_id, eff.timer_id)
                part = self._loaded_part(partition)
                if part is None:
                    continue
                out: list[Write] = []
                if part.arm(eff.fire_at_ms, ident, out) is not None:
                    wake = True
                if out:
                    self.stats["armed"] += 1
                writes.extend((self.timers, partition, w) for w in out)
            elif isinstance(eff, fx.DropTimer):
                part = self._loaded_part(partition)
                if part is None:
                    if eff.timer_id.isdigit():
                        log.warning("partition %d is revoked: the drop of timer %s of workflow %r (run %s) is not "
                                    "staged", partition, eff.timer_id, eff.workflow_id, eff.run_id)
                    continue
                out = []
                if part.drop(ident_of(eff.workflow_id, eff.run_id, eff.timer_id), out):
                    self.stats["disarmed"] += 1
                elif ident_of(eff.workflow_id, eff.run_id, eff.timer_id) in self._taken.get(partition, ()):
                    pass  # its row is being deleted by this batch's fire (stepped after the drop: ignored)
                elif eff.timer_id.isdigit():
                    # A workflow's own timer is dropped once, when it is cancelled or its run
                    # closes while it is armed: its row should be there (in memory if near, else
                    # indexed) unless the window is not loaded yet (a near row has no index row)
                    # or its fire was just sent (the fire's transaction deleted the row).
                    self.stats["drop_missed"] += 1
                    log.warning("partition %d: the drop of timer %s of workflow %r (run %s) found no row (unless "
                                "its fire was just sent, its row is missing)",
                                partition, eff.timer_id, eff.workflow_id, eff.run_id)
                writes.extend((self.timers, partition, w) for w in out)
        if self._queued:
            writes.extend(self._queued)
            self._queued = []
        if wake:
            self._wakeup.set()
        return writes

    @staticmethod
    def records(writes: Sequence[tuple[Any, int, Write]]) -> list[Record]:
        """The changelog records of ``writes``."""
        return [(table.changelog_topic.get_topic_name(), key, value, partition)
                for table, partition, (key, value) in writes]

    def committed(self, partition: int, writes: Sequence[tuple[Any, int, Write]], offsets: Sequence[int]) -> None:
        """``writes`` of ``partition`` are in a committed transaction at ``offsets``: they are
        written to the local tables — exactly these, the records the log took — with Faust's
        offset (its recovery starts after them) in one atomic write batch per table, as the
        engine's batches write theirs; the partition's pending writes are forgotten."""
        self._unsaved.discard(partition)
        self._taken.pop(partition, None)
        rows: dict[Any, list[tuple[bytes, bytes | None]]] = {}
        last: dict[Any, int] = {}
        for (table, _, (key, value)), offset in zip(writes, offsets):
            rows.setdefault(table, []).append((key, value))
            if offset > last.get(table, -1):
                last[table] = offset
        for table, table_rows in rows.items():
            write_rows(db_for(table, partition), [*table_rows, offset_row(table, last[table])])

    def rolled_back(self, partition: int) -> None:
        """The transaction of ``partition`` did not commit: its pending rows are forgotten and
        the partition's window is loaded again from the table."""
        n = self._unsaved.discard(partition)
        self._taken.pop(partition, None)
        self._queued = [q for q in self._queued if q[1] != partition]
        self._reload(partition)
        if n:
            log.info("partition %d: %d timer row writes of an aborted transaction forgotten", partition, n)

    async def apply(self, effects: list[tuple[int, Any]]) -> None:
        """:meth:`stage` and write ``effects`` at once, one transaction per partition (tests
        and the in-process benchmark; the engine stages a batch's timer work itself)."""
        for p in {p for p, _ in effects}:
            self.begin(p)
        writes = self.stage([], effects)
        by_partition: dict[int, list[tuple[Any, int, Write]]] = {}
        for w in writes:
            by_partition.setdefault(w[1], []).append(w)
        for partition, ws in by_partition.items():
            async with self.output.lock_for(partition):
                await self._write(partition, [], ws)

    async def _write(self, partition: int, records: list[Record], writes: list[tuple[Any, int, Write]]) -> bool:
        """``records`` and the changelog records of ``writes`` in one transaction of
        ``partition``; whether it committed (if not, the local rows are put back)."""
        try:
            offsets = await self.output.write(partition, records + self.records(writes))
        except TxnError as exc:
            self.rolled_back(partition)
            if isinstance(exc, Fenced):
                self.output.lost(partition)
            else:
                log.warning("timer transaction of partition %d aborted (%s); the timers fire again", partition, exc)
            return False
        except BaseException:
            self.rolled_back(partition)
            raise
        try:
            self.committed(partition, writes, offsets[len(records):])
        except Exception as exc:
            # The log holds the transaction and the local table does not: going on would fire
            # its timers again from stale rows. Die; the next owner restores from the log.
            log.critical("partition %d: the timer rows of a committed transaction could not be written locally "
                         "(%s: %s); exiting so that the partition is restored from the log", partition,
                         type(exc).__name__, exc)
            logging.shutdown()
            os._exit(70)
        return True

    # ------------------------------------------------------------------ reading

    def pending(self, partition: int | None = None) -> int:
        """Timers armed in memory (the near-due window) of one or all owned partitions."""
        if partition is not None:
            part = self._parts.get(partition)
            return part.pending() if part is not None else 0
        return sum(p.pending() for p in self._parts.values())

    def snapshot(self) -> dict[str, Any]:
        """Counters and metrics (see the module docs); cheap enough to call any time."""
        stored: dict[int, int] = {}
        for p in self._parts:
            try:
                stored[p] = int(db_for(self.timers, p).property_int_value("rocksdb.estimate-num-keys") or 0)
            except Exception:
                pass
        return {
            **self.stats,
            "pending_in_memory": {p: part.pending() for p, part in sorted(self._parts.items())},
            "stored_rows_estimate": stored,
            "fire_lag_ms": self.lag.snapshot(),
            "send_lag_ms": self.send_lag.snapshot(),
        }

    # ------------------------------------------------------------------ rows

    def _db(self, table: Any, partition: int) -> PendingDB:
        return PendingDB(db_for(table, partition), partition, self._unsaved)

    def _part(self, partition: int) -> WheelPartition | None:
        if partition in self._revoked:
            return None
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = WheelPartition(partition, self._db(self.timers, partition))
            self._next_advance = 0.0  # load its window at the next tick, not a second later
            self._wakeup.set()
        return part

    def _loaded_part(self, partition: int) -> WheelPartition | None:
        """The partition with its window in memory: an arm or drop must find a timer's current
        row, and a near row (due within the window) has no index row, only its place in memory.
        The loop loads a new partition's window at its next tick; a batch that comes first
        (right after an assignment) loads it here, at once."""
        part = self._part(partition)
        if part is not None and part.loaded_upto is None:
            before = len(part.live)
            target = now_ms() + self.WINDOW_MS
            while not part.load_slice(target, self.SCAN_ROWS):
                pass
            self.stats["loaded"] += len(part.live) - before
        return part

    def _mark(self, partition: int, ident: bytes, state: bytes) -> None:
        if partition in self._revoked:
            return
        out: list[Write] = []
        TerminalStore(self._db(self.terminal, partition)).mark(ident, state, out)
        self._queued.extend((self.terminal, partition, w) for w in out)


    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        """Fire due timers of the partitions this worker owns, as FireTimer commands."""
        while True:
            try:
                busy = await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer tick failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if busy is None:  # rebalancing or recovering tables: nothing to do yet
                await asyncio.sleep(0.1)
                continue
            self._maybe_log_stats()
            if busy:
                await asyncio.sleep(0)
                continue
            self._wakeup.clear()
            delay = self.IDLE_S
            nxt = self._next_due_ms()
            if nxt is not None:
                delay = min(delay, max(0.0, (nxt - now_ms()) / 1000))
            delay = min(delay, max(0.0, self._next_advance - time.monotonic()))
            if delay > 0:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass

    def _asked_recently(self, partition: int) -> bool:
        """``partition``'s pipeline was asked to take its due fires less than ``ASK_AGAIN_S`` ago."""
        return time.monotonic() - self._asked.get(partition, -ASK_AGAIN_S) < ASK_AGAIN_S

    def _next_due_ms(self) -> int | None:
        best: bytes | None = None
        for p, part in self._parts.items():
            if self._asked_recently(p):
                continue  # its batch pipeline takes them
            k = part.next_due()
            if k is not None and (best is None or k < best):
                best = k
        return None if best is None else int.from_bytes(best[:8], "big", signed=True)

    def _t(self) -> float:
        """Start timing a stretch of work (wall clock; CPU time of this thread alongside)."""
        self._cpu0 = time.thread_time()
        return time.perf_counter()

    def _block(self, t0: float) -> float:
        """Account a stretch of work that held the event loop; returns a fresh start time.
        ``tick_max_block_ms`` is wall time (includes being descheduled on a busy machine),
        ``tick_max_block_cpu_ms`` the CPU time the wheel spent in it."""
        t, c = time.perf_counter(), time.thread_time()
        ms, cpu = (t - t0) * 1000, (c - self._cpu0) * 1000
        if ms > self.stats["tick_max_block_ms"]:
            self.stats["tick_max_block_ms"] = round(ms, 3)
        if cpu > self.stats["tick_max_block_cpu_ms"]:
            self.stats["tick_max_block_cpu_ms"] = round(cpu, 3)
        self._cpu0 = c
        return t

    async def _yield(self, t0: float) -> float:
        self._block(t0)
        await asyncio.sleep(0)
        return self._t()

    async def _tick(self) -> bool | None:
        """One round: move the window on, fire what is due. True when it fired anything
        (the loop then goes again at once); None while the app rebalances or recovers."""
        if self.app.rebalancing or getattr(self.app, "in_recovery", False):
            return None
        gen = self._gen
        for p in self.output.owned() - set(self._parts) - self._revoked:
            self._parts[p] = WheelPartition(p, self._db(self.timers, p))
        await self._advance(gen)
        if gen != self._gen:
            return False
        return await self._fire(gen)

    async def _advance(self, gen: int) -> None:
        mono = time.monotonic()
        if mono < self._next_advance:
            return
        target = now_ms() + self.WINDOW_MS
        t0 = self._t()
        done = True
        for part in list(self._parts.values()):
            while True:
                before = len(part.live)
                complete = part.load_slice(target, self.SCAN_ROWS)
                self.stats["loaded"] += len(part.live) - before
                t0 = await self._yield(t0)
                if gen != self._gen:
                    return
                if complete:
                    break
                if len(part.live) - before == 0:  # nothing new (all already live): keep going
                    continue
                done = False
                break  # fire what is loaded so far; resume the load next tick
        self._next_advance = mono + self.ADVANCE_S if done else 0.0

    async def _fire(self, gen: int) -> bool:
        """Fire what is due: per partition one transaction with the ``FireTimer`` commands and
        the deletion of their rows (so a fire and its row's deletion are visible together or
        not at all; the partitions' transactions run side by side, each under its partition's
        lock); rows whose timer reached a terminal state are deleted without a fire."""
        owned = self.output.owned()
        parts = [part for part in list(self._parts.values()) if part.partition in owned]
        fired = await asyncio.gather(*(self._fire_partition(gen, part) for part in parts))
        if len(self._sent) > 200_000:  # fires whose TimerFired another worker recorded
            for ident in list(self._sent)[:100_000]:
                del self._sent[ident]
        return any(fired)

    async def _fire_partition(self, gen: int, part: WheelPartition) -> bool:
        p = part.partition
        if self.inline(p):
            # Its batch pipeline takes them (take_inline, which also moves the scan position on:
            # the loop never waits for the partition's lock); until then, or for ASK_AGAIN_S (a
            # pipeline that never came: asked again), the loop does not wait on them.
            if self.due_inline(p) and not self._asked_recently(p):
                self._asked[p] = time.monotonic()
                self.output.fire_due(p)
            return False
        async with self.output.lock_for(part.partition):
            self.begin(part.partition)
            if gen != self._gen or self._parts.get(part.partition) is not part:
                return False
            staged = self._stage_fires(part)
            if staged is None:
                out: list[Write] = []
                part.advance_low(time.monotonic(), out)
                if out:
                    await self._write(part.partition, [], [(self.timers, part.partition, w) for w in out])
                return False
            _, records, writes, sent, (n_fire, n_drop) = staged
            if not await self._write(part.partition, records, writes):
                return False
            if "after_fire_emit" in self._faults:
                crash("after_fire_emit")
            self._sent.update(sent)
            if n_fire:
                if not self._in_flight.get(part.partition):
                    self._consumed_at[part.partition] = time.monotonic()  # the stale clock starts now
                self._in_flight[part.partition] = self._in_flight.get(part.partition, 0) + n_fire
            self.stats["fired"] += n_fire
            self.stats["dropped_terminal"] += n_drop
            return True

    def _stage_fires(self, part: WheelPartition) -> tuple[WheelPartition, list[Record], list[tuple[Any, int, Write]],
                                                          dict[bytes, int], tuple[int, int]] | None:
        room = self._room(part.partition)
        if room <= 0:
            self.stats["held_back"] += 1
            return None  # the partition's fires in flight first (a burst: module docs)
        taken = self._take(part, min(self.settings.timer_batch, room), now_ms())
        if taken is None:
            return None
        commands, writes, sent, n_drop, _ = taken
        topic, encode = self.names.commands, self.codec.encode_command
        records: list[Record] = [(topic, cmd.workflow_id.encode(), encode(cmd), part.partition) for cmd in commands]
        return part, records, writes, sent, (len(commands), n_drop)

    def _take(self, part: WheelPartition, limit: int, now: int) -> tuple[list[Command], list[tuple[Any, int, Write]],
                                                                          dict[bytes, int], int, set[bytes]] | None:
        """Up to ``limit`` due timers of ``part``: their ``FireTimer`` commands, the deletion of
        their rows (and of those whose timer is already terminal: dropped, not fired) with the
        scan position, the user timers' fire times (for the lag), how many were dropped, the fired
        timers' idents. Due
        means due at ``now``: a batch passes the time its events record (no fire before its time)."""
        keys = part.take_due(now, limit)
        if not keys:
            return None
        t0 = self._t()
        terminal = TerminalStore(self._db(self.terminal, part.partition))
        commands: list[Command] = []
        sent: dict[bytes, int] = {}
        idents: set[bytes] = set()
        n_drop = 0
        for key in keys:
            ident = key[8:]
            if terminal.state(ident) is not None:
                n_drop += 1
                continue
            fire_at = int.from_bytes(key[:8], "big", signed=True)
            idents.add(ident)
            wf, run, tid = parse_ident(ident)
            at = now_ms()
            commands.append(Command(
                command_id=f"timer:{wf}:{run}:{tid}:{fire_at}", workflow_id=wf, sent_at_ms=at,
                body=FireTimer(run_id=run, timer_id=tid, fire_at_ms=fire_at)))
            self.send_lag.observe(at - fire_at)
            if tid.isdigit():  # a workflow's own timer: its TimerFired gives the fire lag
                sent[ident] = fire_at
        out: list[Write] = []
        part.fired(keys, out)
        part.advance_low(time.monotonic(), out)  # the scan position goes in the same transaction
        self._block(t0)
        return commands, [(self.timers, part.partition, w) for w in out], sent, n_drop, idents

    # ------------------------------------------------------------------ firing inside the batches

    def inline(self, partition: int) -> bool:
        """Whether ``partition``'s due timers go into its own batches (``AION_TIMER_FIRE=inline``,
        not paused by :meth:`inline_off`) rather than through the commands topic."""
        return self.settings.timer_fire == "inline" and time.monotonic() >= self._inline_off.get(partition, 0.0)

    def inline_off(self, partition: int, seconds: float = INLINE_OFF_S) -> None:
        """A batch with fires in it failed: for ``seconds`` the partition's fires go through the
        commands topic, where a fire that fails its step again is handled (and, if it must be,
        dead-lettered) on its own like any command, instead of failing every batch it joins."""
        self._inline_off[partition] = time.monotonic() + seconds
        self._asked.pop(partition, None)
        self._wakeup.set()

    def due_inline(self, partition: int) -> bool:
        """``partition`` fires inline and has a timer due now (its batch pipeline should run)."""
        part = self._parts.get(partition)
        if part is None or part.loaded_upto is None or partition in self._revoked or not self.inline(partition):
            return False
        nxt = part.next_due()
        return nxt is not None and int.from_bytes(nxt[:8], "big", signed=True) <= now_ms()

    def take_inline(self, partition: int, limit: int, now: int) -> tuple[list[Command], list[tuple[Any, int, Write]], int]:
        """The due timers of ``partition`` for the batch being staged (caller holds the
        partition's lock, after :meth:`begin`): at most ``limit`` ``FireTimer`` commands (of timers due
        at ``now``, the time the batch records) and
        their rows' deletions, pending until the batch's transaction commits (:meth:`committed`)
        or is rolled back (:meth:`rolled_back`: the rows are loaded again and fire again), and how
        many due rows were deleted without a fire (their timer already terminal)."""
        if self._asked.pop(partition, None) is not None:
            self._wakeup.set()  # the loop waits on this partition's next due time again
        part = self._parts.get(partition)
        self._taken.pop(partition, None)
        if part is None or part.loaded_upto is None or partition in self._revoked or not self.inline(partition):
            return [], [], 0
        taken = self._take(part, limit, now)
        if taken is None:  # nothing due: the scan position still moves on (at most once a second)
            out: list[Write] = []
            part.advance_low(time.monotonic(), out)
            return [], [(self.timers, partition, w) for w in out], 0
        commands, writes, sent, n_drop, idents = taken
        self._sent.update(sent)
        # A command of the same batch that cancels one of them finds its row already going.
        self._taken[partition] = idents
        return commands, writes, n_drop

    def inline_committed(self, fired: int, dropped: int) -> None:
        """A batch with ``fired`` inline fires (and ``dropped`` rows of terminal timers) committed."""
        self.stats["fired"] += fired
        self.stats["fired_inline"] += fired
        self.stats["dropped_terminal"] += dropped

    def _maybe_log_stats(self) -> None:
        mono = time.monotonic()
        if mono - self._last_stats < self.STATS_EVERY_S:
            return
        self._last_stats = mono
        lag = self.lag.snapshot()
        log.info(
            "timers: fired=%d dropped_terminal=%d pending_in_memory=%d fire_lag p50=%sms p99=%sms max=%sms "
            "(n=%d) tick_max_block=%.1fms",
            self.stats["fired"], self.stats["dropped_terminal"], self.pending(),
            lag["p50_ms"], lag["p99_ms"], lag["max_ms"], lag["count"], self.stats["tick_max_block_ms"])
