"""The timer wheel: durable timer rows, a near-due window in memory, fires as ``FireTimer``.

One :class:`TimerWheel` per engine worker serves the partitions the worker owns
(storage and window logic per partition: ``_timers.py``).

- **Arm / disarm.** ``apply()`` turns a batch's ``ScheduleTimer`` / ``DropTimer`` effects into
  rows of the ``timers`` table (written locally, sent to its changelog, and awaited with the
  batch: record before effect). A timer due within the window (``WINDOW_MS``) also goes into
  memory at once; later ones only into the table, with an index row so a ``DropTimer`` finds
  them.
- **The window.** The loop loads rows due before ``now + WINDOW_MS`` from the table in slices
  of at most ``SCAN_ROWS`` rows, starting at the partition's persisted scan position (so a
  worker taking over never walks the deleted rows firing leaves behind), and again every
  ``ADVANCE_S`` as time moves on.
- **Firing.** Due timers are sent as ``FireTimer`` commands to the workflow's partition of
  the commands topic; once Kafka acknowledged them their rows are deleted. A timer whose
  terminal state (``timer_terminal``: fired / cancelled / run closed) is already recorded
  is dropped instead of sent, so a crash between a fire and its row's deletion, a
  rebalance, or a cancel that raced the fire, costs no second fire. (The runtime also
  ignores fires of timers that are not live: the table is the partition-local first line.)
- **Bounded work.** No stretch of the loop runs longer than ``SLICE_S`` without yielding to
  the event loop (command processing shares it); at most ``settings.timer_batch`` fires per
  tick. Correctness does not depend on ticks: rows are durable and reloaded on assignment.
- **Terminal states** come from ``on_recorded`` (the batch's events are durable):
  ``TimerFired`` / ``TimerCancelled`` per (workflow, run, timer), and a run-closed marker when
  a run ends (which covers its internal timers too: activity timeouts, retries, deadlines).
- **Metrics** (``stats`` / :meth:`snapshot`, and a log line every ``STATS_EVERY_S``): fire lag
  (recorded ``TimerFired`` time - ``fire_at``) as a histogram, send lag of every fire,
  timers pending in memory per partition, the stored rows' estimate, fired/dropped counts and
  the longest stretch the loop held the event loop.

Fault injection (tests only): ``after_fire_emit`` and ``after_fire_recorded`` (see _faults.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from faust.types import TP

from ..model import RUN_CLOSING_EVENTS, Command, Event, FireTimer, TimerCancelled, TimerFired, now_ms
from ..runtime import effects as fx
from ._faults import crash, faults
from ._timers import LagHistogram, TerminalStore, WheelPartition, Write, ident_of, parse_ident

if TYPE_CHECKING:
    from ._engine import Engine

log = logging.getLogger("aion.engine.timers")


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

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.app = engine.app
        n = engine.settings.partitions
        tbl = dict(key_type=bytes, value_type=bytes, partitions=n)
        self.timers = self.app.Table("timers", **tbl)
        self.terminal = self.app.Table("timer_terminal", **tbl)
        self._parts: dict[int, WheelPartition] = {}
        self._revoked: set[int] = set()
        self._gen = 0
        self._queued: list[tuple[Any, int, Write]] = []  # (table, partition, write) to changelog
        self._sent: dict[bytes, int] = {}  # ident -> fire_at of user-timer fires sent, for lag
        self._acks: dict[tuple[Any, int], int] = {}  # (table, partition) -> highest acked offset
        self._acks_flush = False
        self._wakeup = asyncio.Event()
        self._next_advance = 0.0
        self._last_stats = time.monotonic()
        self._faults = faults()
        self.lag = LagHistogram()
        self.send_lag = LagHistogram()
        self.stats: dict[str, Any] = {
            "fired": 0, "dropped_terminal": 0, "armed": 0, "disarmed": 0, "loaded": 0,
            "tick_max_block_ms": 0.0, "tick_max_block_cpu_ms": 0.0,
        }
        self._cpu0 = 0.0
        self.app.task(self._loop)

    # ------------------------------------------------------------------ engine hooks

    def on_revoked(self, partitions: set[int]) -> None:
        self._gen += 1
        for p in partitions:
            self._parts.pop(p, None)
            self._revoked.add(p)

    def on_assigned(self) -> None:
        # Reload everything from the table once recovery has caught up: the rows may have
        # changed while another worker owned a partition.
        self._gen += 1
        self._parts.clear()
        self._revoked.clear()
        self._next_advance = 0.0
        self._wakeup.set()

    def on_recorded(self, events: list[tuple[int, Event]]) -> None:
        """A batch's events are durable: keep the terminal states (``timer_terminal``)."""
        fired = False
        for partition, ev in events:
            b = ev.body
            if isinstance(b, TimerFired):
                fired = True
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
        if fired and "after_fire_recorded" in self._faults:
            crash("after_fire_recorded")

    async def apply(self, effects: list[tuple[int, Any]]) -> list[Any]:
        """Arm/disarm timers for a batch; returns the changelog sends to wait for. A repeated
        ``ScheduleTimer`` (the engine's recovery effects after a hand-over) writes nothing."""
        writes: list[tuple[Any, int, Write]] = []
        wake = False
        for partition, eff in effects:
            if isinstance(eff, fx.ScheduleTimer):
                ident = ident_of(eff.workflow_id, eff.run_id, eff.timer_id)
                part = self._part(partition)
                if part is None:
                    writes.extend(self._changelog_only_arm(partition, eff.fire_at_ms, ident))
                    continue
                out: list[Write] = []
                if part.arm(eff.fire_at_ms, ident, out) is not None:
                    wake = True
                if out:
                    self.stats["armed"] += 1
                writes.extend((self.timers, partition, w) for w in out)
            elif isinstance(eff, fx.DropTimer):
                part = self._part(partition)
                if part is None:
                    continue
                out = []
                if part.drop(ident_of(eff.workflow_id, eff.run_id, eff.timer_id), out):
                    self.stats["disarmed"] += 1
                writes.extend((self.timers, partition, w) for w in out)
        if self._queued:
            writes.extend(self._queued)
            self._queued = []
        if wake:
            self._wakeup.set()
        return await self._send(writes)

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
                stored[p] = int(self._db(self.timers, p).property_int_value("rocksdb.estimate-num-keys") or 0)
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

    @staticmethod
    def _db(table: Any, partition: int) -> Any:
        return table.data._db_for_partition(partition)

    def _part(self, partition: int) -> WheelPartition | None:
        if partition in self._revoked:
            return None
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = WheelPartition(partition, self._db(self.timers, partition))
            self._next_advance = 0.0  # load its window at the next tick, not a second later
            self._wakeup.set()
        return part

    def _mark(self, partition: int, ident: bytes, state: bytes) -> None:
        if partition in self._revoked:
            return
        out: list[Write] = []
        TerminalStore(self._db(self.terminal, partition)).mark(ident, state, out)
        self._queued.extend((self.terminal, partition, w) for w in out)

    def _changelog_only_arm(self, partition: int, fire_at_ms: int, ident: bytes) -> list[tuple[Any, int, Write]]:
        """A timer armed for a partition revoked mid-batch: no local row (the database is no
        longer ours), but the changelog carries it to the new owner's table."""
        from ._timers import INDEX_PREFIX, be_ms

        log.warning("timer %s armed for revoked partition %d: written to the changelog only", ident, partition)
        at = be_ms(fire_at_ms)
        return [(self.timers, partition, (at + ident, b"I")), (self.timers, partition, (INDEX_PREFIX + ident, at))]

    def _out(self) -> Any:
        """The engine's librdkafka output producer (events, rows, effects: one producer keeps
        their order), or None for a stand-in engine without one (then Faust's producer)."""
        out = getattr(self.engine, "out", None)
        if out is not None and not out.started:
            out.start()
        return out

    async def _send(self, writes: list[tuple[Any, int, Write]]) -> list[Any]:
        """Send row writes to their tables' changelogs; Faust's persisted offset of a table
        partition follows the acknowledgements (so recovery re-reads only what is new).
        Through the engine's output producer the whole list is one batch with one future
        (``_await_all`` of the returned list waits for it)."""
        if not writes:
            return []
        out = self._out()
        if out is not None:
            gen = self._gen
            t0 = self._t()
            fut = out.produce_batch([(table.changelog_topic.get_topic_name(), key, value, partition)
                                     for table, partition, (key, value) in writes])
            fut.add_done_callback(lambda f: self._acked_batch(writes, gen, f))
            self._block(t0)
            return [fut]
        producer = self.app.producer
        futs = []
        gen = self._gen
        last: dict[tuple[Any, int], Any] = {}
        t0 = self._t()
        for i, (table, partition, (key, value)) in enumerate(writes):
            fut = await producer.send(table.changelog_topic.get_topic_name(), key, value, partition, None, None)
            last[(table, partition)] = fut
            futs.append(fut)
            if i & 63 == 63 and time.perf_counter() - t0 > self.SLICE_S:
                t0 = await self._yield(t0)
        # One callback per table partition (its last record has the highest offset), not one
        # per record: thousands of callbacks run back to back would hold the event loop.
        for (table, partition), fut in last.items():
            fut.add_done_callback(lambda f, t=table, p=partition: self._acked(t, p, gen, f))
        self._block(t0)
        return futs

    async def _await_all(self, futs: list[Any]) -> None:
        """Wait for sends one by one (no gather: its per-future callbacks would all run in one
        loop iteration), yielding between stretches."""
        t0 = self._t()
        for i, f in enumerate(futs):
            if f.done():
                f.result()
            else:
                self._block(t0)
                await f
                t0 = self._t()
            if i & 255 == 255 and time.perf_counter() - t0 > self.SLICE_S:
                t0 = await self._yield(t0)
        self._block(t0)

    def _acked(self, table: Any, partition: int, gen: int, fut: Any) -> None:
        if fut.cancelled() or fut.exception() is not None or gen != self._gen or partition in self._revoked:
            return
        key = (table, partition)
        offset = fut.result().offset
        if offset > self._acks.get(key, -1):
            self._acks[key] = offset
        if not self._acks_flush:  # once per loop iteration, not once per record
            self._acks_flush = True
            asyncio.get_running_loop().call_soon(self._flush_acks, gen)

    def _acked_batch(self, writes: list[tuple[Any, int, Write]], gen: int, fut: Any) -> None:
        """Offsets of a batch sent through the output producer (one per write, in order)."""
        if fut.cancelled() or fut.exception() is not None or gen != self._gen:
            return
        acks = self._acks
        for (table, partition, _), offset in zip(writes, fut.result()):
            if offset > acks.get((table, partition), -1) and partition not in self._revoked:
                acks[(table, partition)] = offset
        if not self._acks_flush:
            self._acks_flush = True
            asyncio.get_running_loop().call_soon(self._flush_acks, gen)

    def _flush_acks(self, gen: int) -> None:
        acks, self._acks = self._acks, {}
        self._acks_flush = False
        if gen != self._gen:
            return
        for (table, partition), offset in acks.items():
            if partition in self._revoked:
                continue
            try:
                table.data.set_persisted_offset(TP(table.changelog_topic.get_topic_name(), partition), offset)
            except Exception:  # bookkeeping only: recovery then re-reads more of the changelog
                log.debug("could not record the persisted offset of %s[%d]", table.name, partition, exc_info=True)

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

    def _next_due_ms(self) -> int | None:
        best: bytes | None = None
        for part in self._parts.values():
            k = part.next_due()
            if k is not None and (best is None or k < best):
                best = k
        return None if best is None else int.from_bytes(best[:8], "big", signed=True)

    def _active_partitions(self) -> set[int]:
        topic = self.engine.names.commands
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

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
        for p in self._active_partitions() - set(self._parts) - self._revoked:
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
        now = now_ms()
        limit = self.engine.settings.timer_batch
        taken: list[tuple[WheelPartition, list[bytes]]] = []
        dropped: list[tuple[WheelPartition, list[bytes]]] = []
        t0 = self._t()
        for part in self._parts.values():
            if limit <= 0:
                break
            keys = part.take_due(now, limit)
            if not keys:
                continue
            limit -= len(keys)
            terminal = TerminalStore(self._db(self.terminal, part.partition))
            fire, drop = [], []
            for i, key in enumerate(keys):
                (drop if terminal.state(key[8:]) is not None else fire).append(key)
                if i & 63 == 63 and time.perf_counter() - t0 > self.SLICE_S:
                    t0 = await self._yield(t0)
            if fire:
                taken.append((part, fire))
            if drop:
                dropped.append((part, drop))
        if not taken and not dropped:
            self._block(t0)
            await self._persist_low(gen)
            return False

        codec = self.engine.codec
        commands = self.engine.names.commands
        producer = self.app.producer
        out = self._out()
        records: list[tuple[str, bytes, bytes, int]] = []
        futs = []
        try:
            for part, keys in taken:
                for key in keys:
                    ident = key[8:]
                    fire_at = int.from_bytes(key[:8], "big", signed=True)
                    wf, run, tid = parse_ident(ident)
                    sent = now_ms()
                    cmd = Command(
                        command_id=f"timer:{wf}:{run}:{tid}:{fire_at}", workflow_id=wf, sent_at_ms=sent,
                        body=FireTimer(run_id=run, timer_id=tid, fire_at_ms=fire_at))
                    if out is not None:
                        records.append((commands, wf.encode(), codec.encode_command(cmd), part.partition))
                    else:
                        futs.append(await producer.send(
                            commands, wf.encode(), codec.encode_command(cmd), part.partition, None, None))
                    self.send_lag.observe(sent - fire_at)
                    if tid.isdigit():  # a workflow's own timer: its TimerFired gives the fire lag
                        self._sent[ident] = fire_at
                    if time.perf_counter() - t0 > self.SLICE_S:
                        t0 = await self._yield(t0)
            if records:
                futs.append(out.produce_batch(records))
            self._block(t0)
            await self._await_all(futs)
        except BaseException:
            for part, keys in taken:
                part.put_back(keys)
            raise
        if "after_fire_emit" in self._faults:
            crash("after_fire_emit")
        if gen != self._gen:
            return True  # the partitions moved meanwhile: the new owner re-fires (deduplicated)
        t0 = self._t()
        writes: list[tuple[Any, int, Write]] = []
        for part, keys in (*taken, *dropped):
            for s in range(0, len(keys), 256):
                out: list[Write] = []
                part.fired(keys[s:s + 256], out)
                writes.extend((self.timers, part.partition, w) for w in out)
                if time.perf_counter() - t0 > self.SLICE_S:
                    t0 = await self._yield(t0)
                    if gen != self._gen:
                        return True
        self.stats["fired"] += sum(len(k) for _, k in taken)
        self.stats["dropped_terminal"] += sum(len(k) for _, k in dropped)
        if len(self._sent) > 200_000:  # fires whose TimerFired another worker recorded
            for ident in list(self._sent)[:100_000]:
                del self._sent[ident]
        self._block(t0)
        await self._await_all(await self._send(writes))
        await self._persist_low(gen)
        return True

    async def _persist_low(self, gen: int) -> None:
        if gen != self._gen:
            return
        mono = time.monotonic()
        writes: list[tuple[Any, int, Write]] = []
        for part in self._parts.values():
            out: list[Write] = []
            part.advance_low(mono, out)
            writes.extend((self.timers, part.partition, w) for w in out)
        if writes:
            await self._await_all(await self._send(writes))

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
