"""The engine worker: a Faust app whose agent runs workflows from the commands topic.

One batch at a time (group commit):

1. take up to ``batch_size`` command records of the partitions this worker owns (read with
   librdkafka, committed records only: ``_feed.py``), decode each (undecodable or invalid
   input goes to the dead-letter topic with the reason, nothing else stops; a command on a
   partition that does not own its workflow is forwarded to the owner, not run);
2. run each through its workflow's :class:`~aion.runtime.WorkflowExecution` (resident in a
   bounded per-partition cache, or rebuilt from the RocksDB ``history`` table on a miss);
3. per partition, one Kafka transaction (``_txn.py``) holds everything the batch writes for
   it — its events, visibility rows, timer and terminal rows, activity tasks, commands to
   other workflows, replies, dead letters — and the partition's intake position (the next
   command offset, a row of the ``progress`` table: ``_progress.py``).
   It commits whole or not at all; only then are the events and rows written to the local
   RocksDB tables (timer rows too: until then they are pending, seen by the wheel's reads only).

**Single writer.** Each partition's producer is fenced in when the partition is assigned, and
before its tables are restored (``_store.CaughtUpTable``): a worker that stalled and lost the
partition can commit nothing more for it. A fenced worker drops the partition at once.

**Failure paths.** A partition whose transaction aborts (a record refused, a call failed) or
whose step raised outside the runtime loses nothing: its local rows are put back, its
resident workflows forgotten, and its commands are handled again one per transaction, so that
a failure is pinned to one command: a step whose events would carry more payload than
``AION_MAX_PAYLOAD_BYTES`` is refused before anything is written (the run is terminated with a
``PayloadTooLargeError`` reason, as Temporal terminates a workflow whose payload is over its
limit), a command whose transaction Kafka refuses is dead-lettered with the reason, and a
failure that names no record (the broker away) makes the engine read the partition again from
that command after a pause. No intake position is ever committed past a command whose step is
not in the same committed transaction.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import deque
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable, Sequence, assert_never

from faust.types import TP

from ..codec import Codec, CodecError, partition_for
from ..model import (
    ChildWorkflowResult, Command, Event, EventKey, Failure, FireTimer, QueryWorkflow, Reply, StartWorkflow,
    TerminateWorkflow, TimerFired, now_ms, payload_size,
)
from ..model.limits import workflow_id_problem
from ..runtime import WorkflowExecution
from ._resident import Resident
from ..runtime._registry import WorkflowCode
from ..runtime import effects as fx
from ._faults import crash, faults
from ._faust import db_for, keep_paused, leave_group, offset_row, request_rejoin, stored_offset
from ..common.access import KAFKA_LOG
from ._feed import CommandReader
from ._intake import Intake
from ._metrics import engine_metrics
from ..ops._tracing import EngineTracing
from ._progress import POSITION_KEY, heartbeat_key, heartbeat_value, position_value, read_heartbeat, read_position
from ._retention import Retention
from ._visibility_index import VisibilityIndex, VisibilityIndexNotReady
from ._app import build_app
from ._store import HistoryStore, catch_up_state, scan_items, visibility_row, write_rows
from ._txn import Aborted, Fenced, Record, TxnError, Writers

#: A record of the commands topic as read: partition, offset, value, key, and headers (None
#: unless tracing is on; as confluent-kafka's Message.headers() gives them).
CommandRecord = tuple[int, int, bytes | None, bytes | None, Any]
from ._wheel import INLINE_OFF_S, TimerWheel
from ..common.settings import Settings
from ..common.visibility import LIST_QUERY
from ..common.topics import TopicNames, ensure_topics, partition_counts

log = logging.getLogger("aion.engine")

#: Seconds the engine waits before reading a partition again after a failure that names no
#: command (the broker away, a transaction timed out).
RETRY_PAUSE_S = 1.0


class _StepTooLarge(Exception):
    def __init__(self, command: Command, reason: str) -> None:
        super().__init__(reason)
        self.command = command
        self.reason = reason


@dataclass
class _Work:
    """One partition's share of a batch: what its transaction writes."""

    partition: int
    first: int | None  # None: no command record in it (the partition's due timers only)
    next: int | None  # the partition's intake position once the transaction commits (None: unchanged)
    events: list[Event] = field(default_factory=list)
    touched: dict[str, WorkflowExecution] = field(default_factory=dict)
    effects: list[fx.Effect] = field(default_factory=list)
    dlq: list[tuple[int, bytes | None, bytes | None, str]] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    n_events: int = 0
    n_rows: int = 0
    n_progress: int = 0
    fires: int = 0  # FireTimer commands among the batch's records (the wheel's fires in flight)
    inline_fires: int = 0  # due timers the batch took from the wheel itself (AION_TIMER_FIRE=inline)
    inline_dropped: int = 0  # due timers it took whose timer was already terminal (rows deleted, not fired)
    wheel_writes: list[Any] = field(default_factory=list)
    forwards: list[Record] = field(default_factory=list)  # misrouted commands, to their owners
    commands: dict[str, Command] = field(default_factory=dict)  # by command id, of the events' steps


class _EngineOutput:
    """The timer wheel's and the retention's way out: the engine's transactions, under its
    batch lock (see ``_wheel.TimerOutput``)."""

    def __init__(self, engine: "Engine") -> None:
        self._engine = engine

    def lock_for(self, partition: int) -> asyncio.Lock:
        return self._engine.lock_for(partition)

    def owned(self) -> set[int]:
        return self._engine.owned()

    async def write(self, partition: int, records: Sequence[Record]) -> list[int]:
        return await self._engine.writers.run(partition, records)

    def fire_due(self, partition: int) -> None:
        if partition in self._engine.owned():
            self._engine._start_drainer(partition)

    def lost(self, partition: int) -> None:
        self._engine.lose(partition)

    def forget(self, partition: int, workflow_ids: Iterable[str]) -> None:
        ids = list(workflow_ids)
        self._engine._cache.discard(partition, ids)
        self._engine.visibility.forget(partition, ids)


class Engine:
    """Builds and owns the Faust app of one engine worker."""

    def __init__(self, settings: Settings, registry: WorkflowCode, *, codec: Codec | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.names = TopicNames(settings.topic_prefix)
        self.codec = codec or Codec(registry_url=settings.schema_registry_url)
        n = settings.partitions
        self.app, tables = build_app(settings)
        self.tables = tables
        self.commands_topic, self.events_topic = tables.commands_topic, tables.events_topic
        self.history, self.workflows, self.progress = tables.history, tables.workflows, tables.progress
        self.history_store = HistoryStore(self.history, self.codec)
        self._cache: Resident[WorkflowExecution] = Resident(settings.cache_size)  # per worker (_resident.py)
        self._loaded: dict[int, set[str]] = {}  # workflows loaded since the partition was assigned
        self._ready: set[int] = set()  # partitions fenced in, restored and being read
        self._fenced_gen: int | None = None
        self.generation_at_ms: int | None = None  # when this worker was given its latest assignment (/readyz)
        self._rejoin_at = -1e9
        self._leaving = False  # told to stop (leave): no more batches
        self._stopping: set[int] = set()  # partitions being handed over: no new batches (_finish)
        self._reading: asyncio.Future[None] | None = None  # _start_reading, once the catch-up ended
        # _start_reading one at a time: its three callers can overlap across its await (a new
        # deployment's partitions have no intake position row yet), and the second then started
        # the same partitions again (a second "ready" line, a second visibility index build).
        self._start_lock = asyncio.Lock()
        self._fencing: asyncio.Future[set[int]] | None = None
        self._queues: dict[str, asyncio.Future[Any]] = {}  # task queue -> its topic exists
        self.intake = Intake(settings, self.names, lambda topics: partition_counts(settings, topics))
        self.stats = {"batches": 0, "commands": 0, "events": 0, "dlq": 0, "aborted": 0, "fenced": 0,
                      "forwarded": 0, "invalid": 0,
                      # cache misses (_execution): read from the current run's start, or the whole
                      # history (no row says where the run starts), and the events they decoded
                      "run_loads": 0, "full_loads": 0, "loaded_events": 0}
        self._forward_logged_at = -1e9
        #: One lock per commands partition: a partition's batches, timer fires and retirements
        #: take turns (its transactions and pending timer rows never interleave); partitions run side
        #: by side. A rebalance takes them all.
        self._locks = [asyncio.Lock() for _ in range(n)]
        self._pending: dict[int, deque[CommandRecord]] = {}
        self._drainers: dict[int, asyncio.Task[None]] = {}
        self._rewound: dict[int, tuple[int, float]] = {}  # partition -> (offset, give up at)
        self._room = asyncio.Event()
        # librdkafka's lines go through logging (aion.kafka): rate-limited, not a stderr flood.
        self.reader = CommandReader({**settings.confluent_config(), "logger": KAFKA_LOG}, self.app.conf.id,
                                    self.names.commands,
                                    max_record_bytes=settings.max_record_bytes)
        self.writers = Writers(_output_config(settings), self.app.conf.id, n)
        self._faults = faults()  # fault injection for tests (AION_FAULT, see _faults.py)
        self._inline_taken: dict[int, int] = {}  # partition -> fires its batch in preparation took
        self._inline_in_txn: dict[int, int] = {}  # partition -> fires in its transaction in flight
        if "mid_step_append" in self._faults:
            self.writers.before_commit = _crash_mid_step
        elif "inline_fire_append" in self._faults:
            self.writers.before_commit = self._crash_inline_fire
        self.output = _EngineOutput(self)
        self.wheel = TimerWheel(self.app, settings, self.codec, self.names, self.output,
                                timers=tables.timers, terminal=tables.terminal)
        for table in self.app.tables.values():  # the catch-up reads changelogs with these settings
            table.aion_settings = settings
            table.aion_before_restore = self._fence_in
            table.aion_after_catch_up = self._caught_up
        # retires closed workflows after settings.retention_ms
        self.retention = Retention(self.app, settings, self.codec, self.names, tables, self.output)
        # lists and counts of the owned partitions, answered from an index of their rows
        self.visibility = VisibilityIndex(lambda p: db_for(self.workflows, p),
                                          lambda p: scan_items(self.workflows, p))
        self._index_builds: dict[int, asyncio.Task[None]] = {}

        self.app.agent(self.commands_topic, name=f"{settings.topic_prefix}-engine-agent")(self._agent)
        # Faust types a handler with a ``signal`` keyword; these take it in **kwargs.
        self.app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        self.app.on_rebalance_complete.connect(self._on_restored)  # type: ignore[arg-type]
        self.metrics = engine_metrics(self)  # Prometheus metrics (_metrics.py), when a port is set
        self.tracing = EngineTracing()  # OpenTelemetry spans (ops/_tracing.py), when configured

    # ------------------------------------------------------------------ ownership

    def lock_for(self, partition: int) -> asyncio.Lock:
        if partition >= len(self._locks):
            self._locks.extend(asyncio.Lock() for _ in range(partition + 1 - len(self._locks)))
        return self._locks[partition]

    def _assigned_partitions(self) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.names.commands}

    def owned(self) -> set[int]:
        """Partitions this worker may process now: fenced in, restored, being read, and not
        being handed over (:meth:`_finish`)."""
        return (self._ready - self._stopping) & self.writers.owned()

    @asynccontextmanager
    async def _finish(self, parts: set[int]) -> AsyncIterator[None]:
        """``parts`` are handed over: no new batch, fire or retirement of them starts (they are
        no longer :meth:`owned`) and the ones in flight finish; then the caller holds their
        locks. Their locks are taken one after the other, and each waits for at most the
        one batch in flight (the pipelines start no other)."""
        self._stopping |= parts
        try:
            async with self._partitions_locked(parts):
                yield
        finally:
            self._stopping -= parts

    async def _fence_in(self, generation_id: int) -> set[int]:
        """Before any table of an assignment is restored (called by each table; the work is done
        once per generation): a fresh transactional producer for every newly assigned
        partition, which fences out every earlier producer of it (see _txn.py). Returns the
        partitions *kept* from the previous generation (:meth:`_open_writers`): their tables are
        current, neither caught up nor restored."""
        if self._fenced_gen != generation_id or self._fencing is None:
            previous, self._fenced_gen = self._fenced_gen, generation_id
            self.generation_at_ms = now_ms()
            self._fencing = asyncio.ensure_future(self._open_writers(generation_id, previous))
        return set(await asyncio.shield(self._fencing))

    async def _open_writers(self, generation_id: int, previous: int | None) -> set[int]:
        """The new assignment: partitions lost are dropped (after their batch in flight),
        partitions kept go on untouched, new ones are fenced in. Returns the kept ones.

        Kept: restored, read and owned (not fenced) in the generation right before this one, and
        assigned again. The group makes one assignment per generation, so in consecutive
        generations nobody else was assigned them in between: their producer still owns them
        and their local tables hold everything the log does (this worker wrote it). Faust
        rebalances eagerly — every membership change revokes every partition of every worker —
        and dropping them all made every hand-over pause every workflow for a whole restore;
        now a planned hand-over pauses only the partitions that move. A gap in the generations
        (this worker missed one: it stalled, was evicted, rejoined) keeps nothing."""
        assigned = self._assigned_partitions()
        consecutive = previous is not None and generation_id == previous + 1
        kept = (self._ready & self.writers.owned() & assigned) if consecutive else set()
        gone = (self._ready | self.reader.assigned | self._cache.partitions() | self.writers.held()) - kept
        async with self._finish(gone):  # a batch still in flight finishes first
            # Whatever was read or owned before starts again from the committed positions.
            self._drop(gone)
            self.writers.close(gone)
        if kept:
            log.info("generation %d: partitions %s kept (read on without a pause), %s new", generation_id,
                     sorted(kept), sorted(assigned - kept))
        await self.writers.open(assigned - kept)
        return kept

    @asynccontextmanager
    async def _partitions_locked(self, parts: set[int]) -> AsyncIterator[None]:
        """The locks of ``parts`` (in order): no batch, fire or retirement of them is in flight."""
        async with AsyncExitStack() as stack:
            for p in sorted(parts):
                await stack.enter_async_context(self.lock_for(p))
            yield

    async def _on_revoked(self, sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        """Nothing stops here. Faust revokes every partition at the start of every rebalance
        (eager), before anyone knows where they go; the assignment that ends it drops the
        partitions that moved (:meth:`_open_writers`). Until then this worker goes on with
        them: whatever it commits meanwhile is in the log before their next owner's catch-up
        reads it, because that owner first fences this worker's producers (single writer)."""
        log.debug("rebalance: %d partitions revoked; processed on until the assignment", len(revoked))

    def _drop(self, parts: set[int]) -> None:
        self._ready -= parts
        for p in parts:
            self._pending.pop(p, None)
            self._rewound.pop(p, None)
        self.reader.unassign(parts)
        self._cache.drop(parts)
        self.retention.forget_partitions(parts)
        self.visibility.drop(parts, lambda p: stored_offset(self.workflows, p))
        for p in parts:
            self._loaded.pop(p, None)
            if (build := self._index_builds.pop(p, None)) is not None:
                build.cancel()
        self.wheel.on_revoked(parts)

    async def leave(self, timeout: float = 10.0) -> None:
        """A planned stop (SIGTERM): finish the batches in flight, take no more, close every
        transactional producer (no transaction is left open for the next owner's fencing to
        abort, so nothing committed here is done twice) and leave the consumer group at once,
        so that the others rebalance now rather than after the session timeout. The rest of
        the shutdown (Faust's services, the tables) follows without holding any partition."""
        if self._leaving:
            return
        self._leaving = True
        t0 = time.monotonic()
        held = self._ready | self.reader.assigned | self._cache.partitions() | self.writers.held()
        async with self._finish(held | set(range(len(self._locks)))):
            self._drop(held)
            self.writers.close()
        t1 = time.monotonic()
        left = await leave_group(self.app.consumer, timeout)
        log.info("stopping: partitions %s handed back (batches in flight finished in %.2fs); %s in %.2fs",
                 sorted(held), t1 - t0, "left the group" if left else "could not leave the group (the session "
                 "timeout lets the others take over)", time.monotonic() - t1)

    def lose(self, partition: int) -> None:
        """``partition`` was fenced: another worker owns it now. Nothing more is processed or
        written for it until a rebalance assigns it again (with a new producer and a restore)."""
        if partition in self._ready:
            self.stats["fenced"] += 1
        self._drop({partition})
        self.writers.close({partition})
        # A stalled worker that was fenced is about to rejoin anyway; but a producer can also
        # fail fatally without another owner (a broker restart that lost its epoch): only a
        # rebalance fences the partition in again *and* restores it before it is read, so ask
        # for one (at most every few seconds).
        now = asyncio.get_event_loop().time()
        if getattr(self.app, "rebalancing", False):
            return  # fenced by the partition's next owner during a rebalance: its assignment drops it here
        if now - self._rejoin_at > 5.0 and partition in self._assigned_partitions():
            self._rejoin_at = now
            if request_rejoin(self.app.consumer):
                log.warning("partition %d: asked the group for a rebalance to take it back", partition)

    def _restored(self, signalled: bool) -> bool:
        """Whether the tables of the current assignment are restored, so that its partitions
        may be read (their intake positions and histories are the log's).

        Faust's own word is not enough: its ``rebalancing`` flag is cleared by the *previous*
        rebalance's recovery when that one ends after the next rebalance began, and its
        completion signal of a recovery can arrive while the next assignment's catch-up
        runs. Either way the partitions were read before their tables had caught up: from a
        stale intake position, with histories missing their last events, and with the timer
        wheel loading its window from a half-restored ``timers`` table and then raising the
        persisted scan position above rows the catch-up wrote behind it — timers that no
        worker ever fired again (their workflows stuck for good; issue 17). So: the
        generation fenced in must be the consumer's current one, and every table's catch-up
        of it must be done. When one failed, Faust's recovery reads those partitions and only
        its completion signal (``signalled``) says when they are restored."""
        gen, fencing = self._fenced_gen, self._fencing
        if gen is None or fencing is None or not fencing.done():
            return False
        if getattr(self.app, "consumer_generation_id", gen) != gen:
            return False  # a newer assignment is being made: its own restore comes
        state = catch_up_state(self.app, gen)
        if state is None:
            return False  # the catch-up of this assignment runs (or has not started)
        return state or signalled

    def _caught_up(self, generation_id: int) -> None:
        """A table's catch-up of the assignment of ``generation_id`` ended. Once every table's
        has (and succeeded), its partitions are read at once: Faust's recovery, which comes
        next, reads none of them (``skip_recovery_of``), yet its end — the completion signal,
        or the safety net a second later — came 1.5 s after the catch-up on a loaded machine,
        and every workflow of a partition that changed hands waited for it (issue 17)."""
        if catch_up_state(self.app, generation_id) and (self._reading is None or self._reading.done()):
            self._reading = asyncio.ensure_future(self._start_reading(signalled=False))

    async def _on_restored(self, sender: Any = None, **kwargs: Any) -> None:
        """Faust's recovery is done: read the owned partitions from their intake positions."""
        await self._start_reading(signalled=True)

    async def _check_restored(self) -> None:
        """The safety net (see :meth:`_agent`): partitions fenced in and restored but not read
        yet (a completion signal that did not come, or came too early) start being read."""
        if self.app.rebalancing or getattr(self.app, "in_recovery", False):
            return
        if (self._assigned_partitions() & self.writers.owned()) - self._ready:
            await self._start_reading(signalled=False)

    async def _start_reading(self, *, signalled: bool) -> None:
        """Read the owned partitions that are not read yet from their intake positions, once
        their tables are restored (:meth:`_restored`)."""
        async with self._start_lock:
            await self._start_reading_now(signalled)

    async def _start_reading_now(self, signalled: bool) -> None:
        if not self._restored(signalled):
            return
        parts = self._assigned_partitions() & self.writers.owned()
        todo = parts - self._ready
        if not todo:
            return
        offsets = {p: o for p in todo if (o := read_position(db_for(self.progress, p))) is not None}
        if todo - set(offsets):  # no row yet (an engine version before the progress table)
            try:
                offsets.update(await asyncio.get_running_loop().run_in_executor(
                    None, self.reader.committed, todo - set(offsets)))
            except Exception as exc:
                log.error("could not read the committed offsets of partitions %s (%s); the next rebalance tries "
                          "again", sorted(todo - set(offsets)), exc)
                return
        if self._assigned_partitions() & self.writers.owned() != parts or not self._restored(signalled):
            return  # a rebalance meanwhile: its own completion assigns
        keep_paused(self.app.consumer, self.names.commands)
        try:
            self.reader.learn_topic()
        except Exception as exc:  # the assignment reads on: its first fetch may just come later
            log.warning("could not look up the metadata of %s (%s)", self.names.commands, exc)
        self.reader.assign(offsets)
        self._ready |= todo
        self.wheel.on_assigned()
        for p in todo:  # the visibility index of each: kept, or built beside the commands (lists wait)
            if not self.visibility.assigned(p, stored_offset(self.workflows, p)):
                self._index_builds[p] = asyncio.ensure_future(self.visibility.build(p))
        # The one line that says this worker works (aion worker prints it at the default level).
        log.info("engine worker ready: partitions %s of %s (tables caught up; commands read from offsets %s), "
                 "%d owned in all; workflow types: %s", sorted(todo), self.names.commands,
                 {p: offsets[p] for p in sorted(offsets)}, len(self._ready),
                 ", ".join(sorted(self.registry.workflows)) or "-")

    # ------------------------------------------------------------------ commands

    async def _agent(self, stream: Any) -> None:
        """Reads command records and hands each partition's to that partition's pipeline
        (:meth:`_drain`): self-clocking group commit per partition — a partition's next batch is
        what arrived for it (up to ``batch_size``) while its previous transaction committed;
        partitions do not wait for each other. Faust's stream of the commands topic is never
        fetched (``keep_paused``): the agent subscribes for the assignment (the tables are
        co-partitioned with it)."""
        keep_paused(self.app.consumer, self.names.commands)
        size = self.settings.batch_size
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.intake.load)
        next_check = 0.0
        while True:
            if self._leaving:  # stopping (leave): nothing more is read
                await asyncio.sleep(0.1)
                continue
            while sum(len(q) for q in self._pending.values()) >= 4 * size:
                self._room.clear()
                await self._room.wait()  # back-pressure: the pipelines are behind
            # A short wait: a call on librdkafka's consumer from another thread (the assignment
            # of a hand-over, from the event loop) waits for the poll in flight to return.
            msgs = await self.reader.take_async(size, TAKE_WAIT_S)
            if loop.time() >= next_check:
                # A safety net: partitions fenced in and restored but not read yet (a completion
                # signal that did not come) start being read within a second.
                next_check = loop.time() + 1.0
                await self._check_restored()
            if not msgs:
                for idle in [p for p, q in self._pending.items() if q]:
                    self._start_drainer(idle)  # idle: anything left queued
                continue
            owned = self.owned()
            now = loop.time()
            for m in msgs:
                p, offset = m.partition(), m.offset()
                if p not in owned or offset is None or not self._accept(p, offset, now):
                    continue
                self._pending.setdefault(p, deque()).append(
                    (p, offset, m.value(), m.key(), m.headers() if self.tracing.on else None))
            for p in self._pending:
                self._start_drainer(p)

    def _accept(self, partition: int, offset: int, now: float) -> bool:
        """After a rewind to offset *o*, records fetched before the seek (past *o*) are dropped
        until *o* arrives again."""
        rewound = self._rewound.get(partition)
        if rewound is None:
            return True
        if offset == rewound[0] or now > rewound[1]:
            del self._rewound[partition]
            return True
        return False

    def _start_drainer(self, partition: int) -> None:
        task = self._drainers.get(partition)
        if task is None or task.done():
            self._drainers[partition] = asyncio.ensure_future(self._drain(partition))

    async def _drain(self, partition: int) -> None:
        """The pipeline of one partition: its batches one after the other, each one transaction."""
        size = self.settings.batch_size
        batch: list[CommandRecord] = []
        try:
            while True:
                async with self.lock_for(partition):
                    queue = self._pending.get(partition)
                    if not queue and not self.wheel.due_inline(partition):
                        return
                    batch = [queue.popleft() for _ in range(min(size, len(queue)))] if queue else []
                    self._room.set()
                    if partition not in self.owned():
                        if queue:
                            queue.clear()
                        return
                    await self._process(partition, batch)
        except asyncio.CancelledError:
            raise
        except Exception:  # never leave a partition without its pipeline, nor lose its commands
            async with self.lock_for(partition):
                self._rollback(partition)  # whatever the failed batch staged is not in the log
            queue = self._pending.get(partition)
            first = batch[0][1] if batch else queue[0][1] if queue else None
            if partition in self.owned() and first is not None:
                log.exception("partition %d: the pipeline failed; reading again from offset %d", partition, first)
                self._rewind(partition, first)  # what committed is dropped by command id
            elif partition in self.owned():
                log.exception("partition %d: the pipeline failed (a batch of due timers only; they fire again)",
                              partition)
            else:
                log.exception("partition %d: the pipeline failed", partition)
                self._pending.pop(partition, None)

    async def _process(self, partition: int, batch: list[CommandRecord]) -> None:
        """One batch of ``partition`` (caller holds its lock): one transaction, or, when that
        fails, one transaction per command (see the module docs)."""
        self._inline_taken[partition] = 0
        try:
            work = await self._prepare(partition, batch, now_ms(), inline=True)
        except Exception as exc:
            self._rollback(partition)
            if not isinstance(exc, _StepTooLarge):
                log.exception("partition %d: preparing a batch of %d commands failed; handling them one by one",
                              partition, len(batch))
            self._fires_failed(partition)
            await self._one_by_one(partition, batch)
        else:
            if not work.records:
                return  # nothing read and nothing due after all (the timers were taken meanwhile)
            try:
                await self._commit(work)
            except Fenced:
                self.lose(partition)
                return
            except Exception as exc:
                self.stats["aborted"] += 1
                log.warning("partition %d: a batch of %d commands was aborted, nothing of it is visible (%s); "
                            "handling them one by one", partition, len(batch), exc)
                self._fires_failed(partition)
                await self._one_by_one(partition, batch)
        self.stats["batches"] += 1
        self.stats["commands"] += len(batch)
        self.metrics.batch(len(batch))

    def _crash_inline_fire(self, partition: int, records: Sequence[Record]) -> None:
        """Fault injection (``AION_FAULT=inline_fire_append``): a batch that took due timers was
        handed to Kafka inside its transaction, the commit not done — die (the fires must come
        again, once each)."""
        if self._inline_in_txn.get(partition):
            crash("inline_fire_append")

    def _fires_failed(self, partition: int) -> None:
        """A batch failed (its rows rolled back, so its inline fires are due again). If it had
        taken fires, the partition's fires go through the commands topic for a while, where a
        fire that fails again is pinned and handled on its own like any command (``_one_by_one``)."""
        n = self._inline_taken.pop(partition, 0)
        if n:
            self.wheel.inline_off(partition)
            log.warning("partition %d: a failed batch held %d timer fires; the partition's fires go through the "
                        "commands topic for %.0fs", partition, n, INLINE_OFF_S)

    def _execution(self, partition: int, workflow_id: str) -> WorkflowExecution:
        """The workflow's execution: resident, or rebuilt from its history. The first load after
        an assignment repairs a history written by an engine without transactions that died
        inside a step (see ``from_history(repair=True)``)."""
        ex = self._cache.get(partition, workflow_id)
        if ex is not None:
            self.metrics.hits += 1
            return ex
        self.metrics.misses += 1
        store = self.history_store
        # The current run only (a continue-as-new chain's earlier runs are not read), where the
        # workflow's row says it starts; else (no row, an older engine's row) the whole history.
        run = store.load_run(partition, workflow_id, db_for(self.workflows, partition).get(workflow_id.encode()))
        if run is not None:
            history, seed = run.events, run.chain_start
            self.stats["run_loads"] += 1
        else:
            history, seed = store.load(partition, workflow_id), None
            self.stats["full_loads"] += 1
        self.stats["loaded_events"] += len(history) + (seed is not None)
        loaded = self._loaded.setdefault(partition, set())
        if history:
            ex = WorkflowExecution.from_history(self.registry, workflow_id, history, repair=workflow_id not in loaded,
                                                chain_start=seed)
            if ex.first_seq > 1:  # a history page may ask for the earlier runs' events
                ex.earlier = functools.partial(store.between, partition, workflow_id)
            # Open activities' last heartbeats (details for the next attempt) are kept beside the history.
            ex.restore_heartbeats(lambda aid: read_heartbeat(self.codec, db_for(self.progress, partition),
                                                             workflow_id, aid))
        else:
            ex = WorkflowExecution.new(self.registry, workflow_id)
        loaded.add(workflow_id)
        self._cache.put(partition, workflow_id, ex)
        return ex

    async def _one_by_one(self, partition: int, recs: list[CommandRecord]) -> None:
        """Handle ``recs`` of ``partition`` one transaction each, pinning a failure to its
        command (see the module docs)."""
        for i, rec in enumerate(recs):
            if partition not in self.owned():
                return
            offset = rec[1]
            try:
                work = await self._prepare(partition, [rec], now_ms())
            except _StepTooLarge as exc:
                self._rollback(partition)
                work = await self._refuse_large(partition, rec, exc)
            except Exception as exc:
                self._rollback(partition)
                log.exception("partition %d: command at offset %d failed outside the runtime", partition, offset)
                work = self._dead_letter_work(partition, rec, f"engine error: {type(exc).__name__}: {exc}")
            try:
                await self._commit(work)
                continue
            except Fenced:
                self.lose(partition)
                return
            except (TxnError, Exception) as exc:
                self.stats["aborted"] += 1
                record = exc.record if isinstance(exc, Aborted) else None
                if record is None and isinstance(exc, TxnError):
                    # Nothing names the command (the broker away, a timeout): read it again later.
                    log.warning("partition %d: transaction of the command at offset %d failed (%s); reading "
                                "the partition again from there in %.1fs", partition, offset, exc, RETRY_PAUSE_S)
                    self._rewind(partition, offset)
                    await asyncio.sleep(RETRY_PAUSE_S)
                    return
                reason = f"{exc}"
            # The command's own transaction was refused: dead-letter it, with the reason.
            try:
                await self._commit(self._dead_letter_work(partition, rec, f"transaction refused: {reason}"))
            except Fenced:
                self.lose(partition)
                return
            except Exception as exc:
                log.warning("partition %d: dead-lettering offset %d failed (%s); reading again from there",
                            partition, offset, exc)
                self._rewind(partition, offset)
                await asyncio.sleep(RETRY_PAUSE_S)
                return

    def _rewind(self, partition: int, offset: int) -> None:
        """Read ``partition`` again from ``offset`` (what is queued after it goes)."""
        self._pending.pop(partition, None)
        self._rewound[partition] = (offset, asyncio.get_running_loop().time() + 30.0)
        self.reader.rewind({partition: offset})

    def _rollback(self, partition: int) -> None:
        """Nothing of the partition's transaction is visible: forget its pending local rows and
        its resident workflows (they may hold steps the log does not)."""
        self.wheel.rolled_back(partition)
        self._cache.drop([partition])

    async def _prepare(self, partition: int, recs: list[CommandRecord], now: int, *, inline: bool = False) -> _Work:
        """Run the partition's commands and assemble its transaction's records. With ``inline``,
        the batch also takes the partition's due timers (``AION_TIMER_FIRE=inline``): their
        ``FireTimer`` commands are stepped after the commands read, as if read, and their rows'
        deletion joins the transaction (one transaction for a fire and its ``TimerFired``; none
        on the topic)."""
        work = _Work(partition, recs[0][1], recs[-1][1] + 1) if recs else _Work(partition, None, None)
        self.wheel.begin(partition)
        fires: list[Command] = []
        if inline:
            fires, work.wheel_writes, work.inline_dropped = self.wheel.take_inline(
                partition, self.settings.batch_size, now)
            work.inline_fires = self._inline_taken[partition] = len(fires)
        for _partition, offset, raw, rkey, *rest in recs:
            self._step(work, offset, raw, rkey, now, rest[0] if rest else None)
        # After what was read: a signal already in the log when the timer fell due comes first,
        # as it did when fires went through the topic.
        for cmd in fires:
            self._run(work, -1, None, cmd.workflow_id.encode(), cmd, now, None)
        if "effects_error" in self._faults and work.effects:
            self._faults = self._faults - {"effects_error"}
            raise RuntimeError("AION_FAULT=effects_error: an exception while performing the batch's effects")
        await self._assemble(work)
        return work

    def _step(self, work: _Work, offset: int, raw: bytes | None, rkey: bytes | None, now: int,
              headers: Any = None) -> None:
        partition = work.partition
        if raw is None:
            work.dlq.append((offset, rkey, raw, "empty record value (tombstone) on the commands topic"))
            return
        try:
            cmd = self.codec.decode_command(raw)
        except CodecError as exc:
            work.dlq.append((offset, rkey, raw, f"undecodable command: {exc}"))
            return
        except Exception as exc:  # a decoder bug must not stop the partition
            work.dlq.append((offset, rkey, raw, f"undecodable command: {type(exc).__name__}: {exc}"))
            return
        if isinstance(cmd.body, FireTimer):
            work.fires += 1
        self._run(work, offset, raw, rkey, cmd, now, headers)

    def _run(self, work: _Work, offset: int, raw: bytes | None, rkey: bytes | None, cmd: Command, now: int,
             headers: Any) -> None:
        """One command of the batch: read (``raw``) at ``offset`` of the partition, or a due
        timer the batch took itself (``raw`` None, ``offset`` -1: its bytes are made only if it
        must be dead-lettered)."""
        partition = work.partition

        def whole() -> bytes:
            return raw if raw is not None else self.codec.encode_command(cmd)

        problem = self.intake.problem(cmd, now)
        if problem is not None:
            self._refuse_invalid(work, offset, rkey, whole(), cmd, problem)
            return
        owner = partition_for(cmd.workflow_id, self.settings.partitions)
        if owner != partition:
            self._forward(work, offset, cmd, whole(), owner)
            return
        limit = self.settings.max_payload_bytes
        # A record no larger than the limit cannot carry more payload than it: skip the walk
        # (a timer's fire carries none).
        size = payload_size(cmd.body) if raw is not None and len(raw) > limit else 0
        if size > limit:
            reason = (f"{cmd.type} for workflow {cmd.workflow_id!r} carries {size} bytes of payload, over "
                      f"the limit of {limit} (AION_MAX_PAYLOAD_BYTES); store large data elsewhere and pass a "
                      "reference")
            work.dlq.append((offset, rkey, raw, reason))
            if cmd.reply_to:
                work.effects.append(fx.SendReply(cmd.reply_to, Reply(
                    command_id=cmd.command_id, workflow_id=cmd.workflow_id, kind="ERROR",
                    failure=Failure(type="PayloadTooLargeError", message=reason))))
            return
        if isinstance(cmd.body, QueryWorkflow) and cmd.body.query_name == LIST_QUERY:
            if cmd.reply_to:  # a list of the partition's workflows (_visibility_index.py), never recorded
                work.effects.append(fx.SendReply(cmd.reply_to, self._list_page(partition, cmd)))
            return
        try:
            # A workflow this batch already stepped is taken as the batch left it: the cache may
            # have dropped it since (more workflows in the batch than it holds), and a reload
            # from RocksDB would miss the batch's steps (written there once it commits) — its
            # next step would record at seqs the batch already used.
            ex = work.touched.get(cmd.workflow_id)
            if ex is None:
                ex = self._execution(partition, cmd.workflow_id)
            span = self.tracing.step(cmd, ex, headers)
            if isinstance(cmd.body, QueryWorkflow):
                reply = ex.query(cmd)
                self.tracing.stepped(span, ex, None)
                if cmd.reply_to:
                    work.effects.append(fx.SendReply(cmd.reply_to, reply))
                return
            t0 = time.perf_counter()
            step = ex.handle(cmd, now)
            self.metrics.step(ex, time.perf_counter() - t0)
            self.tracing.stepped(span, ex, step)
        except Exception as exc:
            log.exception("command %s for workflow %s failed", cmd.command_id, cmd.workflow_id)
            self._cache.discard(partition, [cmd.workflow_id])
            work.dlq.append((offset, rkey, whole(), f"engine error on {cmd.type} for workflow {cmd.workflow_id!r}: "
                                                f"{type(exc).__name__}: {exc}"))
            if cmd.reply_to:
                work.effects.append(fx.SendReply(cmd.reply_to, Reply(
                    command_id=cmd.command_id, workflow_id=cmd.workflow_id, kind="ERROR",
                    failure=Failure(type="EngineError", message=(
                        f"the engine could not process {cmd.type} for workflow {cmd.workflow_id!r}: {exc}; the "
                        f"command was dead-lettered to {self.names.dlq}")))))
            return
        work.commands[cmd.command_id] = cmd
        start = getattr(cmd.body, "start", cmd.body)
        if isinstance(start, StartWorkflow) and step.events:
            self._queue_ready(start.task_queue)  # its activities' topic, made before they need it
        refusal = step.refusal
        if refusal is not None and not cmd.reply_to and not step.effects:
            # Refused with nobody to tell (no reply_to): keep it, with the reason.
            work.dlq.append((offset, rkey, whole(), f"{cmd.type} refused: {refusal.type}: {refusal.message}"))
        work.events.extend(step.events)
        work.effects.extend(step.effects)
        if step.events:
            work.touched[cmd.workflow_id] = ex

    def _list_page(self, partition: int, cmd: Command) -> Reply:
        body = cmd.body
        assert isinstance(body, QueryWorkflow)
        try:
            return Reply(cmd.command_id, cmd.workflow_id, "QUERY", result=self.visibility.answer(partition, body.args))
        except VisibilityIndexNotReady as exc:
            failure = Failure(type="VisibilityIndexNotReady", message=str(exc))
        except ValueError as exc:  # a malformed request: its sender's bug, not a reason to read the log
            failure = Failure(type="InvalidArgumentError", message=str(exc))
        return Reply(cmd.command_id, cmd.workflow_id, "ERROR", failure=failure)

    def _refuse_invalid(self, work: _Work, offset: int, rkey: bytes | None, raw: bytes, cmd: Command,
                        problem: str) -> None:
        """A command outside its limits (``_intake.py``) is not run: dead-lettered with the
        reason; its sender, if the engine answers on its ``reply_to``, gets InvalidArgumentError;
        a child's start tells its parent (whose workflow would otherwise wait for the child)."""
        wid = cmd.workflow_id if isinstance(cmd.workflow_id, str) else ""
        reason = f"invalid {cmd.type} for workflow {wid[:200]!r}: {problem}"
        work.dlq.append((offset, rkey, raw, reason))
        self.stats["invalid"] += 1
        failure = Failure(type="InvalidArgumentError", message=reason)
        if self.intake.answers(cmd.reply_to):
            work.effects.append(fx.SendReply(cmd.reply_to, Reply(  # type: ignore[arg-type]
                command_id=cmd.command_id, workflow_id=cmd.workflow_id, kind="ERROR", failure=failure)))
        start = getattr(cmd.body, "start", cmd.body)
        parent = getattr(start, "parent_workflow_id", None)
        if parent and workflow_id_problem(parent) is None:
            work.effects.append(fx.SendCommand(Command(
                f"{parent}:invalid-child:{offset}@{work.partition}", parent, now_ms(),
                ChildWorkflowResult(run_id=getattr(start, "parent_run_id", None) or "", child_workflow_id=wid[:1000],
                                    outcome="FAILED", failure=failure))))

    def _forward(self, work: _Work, offset: int, cmd: Command, raw: bytes, owner: int) -> None:
        """A command on a partition that does not own its workflow (a producer with another
        partitioner, a null key or another key) must not run here: its history would be written
        to this partition while everything else about the workflow goes to the owner. It goes
        to the owner in this partition's transaction, byte for byte (its command id is kept, so
        a duplicate is still recognised there), keyed by the workflow id; the intake position
        passes it only if the copy commits."""
        work.forwards.append((self.names.commands, cmd.workflow_id.encode(), raw, owner,
                              [("aion.forwarded.from", f"{work.partition}@{offset}".encode())]))
        self.stats["forwarded"] += 1
        now = time.monotonic()
        if now - self._forward_logged_at >= 5.0:  # a misconfigured producer sends many: say it now and then
            self._forward_logged_at = now
            log.info("%s for workflow %r arrived on %s[%d]@%d, owned by partition %d: forwarded there "
                     "(%d forwarded so far; produce with key = workflow id and the murmur2 partitioner to "
                     "save the hop)", cmd.type, cmd.workflow_id, self.names.commands, work.partition, offset,
                     owner, self.stats["forwarded"])

    async def _refuse_large(self, partition: int, rec: CommandRecord, exc: _StepTooLarge) -> _Work:
        """A step over the payload limit: nothing of it is recorded. A running workflow is
        terminated with the reason (its next command would only produce the same step); a
        start is refused. The sender, if it waits, gets ``PayloadTooLargeError``."""
        cmd = exc.command
        offset = rec[1]
        work = _Work(partition, offset, offset + 1)
        self.wheel.begin(partition)
        log.warning("partition %d: %s", partition, exc.reason)
        ex = self._execution(partition, cmd.workflow_id)
        if ex.history and ex.status == "RUNNING":
            term = Command(command_id=f"{cmd.command_id}:payload-too-large", workflow_id=cmd.workflow_id,
                           sent_at_ms=now_ms(), body=TerminateWorkflow(reason=f"PayloadTooLargeError: {exc.reason}"))
            step = ex.handle(term, now_ms())
            work.events.extend(step.events)
            work.effects.extend(e for e in step.effects if not isinstance(e, fx.SendReply))
            if step.events:
                work.touched[cmd.workflow_id] = ex
        else:
            work.dlq.append((offset, rec[3], rec[2], exc.reason))
        if cmd.reply_to:
            work.effects.append(fx.SendReply(cmd.reply_to, Reply(
                command_id=cmd.command_id, workflow_id=cmd.workflow_id, kind="ERROR",
                failure=Failure(type="PayloadTooLargeError", message=exc.reason))))
        await self._assemble(work)
        return work

    def _dead_letter_work(self, partition: int, rec: CommandRecord, reason: str) -> _Work:
        offset = rec[1]
        work = _Work(partition, offset, offset + 1)
        self._progress_records(work)
        work.records.append(self._dlq_record(partition, offset, rec[3], rec[2], reason))
        return work

    def _progress_records(self, work: _Work) -> None:
        """The ``progress`` rows of the transaction (``_progress.py``): kept and dropped
        heartbeats, then the intake position."""
        p, records = work.partition, work.records
        topic = self.progress.changelog_topic.get_topic_name()
        n = len(records)
        for eff in work.effects:
            if isinstance(eff, fx.KeepHeartbeat):
                hb = eff.heartbeat
                records.append((topic, heartbeat_key(eff.workflow_id, hb.activity_id),
                                heartbeat_value(self.codec, eff.workflow_id, eff.at_ms, hb), p))
            elif isinstance(eff, fx.DropHeartbeat):
                records.append((topic, heartbeat_key(eff.workflow_id, eff.activity_id), None, p))
        if work.next is not None:  # a batch of due timers only reads nothing: the position stays
            records.append((topic, POSITION_KEY, position_value(work.next), p))
        work.n_progress = len(records) - n

    def _dlq_record(self, partition: int, offset: int, key: bytes | None, raw: bytes | None, reason: str) -> Any:
        log.warning("dead-lettered %s[%d]@%d: %s", self.names.commands, partition, offset, reason)
        self.stats["dlq"] += 1
        return (self.names.dlq, key, raw, None,
                [("aion.reason", reason.encode()), ("aion.source.topic", self.names.commands.encode()),
                 ("aion.source.partition", str(partition).encode()), ("aion.source.offset", str(offset).encode())])

    async def _assemble(self, work: _Work) -> None:
        """The records of the partition's transaction, in order: events, visibility rows, timer
        and terminal rows (staged as pending writes, in RocksDB after the commit), effects, dead letters."""
        p = work.partition
        events_topic = self.names.events
        encode_key, encode_event = self.codec.encode_event_key, self.codec.encode_event
        records = work.records
        limit = self.settings.max_payload_bytes
        for ev in work.events:
            value = encode_event(ev)
            # A record no larger than the limit cannot carry more payload than it: skip the walk.
            if len(value) > limit and (size := payload_size(ev.body)) > limit:
                cmd = work.commands.get(ev.command_id or "")
                reason = (f"the step of command {ev.command_id!r} for workflow {ev.workflow_id!r} would record "
                          f"{type(ev.body).__name__} (seq {ev.seq}) with {size} bytes of payload, over the limit "
                          f"of {limit} (AION_MAX_PAYLOAD_BYTES); store large data elsewhere and pass a reference")
                if cmd is None:
                    raise RuntimeError(reason)
                raise _StepTooLarge(cmd, reason)
            records.append((events_topic, encode_key(EventKey(ev.workflow_id, ev.seq)), value, p))
        work.n_events = len(work.events)
        wf_topic = self.workflows.changelog_topic.get_topic_name()
        for wid, ex in work.touched.items():
            records.append((wf_topic, wid.encode(), visibility_row(ex), p))
        work.n_rows = len(work.touched)
        self._progress_records(work)
        timer_effects = [(p, e) for e in work.effects if isinstance(e, (fx.ScheduleTimer, fx.DropTimer))]
        work.wheel_writes = work.wheel_writes + self.wheel.stage([(p, ev) for ev in work.events], timer_effects)
        records.extend(self.wheel.records(work.wheel_writes))
        for eff in work.effects:
            if isinstance(eff, fx.DispatchActivity):
                records.append((self.names.activity_tasks(eff.task.task_queue),
                                f"{eff.task.workflow_id}/{eff.task.activity_id}".encode(),
                                self.codec.encode_task(eff.task), await self._task_partition(eff.task.task_queue, p),
                                self.tracing.headers(eff)))
            elif isinstance(eff, fx.DispatchActivityCancel):
                records.append((self.names.activity_tasks(eff.task_queue),
                                f"{eff.task.workflow_id}/{eff.task.activity_id}".encode(),
                                self.codec.encode_task(eff.task), await self._task_partition(eff.task_queue, p)))
            elif isinstance(eff, fx.SendCommand):
                records.append((self.names.commands, eff.command.workflow_id.encode(),
                                self.codec.encode_command(eff.command), None, self.tracing.headers(eff)))
            elif isinstance(eff, fx.SendReply):
                # Checked at intake; a reply_to recorded by an older engine is checked here.
                if (problem := self.intake.reply_problem(eff.reply_to)) is not None:
                    log.warning("reply to command %s dropped: %s", eff.reply.command_id, problem)
                    continue
                topic, _, part = eff.reply_to.rpartition(":")
                records.append((topic, eff.reply.command_id.encode(), self.codec.encode_reply(eff.reply), int(part),
                                self.tracing.headers(eff)))
            elif isinstance(eff, (fx.ScheduleTimer, fx.DropTimer, fx.KeepHeartbeat, fx.DropHeartbeat)):
                continue
            else:  # a new kind of effect must be handled here (the type checker says where)
                assert_never(eff)
        records.extend(work.forwards)
        for offset, rkey, raw, reason in work.dlq:
            records.append(self._dlq_record(p, offset, rkey, raw, reason))

    async def _commit(self, work: _Work) -> None:
        """The partition's transaction; then the local tables. Raises ``TxnError`` (and puts
        the local rows back) when it did not commit."""
        p = work.partition
        if "refuse_record" in self._faults and len(work.records) >= 2:
            self._faults = self._faults - {"refuse_record"}
            rec = work.records[1]
            work.records[1] = (rec[0], rec[1], b"\0" * (self.settings.max_record_bytes + 1), rec[3],
                               rec[4] if len(rec) > 4 else None)
            log.warning("AION_FAULT=refuse_record: record 1 of partition %d's transaction made too large", p)
        t0 = time.perf_counter()
        self._inline_in_txn[p] = work.inline_fires  # (AION_FAULT=inline_fire_append)
        if "refuse_inline_fire" in self._faults and work.inline_fires:
            self._faults = self._faults - {"refuse_inline_fire"}
            work.records.append((self.names.events, b"x", b"\0" * (self.settings.max_record_bytes + 1), p))
            log.warning("AION_FAULT=refuse_inline_fire: partition %d's transaction with %d timer fires made to fail",
                        p, work.inline_fires)
        try:
            offsets = await self.writers.run(p, work.records)
        except BaseException:
            self._rollback(p)
            raise
        if "after_fire_recorded" in self._faults and any(isinstance(ev.body, TimerFired) for ev in work.events):
            crash("after_fire_recorded")
        n_ev, n_rows, n_prog = work.n_events, work.n_rows, work.n_progress
        try:
            if n_ev:
                self.history_store.write_local(p, [(k, v) for _, k, v, *_ in work.records[:n_ev]], max(offsets[:n_ev]))
            p0 = n_ev + n_rows
            if n_rows:
                _apply_rows(self.workflows, p, work.records[n_ev:p0], offsets[n_ev:p0])
                self.retention.rows_committed(p, work.records[n_ev:p0])
                self.visibility.committed(p, work.records[n_ev:p0])
            if n_prog:
                _apply_rows(self.progress, p, work.records[p0:p0 + n_prog], offsets[p0:p0 + n_prog])
            w0 = p0 + n_prog
            self.wheel.committed(p, work.wheel_writes, offsets[w0:w0 + len(work.wheel_writes)])
            if work.fires:
                self.wheel.fires_consumed(p, work.fires)
            if work.inline_fires or work.inline_dropped:
                self.wheel.inline_committed(work.inline_fires, work.inline_dropped)
            closed = [wid for wid, ex in work.touched.items() if ex.status != "RUNNING"]
            if closed:
                self._cache.demote(p, closed)  # evicted before any running workflow
        except BaseException as exc:
            # The log holds the batch and the local tables do not: going on would build on a
            # history that misses it. Die; the next owner restores from the log.
            log.critical("partition %d: the local tables could not take a committed batch (%s: %s); exiting so "
                         "that the partition is restored from the log", p, type(exc).__name__, exc)
            logging.shutdown()
            os._exit(70)
        self.stats["events"] += n_ev
        self.metrics.committed(work, time.perf_counter() - t0)  # counters from what committed

    async def _task_partition(self, queue: str, partition: int) -> int | None:
        """The partition of task queue ``queue``'s topic that the activity tasks of workflow
        partition ``partition`` go to: the same number when the topic has as many partitions as
        the commands topic (as the engine creates it), else None (by key). A batch's transaction
        then writes one partition of the queue's topic, not one per task: librdkafka sends one
        produce request per partition and the broker serves a connection's requests one after
        another, so each partition a transaction touches adds a round trip to its commit.
        Workers receive a task's cancellation on every partition (``worker/_cancels.py``)."""
        n = await self._queue_ready(queue)
        return partition if n == self.settings.partitions else None

    def _queue_ready(self, queue: str) -> asyncio.Future[Any]:
        """Done once the topic of task queue ``queue`` exists, with its partition count. Its
        creation starts when a start naming the queue is accepted (off the batch path: the batch
        that dispatches the first activity rarely waits for it) or, for a queue only activities
        name, at that dispatch. A creation that failed is tried again by the next call."""
        fut = self._queues.get(queue)
        if fut is None or (fut.done() and fut.exception() is not None):
            topic = self.names.activity_tasks(queue)

            def ready() -> int:
                ensure_topics(self.settings, task_queues=(queue,))
                return partition_counts(self.settings, [topic]).get(topic, 0)

            fut = asyncio.get_running_loop().run_in_executor(None, ready)
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no "never retrieved" log
            self._queues[queue] = fut
        return fut


#: The longest the intake's poll waits for a command record (see :meth:`Engine._agent`).
TAKE_WAIT_S = 0.02


def _crash_mid_step(partition: int, records: Sequence[Record]) -> None:
    """Fault injection (``AION_FAULT=mid_step_append``): the batch's records were handed to
    Kafka inside the transaction, the commit not done — die (the next owner's fencing aborts
    the transaction: nothing of it is ever visible)."""
    if sum(1 for r in records if r[0].endswith(".events")) >= 2:
        crash("mid_step_append")


def _apply_rows(table: Any, partition: int, records: Sequence[Record], offsets: Sequence[int]) -> None:
    """Committed rows of ``table`` into its local partition (no value: the row goes), and the
    changelog offset Faust's recovery starts after."""
    write_rows(db_for(table, partition),
               [*((key, value) for _, key, value, *_ in records), offset_row(table, max(offsets))])


def _output_config(settings: Settings) -> dict[str, Any]:
    """librdkafka settings of the engine's output producer: acks=all and idempotence (no
    duplicates from internal retries), murmur2 keyed partitioning like Faust's and the
    clients', and no linger: the engine hands over a whole batch at once and then waits for
    its acks, so lingering only delays them (each append and each effects send waited ~1-2 ms
    more with ``linger.ms=1``: -10 ms start->result p50 at 50/s). Records produced while a
    request is in flight still travel together."""
    return dict(settings.confluent_config(), **{
        "logger": KAFKA_LOG,  # librdkafka's lines through logging (rate-limited by aion worker)
        "client.id": f"{settings.topic_prefix}.engine",
        "acks": "all",
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        "linger.ms": 0,
        "message.max.bytes": max(1_000_000, settings.max_record_bytes),
        # A transaction that starts while the previous one's markers are still being written
        # is answered CONCURRENT_TRANSACTIONS and retried after the backoff: librdkafka's
        # default 100 ms made send_offsets_to_transaction take ~87 ms (median) on the
        # development machine, 2 ms makes it ~5 ms (the Java client retries that case at 20 ms).
        "retry.backoff.ms": 2,
        "retry.backoff.max.ms": 100,
        # Connect to every broker as soon as it is known, not when a request first needs it:
        # a partition's producer is created when it is fenced in, and init_transactions raced
        # librdkafka's switch from the bootstrap connection (see PartitionWriter.init).
        "enable.sparse.connections": False,
    })
