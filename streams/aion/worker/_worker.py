"""The activity worker: runs ``@activity.defn`` functions for one task queue.

Data flow::

    <prefix>.activity-tasks.<queue> --(group <prefix>.activity-workers.<queue>)--> worker
        ActivityTask        -> run the attempt -> ActivityTaskStarted, then
                               ActivityTaskCompleted | ActivityTaskFailed | ActivityTaskCancelled
                               (+ ActivityHeartbeat while it runs)      --> <prefix>.commands
        CancelActivityTask  -> cancel the in-flight attempt

Delivery: at-least-once. The offset of a task is committed only after the command with its
outcome is acknowledged by Kafka (acks=all); a worker that dies mid-attempt leaves the offset
uncommitted and another worker of the group runs the same attempt again. The engine drops
results of stale or duplicate attempts, and the outcome commands carry a command id derived from
the attempt, so a re-run that reaches the same outcome is de-duplicated by id as well. A task
delivered again while the same attempt is still waiting, running or reporting here is not run
twice, and its offset is committed only together with the first delivery's, once that one's
report is acknowledged (:class:`~._offsets.OffsetTracker`). The task consumers read with
``isolation.level=read_committed``: the engine writes tasks inside Kafka transactions, and a task
of an aborted transaction must never run.

Rebalance: when partitions are revoked, attempts of those partitions get a short grace
(``min(graceful_timeout, revoke_grace)``, 2 s by default, so the revoke does not stall the
group) to finish; those that finish and whose report is acknowledged in time have their offsets
committed in the revoke. The rest are abandoned: an ``async`` activity is cancelled, a sync one
(a thread cannot be interrupted) is asked to stop (``activity.is_cancelled()``, reason
``PARTITION_REVOKED``) and left to finish in its thread. An abandoned attempt's outcome is never
reported and its offset never committed: the partition's new owner runs the attempt again and is
the only one to report it. Lost partitions (the session expired) get no grace and no commit.

Back-pressure: at most ``concurrency`` (N) attempts run at once. Tasks received while every
slot is busy wait in a bounded local backlog (``max_backlog`` tasks, default max(N, 1000), and
``max_backlog_bytes``) and start, in arrival
order, as slots free up. When running + waiting reach N + backlog, the consumer pauses its
partitions (it keeps polling, so it stays in the group) and resumes once the backlog is down to
half: a resume costs a fetch round trip, so it should bring a batch. Cancel requests still
arrive while paused — they sit behind the paused position, so a
:class:`~._cancels.CancelWatcher` reads them; a cancel for a waiting task reports it cancelled
without running it. Waiting tasks are neither started nor committed, so on a rebalance or a
stop they simply go to the partition's next owner.

Retries, backoff and timeouts are the engine's business (durable timers); the worker only
cancels an ``async`` attempt locally once its deadline has passed, to free the slot.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from ..activity._context import ActivityContext, CompleteAsyncError, current, make_info
from ..common.kafka import AsyncProducer, consume_available, consumer_config, fatal_or_log, producer_config
from ..codec import Codec
from ..converter import default_converter
from ..exceptions import exception_to_failure
from ..common.access import KAFKA_LOG
from ..common.settings import Settings
from ..common.topics import TopicNames
from ..model import (
    now_ms,
    ActivityHeartbeat,
    ActivityTask,
    ActivityTaskCancelled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskStarted,
    CancelActivityTask,
    Command,
    CommandBody,
    Failure,
    Payload,
)
from ._activities import RegisteredActivity, decode_args, registry_of
from ._cancels import CancelWatcher
from ._heartbeat import HeartbeatThrottle, throttle_interval
from ..ops._tracing import WorkerTracing
from ._metrics import WorkerMetrics
from ._offsets import OffsetTracker

log = logging.getLogger(__name__)

#: An attempt that ends within this many seconds reports its start together with its outcome:
#: the engine records ``ActivityStarted`` and the outcome in one step (one transaction instead
#: of two on the workflow's path; Temporal too writes a started event with the outcome). A
#: longer attempt reports its start after this long (or at its first heartbeat), which is when
#: the engine arms its start-to-close and heartbeat timeouts.
STARTED_AFTER_S = 0.05

#: Namespace of the attempt-derived command ids of outcome commands.
_OUTCOME_NS = uuid.UUID("6b2f7f1c-3f0e-4f3a-9a51-5d1f4c1e2a01")

AttemptKey = tuple[str, str, str, int]  # workflow id, run id, activity id, attempt


def attempt_key(t: ActivityTask | CancelActivityTask) -> AttemptKey:
    return (t.workflow_id, t.run_id, t.activity_id, t.attempt)


def outcome_command_id(key: AttemptKey, kind: str) -> str:
    """Deterministic id of an attempt's ``kind`` command: a re-run reporting the same outcome
    sends the same id, which the engine de-duplicates."""
    wf, run, act, attempt = key
    return str(uuid.uuid5(_OUTCOME_NS, f"{wf}\x00{run}\x00{act}\x00{attempt}\x00{kind}"))


@dataclass(eq=False)
class _Attempt:
    task: ActivityTask
    tp: tuple[str, int]
    offset: int
    ctx: ActivityContext
    throttle: HeartbeatThrottle
    runner: asyncio.Task[None] | None = None
    #: The asyncio task running an ``async`` activity (cancelled on a server cancel).
    activity_task: asyncio.Future[Any] | None = None
    flush_handle: asyncio.TimerHandle | None = None
    deadline_handle: asyncio.TimerHandle | None = None
    #: The start report, while it waits to go alone (see ``STARTED_AFTER_S``).
    started_handle: asyncio.TimerHandle | None = None
    #: Given up (stop or revoke): its outcome is not reported, its offset not committed.
    abandoned: bool = False
    started_monotonic: float = field(default_factory=time.monotonic)


class ActivityWorker:
    """Runs the given activities for one task queue; ``await run()`` until ``stop()``.

    ``concurrency``: the most attempts in flight at once (sync ones run in a thread pool of that
    size, async ones on the worker's event loop). ``max_backlog``: how many received tasks may
    wait for a slot (default: ``max(concurrency, 1000)``; ``max_backlog_bytes`` bounds their
    size too). ``graceful_timeout``: on ``stop()``, how long
    in-flight attempts may take to finish before they are abandoned (cancelled, not reported, not
    committed: another worker of the group runs them again). ``revoke_grace``: the same on a
    rebalance, for the attempts of revoked partitions (at most ``graceful_timeout``; keep it short,
    the group waits for the revoke).
    """

    def __init__(
        self,
        settings: Settings,
        activities: Sequence[Any],
        task_queue: str = "default",
        concurrency: int = 100,
        *,
        converter: Any = None,
        codec: Codec | None = None,
        identity: str | None = None,
        graceful_timeout: float = 10.0,
        max_heartbeat_throttle: float = 30.0,
        default_heartbeat_throttle: float = 5.0,
        commit_interval: float = 0.2,
        ensure_topics: bool = True,
        max_backlog: int | None = None,
        max_backlog_bytes: int = 64 * 1024 * 1024,
        revoke_grace: float = 2.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.settings = settings
        self.task_queue = task_queue
        self.concurrency = concurrency
        self.activities: dict[str, RegisteredActivity] = registry_of(activities)
        self.converter = converter or default_converter()
        self.codec = codec or _codec_for(settings)
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.graceful_timeout = graceful_timeout
        self.revoke_grace = revoke_grace
        self.max_heartbeat_throttle = max_heartbeat_throttle
        self.default_heartbeat_throttle = default_heartbeat_throttle
        self.commit_interval = commit_interval
        self._ensure_topics = ensure_topics
        self.names = TopicNames(settings.topic_prefix)
        self.topic = self.names.activity_tasks(task_queue)
        self.group_id = f"{settings.topic_prefix}.activity-workers.{task_queue}"

        self._inflight: dict[AttemptKey, _Attempt] = {}
        #: Attempts whose runner has not ended: running, or reporting (waiting for the ack).
        self._active: set[_Attempt] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._cancelled_recently: OrderedDict[AttemptKey, None] = OrderedDict()
        self._offsets = OffsetTracker()
        self._consumer: Consumer | None = None
        self._producer: AsyncProducer | None = None
        self._watcher: CancelWatcher | None = None
        self._io = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="aion-worker-io")
        self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="aion-activity")
        self._stopping: asyncio.Event | None = None
        self._ready = asyncio.Event()
        self._paused: set[tuple[str, int]] = set()
        #: Tasks received but not started (all slots busy), oldest first; bounded by max_backlog.
        self._backlog: collections.deque[tuple[ActivityTask, tuple[str, int], int, int]] = collections.deque()
        self._revoked: set[tuple[str, int]] = set()
        self._revoked_lock = threading.Lock()
        self.max_backlog = max(concurrency, 1000) if max_backlog is None else max_backlog
        self.max_backlog_bytes = max_backlog_bytes
        self._backlog_bytes = 0
        self._assignment_changed = False
        self._running = False
        #: Observability counters (tests and the CLI read them).
        self.stats: dict[str, int] = {
            "started": 0, "completed": 0, "failed": 0, "cancelled": 0,
            "heartbeats": 0, "max_in_flight": 0, "duplicates": 0, "abandoned": 0, "timed_out": 0,
            "pauses": 0,
        }
        #: Prometheus metrics in this worker's own registry (``metrics.registry``, _metrics.py).
        self.metrics = WorkerMetrics(self)
        self.tracing = WorkerTracing()  # RunActivity spans (ops/_tracing.py), when configured

    # ------------------------------------------------------------------ lifecycle
    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def run(self, *, handle_signals: bool = False) -> None:
        """Consume and run tasks until :meth:`stop` is called (or the task is cancelled).

        ``handle_signals=True`` (for a process that is just this worker): SIGTERM and SIGINT
        call :meth:`stop`, so in-flight attempts finish and their offsets are committed.
        """
        if self._running:
            raise RuntimeError("this ActivityWorker is already running")
        self._running = True
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._loop, self._loop_thread = loop, threading.get_ident()
        signals: list[int] = []
        if handle_signals:
            import signal

            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self.stop)
                    signals.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / Windows
                    pass
        try:
            await self._start(loop)
            self._ready.set()
            await self._poll_loop(loop)
        finally:
            try:
                await self._shutdown(loop)
            finally:
                for sig in signals:
                    loop.remove_signal_handler(sig)
                self._running = False

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the worker consumes (cancel watcher positioned, consumer subscribed)."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    def stop(self) -> None:
        """Ask :meth:`run` to finish: stop taking tasks, let in-flight ones end (see
        ``graceful_timeout``), report, commit and leave the group."""
        if self._stopping is not None:
            self._stopping.set()

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # librdkafka's lines through logging (aion.kafka), not stderr: a broker outage is a few
        # rate-limited lines in aion activity-worker's log, not thousands.
        base = {**self.settings.confluent_config(), "logger": KAFKA_LOG}
        if self._ensure_topics:
            from ..common.topics import ensure_topics

            await loop.run_in_executor(None, lambda: ensure_topics(self.settings, task_queues=(self.task_queue,)))
        self._producer = AsyncProducer(
            producer_config(base, max_record_bytes=self.settings.max_record_bytes,
                            client_id=f"{self.settings.topic_prefix}.activity-worker")
        )
        self._producer.start()
        self._watcher = CancelWatcher(
            base, self.topic, self.codec.decode_task, self._cancel_prefix(), self._on_cancel,
            prefix=self.settings.topic_prefix,
        )
        await self._watcher.start()
        self._consumer = Consumer(
            consumer_config(
                base,
                group_id=self.group_id,
                client_id=f"{self.settings.topic_prefix}.activity-worker",
                **{"partition.assignment.strategy": "cooperative-sticky",
                   # Tasks are written in the engine's transactions: never run an aborted one.
                   "isolation.level": "read_committed",
                   "session.timeout.ms": int(self.settings.session_timeout * 1000),
                   "heartbeat.interval.ms": int(self.settings.heartbeat_interval * 1000)},
            )
        )
        self._consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)
        log.info("activity worker %s on %s: %d activities, concurrency %d",
                 self.identity, self.topic, len(self.activities), self.concurrency)

    def _cancel_prefix(self) -> bytes:
        """The bytes every encoded CancelActivityTask starts with (its framing), or b"" when the
        codec's framing does not tell cancels apart from tasks."""
        try:
            a = self.codec.encode_task(CancelActivityTask("a", "b", "c", 1))
            b = self.codec.encode_task(CancelActivityTask("xy", "zw", "uv", 2))
            t = self.codec.encode_task(ActivityTask("a", "b", "c", 1, "t", [], "q", "w", 0))
        except Exception:  # pragma: no cover - codec without framing
            return b""
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        prefix = a[:n]
        return b"" if t.startswith(prefix) else prefix

    # ------------------------------------------------------------------ rebalance (io thread)
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assignment_changed = True
        log.info("assigned %s", [p.partition for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Runs inside ``consume()`` on the io thread, while the loop is free: the loop gives
        the revoked partitions' attempts a short grace and abandons the rest (:meth:`_release`),
        then what finished is committed here, before the partitions go."""
        keys = [(p.topic, p.partition) for p in partitions]
        with self._revoked_lock:
            self._revoked.update(keys)
        self._release_from_io(keys, min(self.graceful_timeout, self.revoke_grace))
        positions = self._offsets.to_commit(keys)
        if positions:
            try:
                consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()],
                                asynchronous=False)
            except KafkaException as exc:
                log.warning("commit on revoke failed: %s", exc)
        self._offsets.forget(keys)
        for k in keys:
            self._paused.discard(k)
        self._assignment_changed = True
        log.info("revoked %s", [p.partition for p in partitions])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The partitions are gone already (session expired): another worker may be running
        their tasks, and nothing of them may be committed. Abandon their attempts at once."""
        keys = [(p.topic, p.partition) for p in partitions]
        self._offsets.forget(keys)
        with self._revoked_lock:
            self._revoked.update(keys)
        self._release_from_io(keys, 0.0)
        for k in keys:
            self._paused.discard(k)
        self._assignment_changed = True
        log.warning("lost %s", [p.partition for p in partitions])

    def _release_from_io(self, keys: list[tuple[str, int]], grace: float) -> None:
        """Run :meth:`_release` on the loop and wait for it (bounded: grace + 1 s)."""
        loop = self._loop
        if loop is None or loop.is_closed() or not keys:
            return
        if threading.get_ident() == self._loop_thread:  # a consumer call made on the loop itself
            self._abandon_revoked(set(keys))
            return
        try:
            fut = asyncio.run_coroutine_threadsafe(self._release(set(keys), grace), loop)
        except RuntimeError:  # the loop is closing
            return
        try:
            fut.result(timeout=grace + 1.0)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            log.warning("revoke: attempts of %s not released in time", sorted(keys))
        except Exception:
            log.exception("revoke: releasing the attempts of %s failed", sorted(keys))

    async def _release(self, keys: set[tuple[str, int]], grace: float) -> None:
        """On the loop: drop waiting tasks of the partitions, let their running or reporting
        attempts finish for up to ``grace`` seconds, abandon those still running."""
        self._drop_backlog(keys)
        pending = {a.runner for a in self._active if a.tp in keys and not a.abandoned and a.runner is not None}
        if pending and grace > 0:
            log.info("revoke: waiting up to %.1fs for %d attempt(s) of %s", grace, len(pending), sorted(keys))
            await asyncio.wait(pending, timeout=grace)
        self._abandon_revoked(keys)

    def _abandon_revoked(self, keys: set[tuple[str, int]]) -> None:
        """Abandon the running attempts of the partitions (an attempt already reporting goes on:
        its report is idempotent; only its offset is not committed here any more)."""
        abandoned = [a for a in self._inflight.values() if a.tp in keys and not a.abandoned]
        for a in abandoned:
            self._abandon(a, "PARTITION_REVOKED")
        if abandoned:
            log.info("revoke: abandoned %d attempt(s) of %s: the new owner runs them",
                     len(abandoned), sorted(keys))
            self._drain_backlog()

    def _abandon(self, attempt: _Attempt, reason: str) -> None:
        """Give the attempt up: not reported, not committed. An ``async`` activity is cancelled;
        a sync one is asked to stop and left to end in its thread, its result dropped. Its slot
        is freed now, so a new delivery of the attempt runs afresh."""
        attempt.abandoned = True
        attempt.ctx._heartbeat_cb = None  # a lingering thread's heartbeats are not ours to send
        attempt.ctx.request_cancel(reason)
        if attempt.runner is not None:
            attempt.runner.cancel()
        self._vacate(attempt)
        self.stats["abandoned"] += 1

    def _vacate(self, attempt: _Attempt) -> None:
        """Free the attempt's slot (once: a newer attempt with the same key keeps its own)."""
        key = attempt_key(attempt.task)
        if self._inflight.get(key) is attempt:
            del self._inflight[key]

    # ------------------------------------------------------------------ poll loop
    async def _poll_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        consumer = self._consumer
        assert consumer is not None and self._stopping is not None
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            room = self.concurrency + self.max_backlog - len(self._inflight) - len(self._backlog)
            if self._backlog_bytes >= self.max_backlog_bytes:
                room = 0
            await self._apply_backpressure(loop, room)
            want = min(max(room, 1), 1000)  # paused partitions deliver nothing
            msgs = await loop.run_in_executor(self._io, _consume, consumer, want, 0.1)
            self._drop_revoked()
            for m in msgs:
                self._on_record(m)
            self._drain_backlog()
            if time.monotonic() - last_commit >= self.commit_interval:
                await self._commit(loop)
                last_commit = time.monotonic()

    async def _apply_backpressure(self, loop: asyncio.AbstractEventLoop, room: int) -> None:
        """Pause every assigned partition when running + waiting tasks reach N + backlog; resume
        once the backlog is down to half (hysteresis: each resume costs a fetch round trip, and
        a resumed partition should bring a batch, not one record)."""
        consumer = self._consumer
        assert consumer is not None
        if room <= 0:
            if self._assignment_changed or not self._paused:
                self._assignment_changed = False
                assignment = await loop.run_in_executor(self._io, consumer.assignment)
                todo = [tp for tp in assignment if (tp.topic, tp.partition) not in self._paused]
                if todo:
                    await loop.run_in_executor(self._io, consumer.pause, todo)
                    self._paused.update((tp.topic, tp.partition) for tp in todo)
                    self.stats["pauses"] += 1
        elif (self._paused and len(self._backlog) <= self.max_backlog // 2
              and self._backlog_bytes <= self.max_backlog_bytes // 2):
            tps = [TopicPartition(t, p) for t, p in self._paused]
            self._paused.clear()
            try:
                await loop.run_in_executor(self._io, consumer.resume, tps)
            except KafkaException as exc:  # partitions revoked meanwhile
                log.debug("resume: %s", exc)

    def _on_record(self, msg: Message) -> None:
        tp = (msg.topic(), msg.partition())
        offset = msg.offset()
        value = msg.value()
        try:
            if value is None:
                raise ValueError("empty record (tombstone)")
            task = self.codec.decode_task(value)
        except Exception as exc:
            log.error("skipping undecodable record %s[%d]@%d: %s", tp[0], tp[1], offset, exc)
            self._offsets.received(tp[0], tp[1], offset)
            self._offsets.done(tp[0], tp[1], offset)
            return
        if isinstance(task, CancelActivityTask):
            self._offsets.received(tp[0], tp[1], offset)
            self._on_cancel(task)
            self._offsets.done(tp[0], tp[1], offset)
            return
        key = attempt_key(task)
        if not self._offsets.received(tp[0], tp[1], offset, key):
            # The same attempt is already waiting, running or reporting here (the engine wrote
            # the task twice, or the partition's committed position is behind it): the first
            # delivery reports, and this record's offset is done with the first one's, once its
            # report is acknowledged — never before.
            self.stats["duplicates"] += 1
            return
        self.tracing.received(key, msg)
        self._backlog.append((task, tp, offset, len(value)))
        self._backlog_bytes += len(value)

    def _drain_backlog(self) -> None:
        """Start waiting tasks, in arrival order, while slots are free."""
        if self._stopping is not None and self._stopping.is_set():
            return  # shutting down: waiting tasks stay uncommitted for the next owner
        while self._backlog and len(self._inflight) < self.concurrency:
            task, tp, offset, size = self._backlog.popleft()
            self._backlog_bytes -= size
            key = attempt_key(task)
            if key in self._cancelled_recently:
                self._report_detached(task, tp, offset, ActivityTaskCancelled(task.run_id, task.activity_id, task.attempt), "cancelled")
                continue
            self._start_attempt(task, tp, offset)

    def _drop_revoked(self) -> None:
        """After a poll that revoked partitions (normally :meth:`_release` did this already,
        during the revoke): forget their waiting tasks — their new owner reads them again, they
        were never started nor committed here — and abandon their running attempts."""
        if not self._revoked:
            return
        with self._revoked_lock:
            revoked, self._revoked = self._revoked, set()
        self._drop_backlog(revoked)
        self._abandon_revoked(revoked)

    def _drop_backlog(self, partitions: set[tuple[str, int]]) -> None:
        kept: collections.deque[tuple[ActivityTask, tuple[str, int], int, int]] = collections.deque()
        for item in self._backlog:
            if item[1] in partitions:
                self._backlog_bytes -= item[3]
            else:
                kept.append(item)
        self._backlog = kept

    # ------------------------------------------------------------------ attempts
    def _start_attempt(self, task: ActivityTask, tp: tuple[str, int], offset: int) -> None:
        key = attempt_key(task)
        details: tuple[Any, ...] = ()
        if task.heartbeat_details is not None:
            try:
                decoded = self.converter.from_payload(task.heartbeat_details)
                details = tuple(decoded) if isinstance(decoded, (list, tuple)) else (decoded,)
            except Exception as exc:
                log.warning("heartbeat details of %s undecodable: %s", key, exc)
        info = make_info(
            workflow_id=task.workflow_id, run_id=task.run_id, activity_id=task.activity_id,
            activity_type=task.activity_type, attempt=task.attempt, workflow_type=task.workflow_type,
            task_queue=task.task_queue, scheduled_at_ms=task.scheduled_at_ms,
            start_to_close_ms=task.start_to_close_ms,
            schedule_to_close_deadline_ms=task.schedule_to_close_deadline_ms,
            heartbeat_timeout_ms=task.heartbeat_ms, heartbeat_details=details,
        )
        if task.attempt > 1:
            log.info("retrying %s of workflow %s (activity %s): attempt %d", task.activity_type, task.workflow_id,
                     task.activity_id, task.attempt)
        loop = asyncio.get_running_loop()
        attempt = _Attempt(
            task=task, tp=tp, offset=offset,
            ctx=ActivityContext(info),
            throttle=HeartbeatThrottle(throttle_interval(
                task.heartbeat_ms, default_interval=self.default_heartbeat_throttle,
                max_interval=self.max_heartbeat_throttle)),
        )
        attempt.ctx._heartbeat_cb = self._heartbeat_callback(loop, key)
        self._inflight[key] = attempt
        self.metrics.started(task)
        self.tracing.started(key, attempt)
        self.stats["max_in_flight"] = max(self.stats["max_in_flight"], len(self._inflight))
        attempt.runner = loop.create_task(self._run_attempt(attempt), name=f"aion-activity-{task.activity_type}")
        self._active.add(attempt)
        attempt.runner.add_done_callback(lambda _r: self._active.discard(attempt))

    def _heartbeat_callback(self, loop: asyncio.AbstractEventLoop, key: AttemptKey) -> Any:
        def on_heartbeat(details: tuple[Any, ...]) -> None:
            try:
                loop.call_soon_threadsafe(self._on_heartbeat, key, details)
            except RuntimeError:  # loop closed: the worker is gone
                pass

        return on_heartbeat

    async def _run_attempt(self, attempt: _Attempt) -> None:
        task, ctx = attempt.task, attempt.ctx
        key = attempt_key(task)
        loop = asyncio.get_running_loop()
        body: CommandBody | None
        outcome = ""
        try:
            act = self.activities.get(task.activity_type)
            if act is None:
                body, outcome = ActivityTaskFailed(task.run_id, task.activity_id, task.attempt,
                                                   self._not_registered(task), self.identity), "failed"
            else:
                # An attempt that ends within STARTED_AFTER_S reports its start with its outcome
                # (the engine records both in one step); a longer one reports it on its own.
                attempt.started_handle = loop.call_later(STARTED_AFTER_S, self._send_started, attempt)
                self.stats["started"] += 1
                self._arm_deadline(loop, attempt)
                body, outcome = await self._execute(act, attempt)
        except BaseException as exc:  # a bug of the worker itself: report rather than hang
            if isinstance(exc, asyncio.CancelledError) and attempt.abandoned:
                body, outcome = None, "abandoned"
            else:
                log.exception("worker error running %s", key)
                body, outcome = ActivityTaskFailed(task.run_id, task.activity_id, task.attempt,
                                                   _failure_of(exc), self.identity), "failed"
        finally:
            attempt.throttle.discard()
            for h in (attempt.flush_handle, attempt.deadline_handle, attempt.started_handle):
                if h is not None:
                    h.cancel()
            attempt.started_handle = None
        self.metrics.finished(task, outcome, time.monotonic() - attempt.started_monotonic)
        trace_headers = self.tracing.finished(attempt, outcome)
        if body is None or attempt.abandoned:
            # Abandoned, or timed out locally: nothing to report, nothing to commit.
            self._vacate(attempt)
            self._drain_backlog()
            if outcome == "completing_async" and not attempt.abandoned:
                # activity.raise_complete_async(): the outcome comes later through the task
                # token (client.get_async_activity_handle); the task itself is done here.
                self.stats["completing_async"] = self.stats.get("completing_async", 0) + 1
                self._offsets.done(attempt.tp[0], attempt.tp[1], attempt.offset)
            if outcome == "timed_out" and not attempt.abandoned:
                # The engine times the attempt out and schedules the next one itself.
                self.stats["timed_out"] += 1
                self._offsets.done(attempt.tp[0], attempt.tp[1], attempt.offset)
            return
        body = self._bounded(task, body)
        command_id = outcome_command_id(key, outcome)
        try:
            fut = self._send(task.workflow_id, body, command_id=command_id, headers=trace_headers)
        finally:
            # The slot is free as soon as the outcome is queued; the offset waits for the ack.
            self._vacate(attempt)
            self._drain_backlog()
        self.stats[outcome] += 1
        if isinstance(body, ActivityTaskFailed):
            f = body.failure
            log.info("attempt %d of %s of workflow %s (activity %s) failed: %s: %s%s", task.attempt,
                     task.activity_type, task.workflow_id, task.activity_id, f.type, f.message,
                     " (non-retryable)" if f.non_retryable else "")
        for retry in range(5):
            try:
                await fut
                self._offsets.done(attempt.tp[0], attempt.tp[1], attempt.offset)
                return
            except Exception as exc:
                # The producer already retried internally; try again a few times (same command
                # id: the engine records it once), then leave the offset uncommitted.
                log.warning("reporting %s of %s failed (%s), retry %d", outcome, key, exc, retry + 1)
                await asyncio.sleep(0.5 * 2 ** retry)
                fut = self._send(task.workflow_id, body, command_id=command_id)
        log.error("could not report %s of %s: the task stays uncommitted and is re-delivered "
                  "after a restart or rebalance", outcome, key)

    async def _execute(self, act: RegisteredActivity, attempt: _Attempt) -> tuple[CommandBody | None, str]:
        task, ctx = attempt.task, attempt.ctx
        loop = asyncio.get_running_loop()
        try:
            args = decode_args(self.converter, task.input, act.arg_types)
        except Exception as exc:
            failure = Failure(type=type(exc).__name__,
                              message=f"cannot decode the input of activity {task.activity_type!r} "
                                      f"(workflow {task.workflow_id!r}, activity {task.activity_id}): {exc}",
                              non_retryable=True, stack=traceback.format_exc())
            return ActivityTaskFailed(task.run_id, task.activity_id, task.attempt, failure, self.identity), "failed"
        try:
            if act.is_async:
                async def run_in_context() -> Any:
                    current.set(ctx)
                    return await act.fn(*args)

                atask = loop.create_task(run_in_context(), context=contextvars.copy_context())
                attempt.activity_task = atask
                try:
                    result = await asyncio.shield(atask)
                except asyncio.CancelledError:
                    # Our runner itself is being cancelled (abandon): take the activity down too.
                    if not atask.done():
                        atask.cancel()
                    raise
            else:
                ctx.heartbeat_raises_cancel = True

                def run_in_thread() -> Any:
                    token = current.set(ctx)
                    try:
                        return act.fn(*args)
                    finally:
                        current.reset(token)

                result = await loop.run_in_executor(self._pool, run_in_thread)
        except CompleteAsyncError:
            # Reported started now, so that the engine arms the attempt's start-to-close and
            # heartbeat timeouts; its outcome comes from whoever holds the task token.
            self._send_started(attempt)
            return None, "completing_async"
        except asyncio.CancelledError:
            if attempt.abandoned:
                raise
            if ctx.cancel_reason == "TIMED_OUT":
                return None, "timed_out"
            return self._cancelled_body(attempt), "cancelled"
        except BaseException as exc:
            if ctx.is_cancelled():
                if attempt.abandoned:
                    raise asyncio.CancelledError() from exc
                if ctx.cancel_reason == "TIMED_OUT":
                    return None, "timed_out"
                if isinstance(exc, asyncio.CancelledError) or ctx.cancel_reason == "CANCEL_REQUESTED":
                    return self._cancelled_body(attempt), "cancelled"
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return ActivityTaskFailed(task.run_id, task.activity_id, task.attempt,
                                      exception_to_failure(exc, self.converter), self.identity), "failed"
        try:
            payload = self.converter.to_payload(result)
        except Exception as exc:
            failure = Failure(type=type(exc).__name__,
                              message=f"cannot encode the result of activity {task.activity_type!r} "
                                      f"(workflow {task.workflow_id!r}, activity {task.activity_id}): {exc}",
                              non_retryable=True, stack=traceback.format_exc())
            return ActivityTaskFailed(task.run_id, task.activity_id, task.attempt, failure, self.identity), "failed"
        return ActivityTaskCompleted(task.run_id, task.activity_id, task.attempt, payload, self.identity), "completed"

    def _cancelled_body(self, attempt: _Attempt) -> ActivityTaskCancelled:
        task = attempt.task
        details = None
        if attempt.ctx.last_heartbeat_details is not None:
            try:
                details = self.converter.to_payload(list(attempt.ctx.last_heartbeat_details))
            except Exception:
                details = None
        return ActivityTaskCancelled(task.run_id, task.activity_id, task.attempt, details)

    def _bounded(self, task: ActivityTask, body: CommandBody) -> CommandBody:
        """Replace a result too large for the engine by a non-retryable failure saying so."""
        if isinstance(body, ActivityTaskCompleted) and len(body.result.data) > self.settings.max_payload_bytes:
            return ActivityTaskFailed(task.run_id, task.activity_id, task.attempt, Failure(
                type="PayloadTooLargeError",
                message=(f"the result of activity {task.activity_type!r} (workflow {task.workflow_id!r}, "
                         f"activity {task.activity_id}) is {len(body.result.data)} bytes, over the limit "
                         f"of {self.settings.max_payload_bytes} (max_payload_bytes): store large data "
                         f"elsewhere and return a reference"),
                non_retryable=True), self.identity)
        return body

    def _not_registered(self, task: ActivityTask) -> Failure:
        names = ", ".join(sorted(self.activities)) or "(none)"
        return Failure(
            type="ActivityNotRegisteredError",
            message=(f"activity type {task.activity_type!r} (workflow {task.workflow_id!r}, activity "
                     f"{task.activity_id}) is not registered on worker {self.identity} of task queue "
                     f"{self.task_queue!r}; registered: {names}. Register it on the workers of this "
                     f"queue or schedule it on another task queue"),
            non_retryable=True,
        )

    def _arm_deadline(self, loop: asyncio.AbstractEventLoop, attempt: _Attempt) -> None:
        deadline = attempt.ctx.info.deadline_ms
        if deadline is None:
            return
        delay = max(0.0, (deadline - now_ms()) / 1000.0) + 0.05

        def expire() -> None:
            if attempt.ctx.request_cancel("TIMED_OUT"):
                log.info("attempt %s passed its deadline: cancelled locally", attempt_key(attempt.task))
                if attempt.activity_task is not None and not attempt.activity_task.done():
                    attempt.activity_task.cancel()

        attempt.deadline_handle = loop.call_later(delay, expire)

    def _report_detached(self, task: ActivityTask, tp: tuple[str, int], offset: int, body: CommandBody, outcome: str) -> None:
        """Report an outcome for a task that never ran, then mark its record done."""
        fut = self._send(task.workflow_id, body, command_id=outcome_command_id(attempt_key(task), outcome))

        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is None:
                self._offsets.done(tp[0], tp[1], offset)

        fut.add_done_callback(done)

    # ------------------------------------------------------------------ cancel + heartbeat
    def _on_cancel(self, cancel: CancelActivityTask) -> None:
        key = attempt_key(cancel)
        attempt = self._inflight.get(key)
        if attempt is None:
            # Not running here (finished, or not delivered yet): remember, in case it comes.
            self._cancelled_recently[key] = None
            while len(self._cancelled_recently) > 10_000:
                self._cancelled_recently.popitem(last=False)
            return
        if attempt.ctx.request_cancel("CANCEL_REQUESTED"):
            log.info("cancel requested for %s", key)
            if attempt.activity_task is not None and not attempt.activity_task.done():
                attempt.activity_task.cancel()

    def _send_started(self, attempt: _Attempt) -> None:
        """The attempt's start, reported on its own: it runs longer than ``STARTED_AFTER_S``
        (or heartbeats), so the engine arms its start-to-close and heartbeat timeouts now."""
        handle, attempt.started_handle = attempt.started_handle, None
        if handle is None:
            return
        handle.cancel()
        task = attempt.task
        self._send(task.workflow_id, ActivityTaskStarted(task.run_id, task.activity_id, task.attempt, self.identity),
                   command_id=outcome_command_id(attempt_key(task), "started"))

    def _on_heartbeat(self, key: AttemptKey, details: tuple[Any, ...]) -> None:
        attempt = self._inflight.get(key)
        if attempt is None:
            return
        self._send_started(attempt)  # a heartbeat never arrives before its attempt's start
        send_now, flush_at = attempt.throttle.offer(time.monotonic(), details)
        if send_now:
            self._send_heartbeat(attempt, details)
        elif flush_at is not None:
            loop = asyncio.get_running_loop()
            attempt.flush_handle = loop.call_at(
                loop.time() + max(0.0, flush_at - time.monotonic()), self._flush_heartbeat, key)

    def _flush_heartbeat(self, key: AttemptKey) -> None:
        attempt = self._inflight.get(key)
        if attempt is None:
            return
        attempt.flush_handle = None
        send, details = attempt.throttle.flush(time.monotonic())
        if send:
            self._send_heartbeat(attempt, details)

    def _send_heartbeat(self, attempt: _Attempt, details: tuple[Any, ...]) -> None:
        task = attempt.task
        payload: Payload | None = None
        if details:
            try:
                payload = self.converter.to_payload(list(details))
            except Exception as exc:
                log.warning("heartbeat details of %s not encodable, sent without: %s", attempt_key(task), exc)
        self._send(task.workflow_id, ActivityHeartbeat(task.run_id, task.activity_id, task.attempt, payload))
        self.stats["heartbeats"] += 1

    # ------------------------------------------------------------------ output
    def _send(self, workflow_id: str, body: CommandBody, *, command_id: str | None = None,
              headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future[Any]:
        producer = self._producer
        assert producer is not None
        cmd = Command(command_id=command_id or str(uuid.uuid4()), workflow_id=workflow_id,
                      sent_at_ms=now_ms(), body=body)
        value = self.codec.encode_command(cmd)
        try:
            return producer.produce_nowait(self.names.commands, value, workflow_id.encode("utf-8"), headers=headers)
        except BufferError:
            # The local queue is full: hand the record to a task that waits for room.
            loop = asyncio.get_running_loop()
            out: asyncio.Future[Any] = loop.create_future()

            async def later() -> None:
                try:
                    out.set_result(await (await producer.produce(self.names.commands, value, workflow_id.encode("utf-8"),
                                                                 headers=headers)))
                except Exception as exc:
                    out.set_exception(exc)

            loop.create_task(later())
            return out

    async def _commit(self, loop: asyncio.AbstractEventLoop, *, sync: bool = False) -> None:
        consumer = self._consumer
        positions = self._offsets.to_commit()
        if consumer is None or not positions:
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            await loop.run_in_executor(self._io, lambda: consumer.commit(offsets=tps, asynchronous=not sync))
            self._offsets.committed(positions)
        except KafkaException as exc:
            log.warning("offset commit failed (will retry): %s", exc)

    # ------------------------------------------------------------------ shutdown
    async def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        consumer = self._consumer
        if consumer is not None:
            try:
                assignment = await loop.run_in_executor(self._io, consumer.assignment)
                if assignment:
                    await loop.run_in_executor(self._io, consumer.pause, assignment)
            except KafkaException:
                pass
        # Running attempts and those whose report waits for its ack.
        runners = [a.runner for a in self._active if a.runner is not None]
        if runners:
            log.info("waiting up to %.1fs for %d in-flight attempt(s)", self.graceful_timeout, len(runners))
            _done, pending = await asyncio.wait(runners, timeout=self.graceful_timeout)
            for a in list(self._inflight.values()):
                if a.runner in pending and not a.abandoned:
                    self._abandon(a, "WORKER_SHUTDOWN")
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._producer is not None:
            await self._producer.close()
        if consumer is not None:
            await self._commit(loop, sync=True)
            await loop.run_in_executor(self._io, consumer.close)
            self._consumer = None
        if self._watcher is not None:
            await self._watcher.close()
            self._watcher = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._io.shutdown(wait=False)

    async def __aenter__(self) -> "ActivityWorker":
        """Run the worker in the background (``async with ActivityWorker(...) as w:``)."""
        self._bg = asyncio.get_running_loop().create_task(self.run(), name="aion-activity-worker")
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait({ready, self._bg}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await self._bg  # raises why run() ended before it was ready
            raise RuntimeError("the activity worker stopped before it was ready")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.stop()
        await self._bg


def _codec_for(settings: Settings) -> Codec:
    url = getattr(settings, "schema_registry_url", None)
    return Codec(registry_url=url) if url else Codec()


def _consume(consumer: Consumer, n: int, timeout: float) -> list[Message]:
    return fatal_or_log(consume_available(consumer, n, timeout), "activity task consumer")


def _failure_of(exc: BaseException) -> Failure:
    return Failure(type=type(exc).__name__, message=str(exc) or repr(exc), stack="".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__)))
