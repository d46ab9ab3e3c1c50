"""The in-process, time-skipping workflow environment.

It plays every part the Kafka deployment plays, in memory and on one event loop, around the very
same runtime (:class:`aion.runtime.WorkflowExecution`) the engine drives:

- the *log*: ``workflow id -> list[Event]``, appended with each step's events (gapless seqs are
  checked);
- the *engine*: one command at a time, in arrival order, through ``WorkflowExecution.handle``
  (queries through ``WorkflowExecution.query``), then the step's effects — after its events are
  in the log (record before effect);
- the *timer wheel*: a heap of ``ScheduleTimer`` effects; due timers come back as ``FireTimer``
  commands; ``DropTimer`` disarms;
- the *activity worker*: ``DispatchActivity`` runs the function in-process and reports
  ``ActivityTaskStarted`` and its outcome as commands (see ``_activities.py``);
- the *replies topic*: ``SendReply`` effects resolve the waiting client calls by command id.

Time skipping: the clock (``_clock.py``) runs with wall time, and jumps straight to the next due
timer whenever every workflow is waiting — no command queued, no activity running — *and*
somebody waits for time to pass: a ``handle.result()`` / ``execute_workflow`` call or
``env.sleep``. Outside of those the clock is not skipped, so a test can start a workflow, query
it and signal it before its deadline passes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Iterable, Mapping, Sequence, assert_never

from ..converter import DataConverter
from ..engine._schedules import ScheduleWorkflow
from ..exceptions import AionError
from ..model import (
    RUN_CLOSING_EVENTS,
    ActivityTimedOut,
    Command,
    CommandBody,
    Event,
    Failure,
    FireTimer,
    QueryWorkflow,
    Reply,
    WorkflowContinuedAsNew,
    WorkflowTaskFailed,
)
from ..runtime import Registry, ReplayResult, WorkflowExecution, replay_history
from ..runtime import effects as fx
from ..workflow._types import FailurePolicy
from ._activities import ActivityRunner, attempt_key
from ._clock import SkippingClock

log = logging.getLogger(__name__)

#: ``reply_to`` of the environment's own commands (the engine answers there).
REPLY_TO = "aion-testing.replies:0"


class WorkflowTaskFailedError(AionError):
    """A workflow's step failed (a bug in workflow code, a divergence, a deadlock): in a real
    deployment the workflow is *held* and retried with backoff until a fixed deploy resumes it.

    The test environment raises this from ``handle.result()`` instead (``fail_fast=True``), so a
    broken workflow fails the test at once rather than hanging it. ``failure`` is the recorded
    failure chain; ``cause`` the rebuilt exception.
    """

    def __init__(self, workflow_id: str, run_id: str, failure: Failure) -> None:
        from ..exceptions import failure_to_exception

        super().__init__(
            f"workflow {workflow_id!r} (run {run_id}) is held after a workflow task failure: "
            f"{failure.type}: {failure.message}. Fix the workflow code (or pass fail_fast=False "
            f"to WorkflowEnvironment.start_time_skipping to see the retries)"
        )
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.failure = failure
        self.__cause__ = failure_to_exception(failure)

    @property
    def cause(self) -> BaseException | None:
        return self.__cause__


class EngineBugError(AionError):
    """The runtime raised while handling a command (the Kafka engine would dead-letter it).

    Raised to the client call waiting on that command, and again when the environment closes,
    so that a runtime bug never passes a test silently.
    """


@dataclass(order=True)
class _TimerEntry:
    fire_at_ms: int
    order: int
    workflow_id: str = ""
    run_id: str = ""
    timer_id: str = ""


#: Pushed to result watchers when a run of their workflow closed (see ``Mailbox``).
RUN_CLOSED = Reply(command_id="", workflow_id="", kind="RUN_CLOSED")


class Mailbox:
    """Replies to one command (or several: a GetResult re-sent), plus pushed errors and
    :data:`RUN_CLOSED` nudges."""

    def __init__(self) -> None:
        self._q: asyncio.Queue[Reply | BaseException] = asyncio.Queue()

    def put(self, item: Reply | BaseException) -> None:
        self._q.put_nowait(item)

    async def get(self) -> Reply:
        item = await self._q.get()
        if isinstance(item, BaseException):
            raise item
        return item


class WorkflowEnvironment:
    """Runs workflows and activities in-process with a skipping clock.

    ```python
    async with WorkflowEnvironment.start_time_skipping(workflows=[Order], activities=[charge]) as env:
        result = await env.client.execute_workflow(Order.run, order, id="order-1")
    ```

    - ``env.client``: the same API as :class:`aion.client.Client` (start_workflow,
      execute_workflow, get_workflow_handle, signal_with_start; handles with result, signal,
      query, cancel, terminate, describe, history, events).
    - ``env.now()`` / ``env.sleep(duration)``: read / advance the clock (due timers fire on the way).
    - ``env.time_skipping``: set False to let ``result()`` wait in wall time.
    - ``env.log``: every workflow's history; ``env.history(workflow_id)`` one of them.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        start_time: datetime | None = None,
        time_skipping: bool = True,
        resident: bool = True,
        fail_fast: bool = True,
    ) -> None:
        self.registry = registry
        self.converter: DataConverter = registry.converter
        start_ms = None if start_time is None else int(_aware(start_time).timestamp() * 1000)
        self.clock = SkippingClock(start_ms)
        #: Whether waiting for a result may skip time (``env.sleep`` always advances the clock).
        self.time_skipping = time_skipping
        #: False: every command is handled by an execution rebuilt from the log (replay on every
        #: step, as after an engine restart), which also checks the workflow code's determinism.
        self.resident = resident
        #: True: a recorded WorkflowTaskFailed fails the waiting ``result()`` calls at once.
        self.fail_fast = fail_fast

        self._log: dict[str, list[Event]] = {}
        self._executions: dict[str, WorkflowExecution] = {}
        self._queue: deque[Command] = deque()
        self._timers: dict[tuple[str, str, str], int] = {}
        #: (workflow, activity) -> (at, heartbeat): kept heartbeats, as the engine's progress table
        self._heartbeats: dict[tuple[str, str], tuple[int, Any]] = {}
        self._timer_heap: list[_TimerEntry] = []
        self._timer_order = itertools.count()
        self._sleepers: list[tuple[int, asyncio.Future[None]]] = []
        self._mailboxes: dict[str, Mailbox] = {}
        self._result_watchers: dict[str, set[Mailbox]] = {}
        self._skip_holders = 0
        self._bugs: list[EngineBugError] = []
        self._reported_bugs: set[int] = set()
        self._changed: asyncio.Future[None] | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._driver: asyncio.Task[None] | None = None
        self._runner: ActivityRunner | None = None
        self._closing = False
        #: Counters tests may read.
        self.stats: dict[str, int] = {"commands": 0, "events": 0, "queries": 0, "skips": 0,
                                      "timers_fired": 0, "replays": 0}
        from ._client import TestClient

        self.client = TestClient(self)

    # ------------------------------------------------------------------ construction
    @classmethod
    def start_time_skipping(
        cls,
        workflows: Iterable[Any] = (),
        activities: Iterable[Any] = (),
        *,
        start_time: datetime | None = None,
        data_converter: DataConverter | None = None,
        failure_policy: FailurePolicy | None = None,
        continue_as_new_suggested_after: int | None = None,
        resident: bool = True,
        fail_fast: bool = True,
    ) -> "WorkflowEnvironment":
        """An environment whose clock skips to the next timer while a result is awaited.

        Use as ``async with WorkflowEnvironment.start_time_skipping(...) as env:``.
        ``start_time`` (default: now) sets the clock. ``resident=False`` rebuilds every
        workflow from its history for each command (replay on every step).
        """
        workflows = list(workflows)
        if ScheduleWorkflow not in workflows:
            workflows.append(ScheduleWorkflow)  # env.client.create_schedule, as an engine worker has it
        registry = Registry(
            workflows=workflows,
            activities=list(activities),
            data_converter=data_converter,
            failure_policy=failure_policy,
            continue_as_new_suggested_after=continue_as_new_suggested_after,
        )
        return cls(registry, start_time=start_time, time_skipping=True, resident=resident,
                   fail_fast=fail_fast)

    async def start(self) -> "WorkflowEnvironment":
        if self._driver is not None:
            return self
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._changed = loop.create_future()
        self._runner = ActivityRunner(self.registry, self.converter, self._report, self.clock.now_ms)
        self._driver = loop.create_task(self._drive(), name="aion-testing-driver")
        return self

    async def shutdown(self) -> None:
        """Stop the driver and abandon running activities; raise the first unreported engine bug."""
        if self._driver is None or self._closing:
            return
        self._closing = True
        self.clock.resume()
        self._kick()
        self._driver.cancel()
        try:
            await self._driver
        except asyncio.CancelledError:
            pass
        if self._runner is not None:
            await self._runner.close()
        closed = EngineBugError("the test environment was shut down")
        for box in self._mailboxes.values():
            box.put(closed)
        for _at, fut in self._sleepers:
            if not fut.done():
                fut.set_exception(closed)
        unreported = [b for b in self._bugs if id(b) not in self._reported_bugs]
        if unreported:
            raise unreported[0]

    async def __aenter__(self) -> "WorkflowEnvironment":
        return await self.start()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            await self.shutdown()
        except EngineBugError:
            if exc_type is None:
                raise
            log.exception("engine bug while the test failed")

    # ------------------------------------------------------------------ clock
    def now(self) -> datetime:
        """The environment's clock (UTC)."""
        return self.clock.now()

    def now_ms(self) -> int:
        return self.clock.now_ms()

    async def sleep(self, duration: timedelta | float) -> None:
        """Advance the clock by ``duration`` (skipping, not waiting), firing due timers on the
        way and letting the workflows react to each before going further."""
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
        target = self.clock.now_ms() + int(round(seconds * 1000))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((target, fut))
        self._kick()
        await fut

    async def wait_idle(self) -> None:
        """Wait until every workflow waits (no command queued, no activity running), without
        skipping any time."""
        assert self._idle is not None, "the environment is not started"
        while True:
            await asyncio.sleep(0)
            self._kick()
            await self._idle.wait()
            await asyncio.sleep(0)
            if self._idle.is_set() and not self._queue:
                return

    # ------------------------------------------------------------------ the log
    @property
    def log(self) -> Mapping[str, list[Event]]:
        """Every workflow's history (do not modify)."""
        return self._log

    def history(self, workflow_id: str) -> list[Event]:
        """A copy of one workflow's history (every run), in seq order."""
        return list(self._log.get(workflow_id, ()))

    def execution(self, workflow_id: str) -> WorkflowExecution:
        """The workflow's execution as the environment would handle its next command."""
        return self._execution(workflow_id)

    def replay(self, workflow_id: str) -> ReplayResult:
        """Replay ``workflow_id``'s recorded history against the registered code (the check
        ``aion replay`` runs): ``result.ok`` is False with the first divergence when the code
        no longer issues the recorded commands."""
        return replay_history(self.registry, self.history(workflow_id))

    @property
    def running_activities(self) -> int:
        return 0 if self._runner is None else len(self._runner.running)

    async def wait_for_events(self, workflow_id: str, after_seq: int) -> None:
        """Wait until ``workflow_id`` has an event with seq > ``after_seq``."""
        while len(self._log.get(workflow_id, ())) <= after_seq:
            assert self._changed is not None, "the environment is not started"
            await asyncio.shield(self._changed)

    # ------------------------------------------------------------------ used by the client
    def new_command(self, workflow_id: str, body: CommandBody, *, reply: bool = True) -> Command:
        return Command(
            command_id=str(uuid.uuid4()),
            workflow_id=workflow_id,
            sent_at_ms=self.clock.now_ms(),
            body=body,
            reply_to=REPLY_TO if reply else None,
        )

    def send(self, cmd: Command, mailbox: Mailbox | None = None) -> None:
        """Queue ``cmd`` for the engine; its replies go to ``mailbox``."""
        if self._driver is None or self._closing:
            raise RuntimeError(
                "the test environment is not running: use `async with "
                "WorkflowEnvironment.start_time_skipping(...) as env:`"
            )
        if mailbox is not None:
            self._mailboxes[cmd.command_id] = mailbox
        self._queue.append(cmd)
        self._kick()

    def settle_async_activity(self, workflow_id: str, run_id: str, activity_id: str, attempt: int) -> None:
        """An attempt that completes asynchronously got its outcome (``env.client``'s async
        activity handle): it no longer holds time still."""
        if self._runner is not None:
            self._runner.settle_async((workflow_id, run_id, activity_id, attempt))

    def forget(self, command_id: str) -> None:
        self._mailboxes.pop(command_id, None)

    def watch_result(self, workflow_id: str, mailbox: Mailbox) -> None:
        """While registered, ``mailbox`` gets the environment's errors about ``workflow_id``
        (a held workflow with ``fail_fast``, an engine bug)."""
        self._result_watchers.setdefault(workflow_id, set()).add(mailbox)

    def unwatch_result(self, workflow_id: str, mailbox: Mailbox) -> None:
        boxes = self._result_watchers.get(workflow_id)
        if boxes is not None:
            boxes.discard(mailbox)
            if not boxes:
                del self._result_watchers[workflow_id]

    def hold_skipping(self) -> "_SkipHold":
        """``with env.hold_skipping():`` — time may skip while the block waits."""
        return _SkipHold(self)

    # ------------------------------------------------------------------ the driver
    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _drive(self) -> None:
        try:
            await self._drive_loop()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug of the environment itself: fail every waiter
            log.exception("the test environment's driver failed")
            bug = EngineBugError(f"the test environment's driver failed: {type(exc).__name__}: {exc}")
            bug.__cause__ = exc
            self._bugs.append(bug)
            self._reported_bugs.add(id(bug))
            for box in list(self._mailboxes.values()):
                box.put(bug)
            for boxes in list(self._result_watchers.values()):
                for box in boxes:
                    box.put(bug)
            raise

    async def _drive_loop(self) -> None:
        assert self._wake is not None and self._idle is not None
        processed = 0
        self.clock.pause()
        while not self._closing:
            self._wake.clear()
            if self._queue:
                self._idle.clear()
                self._process(self._queue.popleft())
                processed += 1
                if processed % 16 == 0:
                    await asyncio.sleep(0)  # let activities and clients run
                continue
            if self._fire_due_timers():
                continue
            self._release_sleepers()
            idle = self._runner is None or not self._runner.running
            if idle:
                self._idle.set()
                target = self._skip_target()
                if target is not None:
                    if self.clock.skip_to(target):
                        self.stats["skips"] += 1
                    continue
            else:
                self._idle.clear()
            # Nothing to do now: wait for a command, or for the next deadline in wall time.
            # The clock runs only while the driver waits (see SkippingClock).
            deadline = self._next_deadline()
            timeout = None if deadline is None else max(self.clock.wall_seconds_until(deadline), 0.001)
            self.clock.resume()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            finally:
                self.clock.pause()
            processed = 0

    def _next_timer(self) -> int | None:
        heap = self._timer_heap
        while heap:
            e = heap[0]
            if self._timers.get((e.workflow_id, e.run_id, e.timer_id)) == e.fire_at_ms:
                return e.fire_at_ms
            heapq.heappop(heap)  # disarmed or re-armed: stale entry
        return None

    def _next_deadline(self) -> int | None:
        candidates = [t for t in (self._next_timer(),) if t is not None]
        candidates += [at for at, fut in self._sleepers if not fut.done()]
        return min(candidates) if candidates else None

    def _skip_target(self) -> int | None:
        sleeping = [at for at, fut in self._sleepers if not fut.done()]
        if not sleeping and not (self.time_skipping and self._skip_holders > 0):
            return None
        candidates = list(sleeping)
        nxt = self._next_timer()
        if nxt is not None:
            candidates.append(nxt)
        return min(candidates) if candidates else None

    def _fire_due_timers(self) -> bool:
        now = self.clock.now_ms()
        fired = False
        while True:
            nxt = self._next_timer()
            if nxt is None or nxt > now:
                return fired
            e = heapq.heappop(self._timer_heap)
            del self._timers[(e.workflow_id, e.run_id, e.timer_id)]
            self.stats["timers_fired"] += 1
            self._queue.append(self.new_command(
                e.workflow_id, FireTimer(e.run_id, e.timer_id, e.fire_at_ms), reply=False))
            fired = True

    def _release_sleepers(self) -> None:
        now = self.clock.now_ms()
        keep = []
        for at, fut in self._sleepers:
            if fut.done():
                continue
            if at <= now:
                fut.set_result(None)
            else:
                keep.append((at, fut))
        self._sleepers = keep

    # ------------------------------------------------------------------ one command
    def _execution(self, workflow_id: str) -> WorkflowExecution:
        if self.resident:
            ex = self._executions.get(workflow_id)
            if ex is not None:
                return ex
        history = self._log.get(workflow_id)
        if history:
            self.stats["replays"] += 1
            ex = WorkflowExecution.from_history(self.registry, workflow_id, list(history))
            # heartbeats are kept beside the history, as the engine does
            ex.restore_heartbeats(lambda aid: self._heartbeats.get((workflow_id, aid)))
        else:
            ex = WorkflowExecution.new(self.registry, workflow_id)
        if self.resident and history:
            self._executions[workflow_id] = ex
        return ex

    def _process(self, cmd: Command) -> None:
        self.stats["commands"] += 1
        wid = cmd.workflow_id
        try:
            ex = self._execution(wid)
            if isinstance(cmd.body, QueryWorkflow):
                self.stats["queries"] += 1
                self._deliver(ex.query(cmd))
                return
            step = ex.handle(cmd, self.clock.now_ms())
        except Exception as exc:
            self._executions.pop(wid, None)
            self._engine_bug(cmd, exc)
            return
        if step.events:
            self._append(wid, step.events, cmd)
            if self.resident:
                self._executions[wid] = ex
        for eff in step.effects:
            try:
                self._perform(eff)
            except Exception as exc:
                self._engine_bug(cmd, exc)

    def _append(self, wid: str, events: Sequence[Event], cmd: Command) -> None:
        history = self._log.setdefault(wid, [])
        for ev in events:
            if ev.seq != len(history) + 1 or ev.workflow_id != wid:
                self._engine_bug(cmd, AssertionError(
                    f"the runtime produced event seq {ev.seq} ({ev.type}) for workflow "
                    f"{ev.workflow_id!r} but the history of {wid!r} has {len(history)} events: "
                    f"histories must be gapless"))
            history.append(ev)
            self.stats["events"] += 1
            self._observe(ev)
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
            self._changed = asyncio.get_running_loop().create_future()

    def _observe(self, ev: Event) -> None:
        """React to what was recorded like a worker and the engine's supervision would."""
        body = ev.body
        runner = self._runner
        if isinstance(body, ActivityTimedOut) and runner is not None:
            runner.abandon((ev.workflow_id, ev.run_id, body.activity_id, body.attempt), "TIMED_OUT")
        elif isinstance(body, RUN_CLOSING_EVENTS):
            # A GetResult waiter lives in the execution's memory, like in the engine: with
            # ``resident=False`` (or after an eviction) it is gone, so the waiting client asks
            # again — the Kafka client re-sends GetResult periodically for the same reason.
            # (A continue-as-new keeps a resident execution's waiters for the next run.)
            if not isinstance(body, WorkflowContinuedAsNew):
                for box in self._result_watchers.get(ev.workflow_id, ()):
                    box.put(RUN_CLOSED)
            if runner is not None:
                runner.abandon_run(ev.workflow_id, ev.run_id)
            # Timers are per run: the closed run's are dead (the runtime ignores their fires).
            for key in [k for k in self._timers if k[0] == ev.workflow_id and k[1] == ev.run_id]:
                del self._timers[key]
        elif isinstance(body, WorkflowTaskFailed) and self.fail_fast:
            err = WorkflowTaskFailedError(ev.workflow_id, ev.run_id, body.failure)
            log.error("%s", err)
            for box in self._result_watchers.get(ev.workflow_id, ()):
                box.put(err)

    def _perform(self, eff: fx.Effect) -> None:
        if isinstance(eff, fx.DispatchActivity):
            assert self._runner is not None
            self._runner.start(eff.task)
        elif isinstance(eff, fx.DispatchActivityCancel):
            if self._runner is not None:
                self._runner.cancel(attempt_key(eff.task))
        elif isinstance(eff, fx.ScheduleTimer):
            self._timers[(eff.workflow_id, eff.run_id, eff.timer_id)] = eff.fire_at_ms
            heapq.heappush(self._timer_heap, _TimerEntry(
                eff.fire_at_ms, next(self._timer_order), eff.workflow_id, eff.run_id, eff.timer_id))
        elif isinstance(eff, fx.DropTimer):
            self._timers.pop((eff.workflow_id, eff.run_id, eff.timer_id), None)
        elif isinstance(eff, fx.KeepHeartbeat):
            self._heartbeats[(eff.workflow_id, eff.heartbeat.activity_id)] = (eff.at_ms, eff.heartbeat)
        elif isinstance(eff, fx.DropHeartbeat):
            self._heartbeats.pop((eff.workflow_id, eff.activity_id), None)
        elif isinstance(eff, fx.SendCommand):
            self._queue.append(eff.command)
        elif isinstance(eff, fx.SendReply):
            if eff.reply_to == REPLY_TO:
                self._deliver(eff.reply)
        else:  # a new kind of effect must be handled here (the type checker says where)
            assert_never(eff)

    def _deliver(self, reply: Reply) -> None:
        box = self._mailboxes.get(reply.command_id)
        if box is not None:
            box.put(reply)

    def _report(self, workflow_id: str, body: CommandBody) -> None:
        """An activity attempt's news (started, heartbeat, outcome) as a command."""
        if self._closing:
            return
        self._queue.append(self.new_command(workflow_id, body, reply=False))
        self._kick()

    def _engine_bug(self, cmd: Command, exc: BaseException) -> None:
        log.error("the runtime failed on %s for workflow %r", cmd.type, cmd.workflow_id, exc_info=exc)
        bug = EngineBugError(
            f"the runtime raised {type(exc).__name__} while handling {cmd.type} for workflow "
            f"{cmd.workflow_id!r}: {exc} (the Kafka engine would dead-letter this command)"
        )
        bug.__cause__ = exc
        self._bugs.append(bug)
        targets = set(self._result_watchers.get(cmd.workflow_id, ()))
        box = self._mailboxes.get(cmd.command_id)
        if box is not None:
            targets.add(box)
        if targets:
            self._reported_bugs.add(id(bug))
        for b in targets:
            b.put(bug)

    # ------------------------------------------------------------------ events stream
    async def follow(self, workflow_id: str, from_seq: int = 1) -> AsyncIterator[Event]:
        """Yield ``workflow_id``'s events from ``from_seq`` on as they are recorded (forever)."""
        next_seq = max(1, from_seq)
        while True:
            history = self._log.get(workflow_id, [])
            while next_seq <= len(history):
                yield history[next_seq - 1]
                next_seq += 1
            assert self._changed is not None, "the environment is not started"
            await asyncio.shield(self._changed)


class _SkipHold:
    def __init__(self, env: WorkflowEnvironment) -> None:
        self._env = env

    def __enter__(self) -> None:
        self._env._skip_holders += 1
        self._env._kick()

    def __exit__(self, *exc: Any) -> None:
        self._env._skip_holders -= 1


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)
