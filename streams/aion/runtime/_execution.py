"""WorkflowExecution: one workflow id's history, engine state machine and resident code.

Step semantics
--------------
``handle(command, now_ms)`` turns one command into new events and effects:

1. De-duplication: a command whose ``command_id`` already produced events produces none (a
   repeated start/signal/cancel is answered ``ACCEPTED`` again). Stale inputs — an activity
   result for another attempt, a fire of a timer that is not live, anything for a closed run
   — produce nothing. A client command (start, signal-with-start, signal, cancel, terminate)
   whose id already produced events but whose body differs from what that id recorded (another
   workflow type, input or task queue than its ``WorkflowStarted``, another signal name or
   arguments than its ``SignalReceived``, a cancel where a termination was recorded, any client
   command on the id of an activity report or timer fire ...) is not a re-delivery: it is
   refused with ``CommandIdReusedError`` naming the id, and the first command's effect stays.
   Engine-internal commands (activity reports, timer fires, child results) are re-deliveries
   whenever their id is known. A ``GetResult`` records nothing and is answered (or waits) again.
2. Refusals (duplicate start per the id-reuse policy, unknown workflow type, signal/cancel/
   terminate/result for an unknown or closed workflow, unknown signal name) produce no event
   and a ``SendReply(ERROR)`` whose failure ``type`` is the error class name
   (``WorkflowAlreadyStartedError``, ``WorkflowNotFoundError``, ...). A refused child start
   is reported to the parent as a failed ``ChildWorkflowResult`` instead (not one refused for
   its reused command id: the parent's own start with that id was taken).
3. Otherwise the command becomes one input event (``SignalReceived``, ``ActivityCompleted``,
   ``TimerFired``, ...). The input is applied to the engine state, delivered to the resident
   workflow instance, and the code runs until quiescent; each command it issued becomes a
   command event. One input at a time, so a live run and a replay see the same sequence.
4. Every event is applied to the engine state, and (live only) that yields the effects:
   ``ActivityScheduled`` -> ``DispatchActivity`` + timeout timers, ``TimerStarted`` ->
   ``ScheduleTimer``, a closing event -> cancel open activities, drop timers, apply the
   children's parent-close policies, notify the parent and reply to result waiters...
   Effects are always consequences of recorded events (record before effect), except
   pure re-deliveries (a retry attempt's dispatch when its backoff timer fires, heartbeat
   bookkeeping) that carry no new state.

Engine-level activity state machine
-----------------------------------
Attempt ``n`` of activity ``a`` is dispatched at schedule time (n = 1) or when its retry timer
``a/<a>/<n>/retry`` fires. Durable timers (all through ``ScheduleTimer``):
``a/<a>/close`` (schedule-to-close, armed at schedule), ``a/<a>/<n>/s2s`` (schedule-to-start,
armed at dispatch), ``a/<a>/<n>/s2c`` (start-to-close, armed on ``ActivityStarted``) and
``a/<a>/<n>/hb/<g>`` (heartbeat, armed on start; when it fires after a newer heartbeat it is
re-armed with generation ``g+1`` at the last heartbeat + timeout). A fire is acted on only if
it still applies (same attempt, still open, still not started ...). Failures and timeouts are
retried per the ``RetryPolicy`` (``ActivityFailed/TimedOut(will_retry=True, retry_at_ms)``);
non-retryable types, exhausted attempts, a passed schedule-to-close deadline, or a cancel
request end the activity. Heartbeats are not recorded (only their effect on the timer).

Cancellation of an activity records ``ActivityCancelRequested`` and sends
``DispatchActivityCancel`` to the running attempt; an activity waiting for its retry timer is
confirmed cancelled by a self-addressed ``ActivityTaskCancelled`` command (so the
confirmation is its own step, never an event inside another activation).

Supervision
-----------
An exception escaping ``run`` (or a signal handler) fails the workflow when it matches the
type's ``FailurePolicy.workflow_failure_types`` (default: any ``Exception``). Anything else
in a step — another exception, a deadlock (no yield within ``deadlock_timeout``), a replay
divergence, a bug of the runtime — discards that activation's commands, records
``WorkflowTaskFailed(attempt, retry_at_ms)`` and *holds* the workflow: inputs keep being
recorded but no code runs. The task timer ``task/<attempt>`` (or a ``resume()`` after a
deploy) records ``MarkerRecorded('aion.resume')`` and rebuilds the code by replay; on replay an
input followed by ``WorkflowTaskFailed`` is not activated, inputs while held accumulate, and
the resume marker activates them all — exactly what happened live. After
``task_retry.maximum_attempts`` failures the workflow fails (``WorkflowFailed``).

Continue-as-new appends ``WorkflowContinuedAsNew`` then the new run's ``WorkflowStarted``
(run id ``uuid5`` of the old run id) to the same history; ordinals and timer liveness are per
run segment. The execution timeout spans the chain; the run timeout is per run.

Result waiters
--------------
A ``GetResult`` (or a start with ``wait_result``) on a running workflow leaves a waiter, keyed
by ``(command_id, reply_to)``, answered with ``RESULT`` when the run closes (a continue-as-new
keeps them for the next run). Waiters live in memory only (not in the history): a hand-over or
an eviction forgets them, which is why a waiting client re-sends its ``GetResult`` — with the
same command id, so the re-send finds its waiter and adds nothing. At most :data:`MAX_WAITERS`
are kept per workflow; past that a ``GetResult`` is refused with ``TooManyWaitersError``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..exceptions import (
    QueryError,
    SignalNotFoundError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
    WorkflowTypeNotFoundError,
    exception_to_failure,
)
from ..converter import hints_of
from ..model import (
    ActivityCancelled,
    ActivityCancelRequested,
    ActivityCompleted,
    ActivityFailed,
    ActivityHeartbeat,
    ActivityScheduled,
    ActivityStarted,
    ActivityTask,
    ActivityTaskCancelled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskStarted,
    ActivityTimedOut,
    CancelActivityTask,
    CancelWorkflow,
    ChildWorkflowCancelled,
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowResult,
    ChildWorkflowStarted,
    ChildWorkflowTerminated,
    ChildWorkflowTimedOut,
    Command,
    Event,
    EventBody,
    Failure,
    FireTimer,
    GetResult,
    MarkerRecorded,
    Payload,
    QueryWorkflow,
    Reply,
    RetryPolicy as ModelRetryPolicy,
    SearchAttributesUpserted,
    SignalReceived,
    SignalSent,
    SignalWithStart,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowCancelled,
    WorkflowCancelRequested,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowTaskFailed,
    WorkflowTerminated,
    WorkflowTimedOut,
    payload_size,
)
from .effects import (
    DispatchActivity,
    DispatchActivityCancel,
    DropHeartbeat,
    DropTimer,
    Effect,
    KeepHeartbeat,
    ScheduleTimer,
    SendCommand,
    SendReply,
)
from ._instance import MARKER_CANCEL_CHILD, MARKER_RESUME, RunContext, WorkflowInstance

__all__ = ["Step", "WorkflowExecution", "is_instance_input", "is_command_event", "MAX_WAITERS"]

log = logging.getLogger("aion.runtime")

#: The most result waiters (``GetResult`` senders, starts with ``wait_result``) one workflow
#: keeps in memory. One waiting ``handle.result()`` is one waiter however long it waits (it
#: re-sends its GetResult with the same command id); past the cap a GetResult is refused with
#: ``TooManyWaitersError`` instead of growing the engine's memory and the close's replies.
MAX_WAITERS = 1_000

#: The client commands whose re-used id is compared with what the id recorded.
_CLIENT_COMMANDS = (StartWorkflow, SignalWithStart, SignalWorkflow, CancelWorkflow, TerminateWorkflow)
#: The reason of the termination a TERMINATE_IF_RUNNING start records before its WorkflowStarted.
_TERMINATED_BY_START = "terminated by a new start (TERMINATE_IF_RUNNING)"

RUNNING = "RUNNING"
_CLOSE_STATUS = {
    WorkflowCompleted: "COMPLETED",
    WorkflowFailed: "FAILED",
    WorkflowCancelled: "CANCELLED",
    WorkflowTerminated: "TERMINATED",
    WorkflowTimedOut: "TIMED_OUT",
    WorkflowContinuedAsNew: "CONTINUED_AS_NEW",
}
_FAILED_STATUSES = {"FAILED", "CANCELLED", "TERMINATED", "TIMED_OUT"}

_COMMAND_EVENTS = (
    ActivityScheduled, ActivityCancelRequested, TimerStarted, TimerCancelled, ChildWorkflowStarted,
    SignalSent, SearchAttributesUpserted, WorkflowCompleted, WorkflowFailed, WorkflowCancelled,
    WorkflowContinuedAsNew,
)
_INPUTS = (
    WorkflowStarted, SignalReceived, ActivityCompleted, ActivityCancelled, TimerFired,
    ChildWorkflowCompleted, ChildWorkflowFailed, ChildWorkflowCancelled, ChildWorkflowTimedOut,
    ChildWorkflowTerminated, WorkflowCancelRequested,
)


def is_command_event(body: Any) -> bool:
    """Events the workflow code issues (matched on replay)."""
    if isinstance(body, MarkerRecorded):
        return body.marker_name != MARKER_RESUME
    return isinstance(body, _COMMAND_EVENTS)


def is_instance_input(body: Any) -> bool:
    """Events delivered to the workflow code (each one starts an activation)."""
    if isinstance(body, _INPUTS):
        return True
    if isinstance(body, (ActivityFailed, ActivityTimedOut)):
        return not body.will_retry
    return isinstance(body, MarkerRecorded) and body.marker_name == MARKER_RESUME


@dataclass
class Step:
    """What one command produced: new events (gapless seqs, ``recorded_at_ms=now_ms``,
    ``command_id`` of the command) and the effects to perform once they are durable."""

    events: list[Event] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    #: Why the command was refused (no event recorded), when it was: the engine dead-letters
    #: refusals that have nobody to answer (no ``reply_to``).
    refusal: Failure | None = None

    @property
    def replies(self) -> list[SendReply]:
        return [e for e in self.effects if isinstance(e, SendReply)]


# ============================================================================ engine state


@dataclass(frozen=True, slots=True)
class _Recorded:
    """What a command id's events say its command was (see ``WorkflowExecution._recorded_by``).

    ``kind``: ``start`` (a root ``WorkflowStarted``, with the ``SignalReceived`` of a
    signal-with-start), ``signal``, ``cancel``, ``terminate``, the type of the engine input it
    recorded (``TimerFired``, ``ActivityCompleted`` ...), or None when nothing says.
    """

    seq: int
    kind: str | None
    started: WorkflowStarted | None
    signal: SignalReceived | None
    #: Whether the step closed the run it started (a signal-with-start then records no signal).
    closed: bool = False


@dataclass
class _Act:
    activity_id: str
    activity_type: str
    input: list[Payload]
    task_queue: str
    retry: ModelRetryPolicy
    s2close_ms: int | None
    s2s_ms: int | None
    s2c_ms: int | None
    hb_ms: int | None
    scheduled_at_ms: int
    attempt: int = 1
    attempt_at_ms: int = 0
    started_at_ms: int | None = None
    backoff_until_ms: int | None = None
    cancel_requested: bool = False
    closed: bool = False
    # not in the history (heartbeats are not events): kept by the engine beside it
    # (KeepHeartbeat / DropHeartbeat effects, restore_heartbeat on a load)
    last_heartbeat_ms: int | None = None
    heartbeat_details: Payload | None = None
    hb_gen: int = 0

    def in_flight(self, now_ms: int) -> bool:
        return not self.closed and (self.backoff_until_ms is None or now_ms >= self.backoff_until_ms)


@dataclass
class _Child:
    child_workflow_id: str
    workflow_type: str
    parent_close_policy: str
    closed: bool = False


@dataclass
class _Run:
    run_id: str
    started: WorkflowStarted
    start_seq: int
    start_index: int
    started_at_ms: int
    status: str = RUNNING
    activities: dict[str, _Act] = field(default_factory=dict)
    timers: dict[str, int] = field(default_factory=dict)
    children: dict[str, _Child] = field(default_factory=dict)
    cancel_requested: bool = False
    held: bool = False
    task_attempt: int = 0
    task_retry_at_ms: int | None = None
    resume_pending: bool = False
    exec_deadline_ms: int | None = None
    run_deadline_ms: int | None = None
    search_attributes: dict[str, str] = field(default_factory=dict)
    close_body: Any = None
    #: The commands its close sent to other workflows (children under a TERMINATE /
    #: REQUEST_CANCEL policy, the parent): re-sent by :meth:`recovery_effects`.
    close_commands: list[Command] = field(default_factory=list)

    @property
    def workflow_type(self) -> str:
        return self.started.workflow_type


def _backoff_ms(p: ModelRetryPolicy, attempt: int) -> int:
    initial = max(1, p.initial_interval_ms)
    cap = p.maximum_interval_ms if p.maximum_interval_ms is not None else 100 * initial
    try:
        interval = initial * (max(1.0, p.backoff_coefficient) ** max(0, attempt - 1))
    except OverflowError:  # the thousandth retry of an unlimited policy
        return int(cap)
    return int(min(interval, cap))


def _model_retry(rp: Any) -> ModelRetryPolicy:
    return rp.to_model() if hasattr(rp, "to_model") else rp


# ============================================================================ the execution


class WorkflowExecution:
    """One workflow id: its history, the engine state and the resident workflow instance.

    Build with :meth:`new` (nothing recorded) or :meth:`from_history` (replay). Not thread-safe:
    the engine feeds one workflow's commands in order from one task.
    """

    def __init__(self, registry: Any, workflow_id: str) -> None:
        self.registry = registry
        self.workflow_id = workflow_id
        self.history: list[Event] = []
        self.next_seq = 1
        #: Every command id that produced events -> the index in ``history`` of its first event
        #: (a command's events are one contiguous run of the history; see ``_recorded_by``).
        self._command_ids: dict[str, int] = {}
        self._refusal: Failure | None = None
        self._cum_bytes: list[int] = []
        self._start_runs: dict[str, str] = {}
        self.run: _Run | None = None
        self._first_run_id = ""
        self._chain_start_ms = 0
        self._exec_deadline_ms: int | None = None
        #: Result waiters (command id, reply_to), in arrival order (see the module docs).
        self._waiters: dict[tuple[str, str], None] = {}
        self._last_close: tuple[str, str, Payload | None, Failure | None] | None = None
        self.instance: WorkflowInstance | None = None
        #: A task failure found while rebuilding (e.g. a divergence at load), not yet recorded.
        self.load_failure: BaseException | None = None
        self._resident_since_ms: int | None = None
        self._child_starts: dict[tuple[str, str], ChildWorkflowStarted] = {}
        self._continued_from: _Run | None = None
        #: What a step cut short by a crash still owes (see ``from_history(repair=True)``).
        self._owed: list[EventBody] = []
        self._owed_close: WorkflowContinuedAsNew | WorkflowTaskFailed | None = None
        self._record_as: str | None = None
        # per step
        self._now = 0
        self._cmd: Command | None = None
        self._new: list[Event] = []
        self._fx: list[Effect] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def new(cls, registry: Any, workflow_id: str) -> "WorkflowExecution":
        """An execution with nothing recorded yet (the next command is usually a start)."""
        return cls(registry, workflow_id)

    @classmethod
    def from_history(cls, registry: Any, workflow_id: str, events: Sequence[Event], *,
                     run_code: bool = True, repair: bool = False) -> "WorkflowExecution":
        """Rebuild by replaying ``events`` (the whole history, in seq order).

        Never raises for the workflow's sake: a divergence or a code failure during the replay
        leaves the execution held (``held`` is True, ``load_failure`` says why) and the next
        step records it as ``WorkflowTaskFailed``.

        ``repair=True`` (the engine, for a workflow it takes over after a crash): the history
        may end inside a step, because the previous owner died while its events were on their
        way to Kafka in more than one produce request (each partition keeps a prefix of them).
        What the step still owes — the commands the code issues past the end, the new run's
        start after ``WorkflowContinuedAsNew``, ``WorkflowFailed`` after the last task
        failure — is recorded by the next :meth:`handle` (usually the step's own command,
        re-delivered), with that step's command id. Without ``repair`` such a history replays
        as a divergence (``aion replay check`` reports it).

        ``run_code=False`` rebuilds the engine state only (status, run, live timers and
        activities, :meth:`recovery_effects`) without running workflow code; ``registry`` may
        then be None. Such an execution is for reading (e.g. ``aion rebuild`` deriving table
        rows), not for :meth:`handle`.
        """
        ex = cls(registry, workflow_id)
        for ev in events:
            ex.history.append(ev)
            ex.next_seq = ev.seq + 1
            ex._apply(ev, None)
        run = ex.run
        if run_code and run is not None and run.status == RUNNING and not run.held:
            inst = ex._rebuild_instance(len(ex.history), extend=repair)
            if inst is not None and inst.tail:
                ex._owed = list(inst.tail)
                inst.tail = []
        if repair and ex.history:
            last = ex.history[-1].body
            if isinstance(last, WorkflowContinuedAsNew) or (
                    isinstance(last, WorkflowTaskFailed) and last.retry_at_ms is None
                    and run is not None and run.status == RUNNING):
                ex._owed_close = last
        return ex

    # ------------------------------------------------------------------ properties
    @property
    def run_id(self) -> str | None:
        return self.run.run_id if self.run is not None else None

    @property
    def status(self) -> str | None:
        """``RUNNING``, ``COMPLETED``, ``FAILED``, ``CANCELLED``, ``TERMINATED``, ``TIMED_OUT``
        (the latest run), or None before the first start."""
        return self.run.status if self.run is not None else None

    @property
    def workflow_type(self) -> str | None:
        return self.run.workflow_type if self.run is not None else None

    @property
    def held(self) -> bool:
        """True while the workflow's code is held after a task failure (see module docs)."""
        run = self.run
        return run is not None and run.status == RUNNING and (run.held or self.load_failure is not None)

    @property
    def task_retry_timer_id(self) -> str | None:
        """The timer whose fire resumes a held workflow (None unless held and recorded)."""
        run = self.run
        if run is None or not run.held or run.status != RUNNING:
            return None
        return f"task/{run.task_attempt}"

    @property
    def search_attributes(self) -> dict[str, str]:
        return dict(self.run.search_attributes) if self.run is not None else {}

    def open_activity_ids(self) -> list[str]:
        """The activities of the open run that have not closed (their heartbeats matter)."""
        run = self.run
        if run is None or run.status != RUNNING:
            return []
        return [a.activity_id for a in run.activities.values() if not a.closed]

    def restore_heartbeats(self, kept: Callable[[str], tuple[int, ActivityHeartbeat] | None]) -> None:
        """After a load from history: ``kept(activity_id)`` is the engine's kept heartbeat
        ``(at_ms, heartbeat)`` of an open activity, or None; each one found is restored."""
        for aid in self.open_activity_ids():
            found = kept(aid)
            if found is not None:
                self.restore_heartbeat(*found)

    def restore_heartbeat(self, at_ms: int, heartbeat: ActivityHeartbeat) -> bool:
        """Give a loaded execution the last heartbeat the engine kept for one of its open
        activities (``KeepHeartbeat``): its details go to the activity's next attempt, and
        when it is of the current attempt it counts for the heartbeat timeout. A heartbeat of
        another run or a closed activity is ignored. Returns whether it was taken."""
        run = self.run
        if run is None or run.status != RUNNING or run.run_id != heartbeat.run_id:
            return False
        act = run.activities.get(heartbeat.activity_id)
        if act is None or act.closed or heartbeat.attempt > act.attempt:
            return False
        act.heartbeat_details = heartbeat.details
        if heartbeat.attempt == act.attempt and act.started_at_ms is not None and at_ms >= act.started_at_ms:
            act.last_heartbeat_ms = max(act.last_heartbeat_ms or 0, at_ms)
        return True

    # ------------------------------------------------------------------ the step
    def handle(self, command: Command, now_ms: int) -> Step:
        """Apply one command; returns the new events and the effects (see module docs)."""
        self._now = now_ms
        self._cmd = command
        self._new = []
        self._fx = []
        self._refusal = None
        if self._resident_since_ms is None:
            self._resident_since_ms = now_ms
        try:
            if self._owed or self._owed_close is not None:
                self._finish_cut_step()
            b = command.body
            if isinstance(b, QueryWorkflow):
                if command.reply_to:
                    self._fx.append(SendReply(command.reply_to, self.query(command)))
            elif command.command_id in self._command_ids:
                self._on_duplicate(command)
            else:
                if self.load_failure is not None and self.run is not None and self.run.status == RUNNING:
                    failure, self.load_failure = self.load_failure, None
                    self._task_failed(failure)
                handler = self._HANDLERS.get(type(b))
                if handler is None:  # pragma: no cover - the model has no other bodies
                    log.warning("workflow %s: ignoring command of unknown type %s", self.workflow_id, type(b).__name__)
                else:
                    handler(self, command, b)
                self._check_history_limits()
            return Step(self._new, self._fx, self._refusal)
        finally:
            self._cmd = None
            self._fx = None
            self._new = []

    def _finish_cut_step(self) -> None:
        """Record what a step cut short by a crash still owes, under that step's command id."""
        owed, self._owed = self._owed, []
        last, self._owed_close = self._owed_close, None
        run = self.run
        assert run is not None
        # Nothing was recorded since the load: the history's last event is the cut step's.
        cut_step = self.history[-1].command_id
        log.warning("workflow %s (run %s): the history ends inside the step of command %s (the previous "
                    "owner died while appending it); recording what that step still owes",
                    self.workflow_id, run.run_id, cut_step)
        self._record_as = cut_step
        try:
            if isinstance(last, WorkflowContinuedAsNew):
                self._start_continued(run, last)
            elif isinstance(last, WorkflowTaskFailed):
                self._record(WorkflowFailed(last.failure))
            for body in owed:
                self._record(body)
                if isinstance(body, WorkflowContinuedAsNew):
                    self._start_continued(run, body)
            self._check_history_limits()
        finally:
            self._record_as = None

    def resume(self, command_id: str, now_ms: int) -> Step:
        """Retry a held workflow now (e.g. right after deploying fixed code) instead of
        waiting for its task retry timer. A no-op unless ``held``."""
        run = self.run
        if run is None or not self.held:
            return Step()
        return self.handle(Command(command_id, self.workflow_id, now_ms,
                                   FireTimer(run.run_id, "task/now", now_ms)), now_ms)

    def recovery_effects(self, now_ms: int) -> list[Effect]:
        """Effects to re-issue after a restart, for anything of the open run that may have been
        recorded without its effect being performed: live timers, undelivered activity attempts
        (not yet started), child starts and cancel requests — or, once the latest run closed,
        the commands its close sent (its result to the parent, the parent-close policy of its
        open children). All are idempotent downstream."""
        out: list[Effect] = []
        run = self.run
        if run is None:
            return out
        if run.status != RUNNING:
            # Same command ids as at the close: a receiver that has them records nothing.
            return [SendCommand(c) for c in run.close_commands]
        self._now = now_ms
        wf, rid = self.workflow_id, run.run_id
        prev = self._continued_from
        if prev is not None and prev.close_commands and self.history[-1].command_id == self.history[run.start_index].command_id:
            # The history ends with the step that continued the previous run as this one: that
            # step's effects include the previous run's close commands (its children's
            # parent-close policies). Once a later step is recorded they were performed (a
            # batch's effects go out before the next batch), and the child ids may be reused.
            out.extend(SendCommand(c) for c in prev.close_commands)
        for tid, at in run.timers.items():
            out.append(ScheduleTimer(wf, rid, tid, at))
        if run.exec_deadline_ms is not None:
            out.append(ScheduleTimer(wf, rid, "wf/exec", run.exec_deadline_ms))
        if run.run_deadline_ms is not None:
            out.append(ScheduleTimer(wf, rid, "wf/run", run.run_deadline_ms))
        if run.held and run.task_retry_at_ms is not None:
            out.append(ScheduleTimer(wf, rid, f"task/{run.task_attempt}", run.task_retry_at_ms))
        for act in run.activities.values():
            if act.closed:
                continue
            if act.s2close_ms is not None:
                out.append(ScheduleTimer(wf, rid, f"a/{act.activity_id}/close", act.scheduled_at_ms + act.s2close_ms))
            if act.backoff_until_ms is not None and now_ms < act.backoff_until_ms:
                out.append(ScheduleTimer(wf, rid, f"a/{act.activity_id}/{act.attempt}/retry", act.backoff_until_ms))
                continue
            if act.cancel_requested:
                out.append(self._cancel_task(act, run))
            if act.started_at_ms is None:
                out.append(DispatchActivity(self._task(act, run)))
                if act.s2s_ms is not None:
                    out.append(ScheduleTimer(wf, rid, f"a/{act.activity_id}/{act.attempt}/s2s", act.attempt_at_ms + act.s2s_ms))
            else:
                if act.s2c_ms is not None:
                    out.append(ScheduleTimer(wf, rid, f"a/{act.activity_id}/{act.attempt}/s2c", act.started_at_ms + act.s2c_ms))
                if act.hb_ms is not None:
                    out.append(ScheduleTimer(wf, rid, f"a/{act.activity_id}/{act.attempt}/hb/{act.hb_gen}",
                                             max(now_ms, act.started_at_ms) + act.hb_ms))
        for ch in run.children.values():
            if not ch.closed:
                out.extend(self._child_start_effects(run, ch.child_workflow_id))
        return out

    # ------------------------------------------------------------------ recording
    def _record(self, body: EventBody, run_id: str | None = None) -> Event:
        assert self._cmd is not None
        rid = run_id if run_id is not None else (self.run.run_id if self.run is not None else "")
        ev = Event(self.workflow_id, self.next_seq, rid, self._now, body, self._record_as or self._cmd.command_id)
        self.next_seq += 1
        self.history.append(ev)
        self._new.append(ev)
        self._apply(ev, self._fx)
        if is_instance_input(body):
            self._feed(ev)
        return ev

    def _feed(self, ev: Event) -> None:
        """Deliver a just-recorded input to the code and record the commands it issues."""
        run = self.run
        if run is None or run.status != RUNNING or run.held:
            return
        inst = self.instance
        if inst is None:
            inst = self._rebuild_instance(len(self.history) - 1)
            if inst is None:
                failure, self.load_failure = self.load_failure, None
                if failure is not None:
                    self._task_failed(failure)
                return
        inst.deliver(ev)
        act = inst.activate(None, None, self.next_seq)
        if act.failure is not None:
            self._task_failed(act.failure)
            return
        for body in act.commands:
            self._record(body)
        if isinstance(inst.closed, WorkflowContinuedAsNew):
            self._start_continued(run, inst.closed)

    def _task_failed(self, failure: BaseException) -> None:
        run = self.run
        assert run is not None
        self._drop_instance()
        attempt = run.task_attempt + 1
        policy = self.registry.policy_for(run.workflow_type).task_retry
        model = _model_retry(policy)
        exhausted = bool(model.maximum_attempts) and attempt >= model.maximum_attempts
        retry_at = None if exhausted else self._now + _backoff_ms(model, attempt)
        f = exception_to_failure(failure, self.registry.converter)
        log.warning("workflow %s (run %s): task failed (attempt %d)%s: %s", self.workflow_id, run.run_id,
                    attempt, "" if exhausted else f", held until retry at {retry_at}", failure)
        self._record(WorkflowTaskFailed(failure=f, attempt=attempt, retry_at_ms=retry_at))
        if exhausted:
            self._record(WorkflowFailed(f))

    def _start_continued(self, old: _Run, can: WorkflowContinuedAsNew) -> None:
        st = old.started
        self._record(
            WorkflowStarted(
                workflow_type=can.workflow_type,
                input=list(can.input),
                task_queue=can.task_queue,
                previous_run_id=old.run_id,
                parent_workflow_id=st.parent_workflow_id,
                parent_run_id=st.parent_run_id,
                parent_close_policy=st.parent_close_policy,
                execution_timeout_ms=st.execution_timeout_ms,
                run_timeout_ms=st.run_timeout_ms,
                search_attributes=dict(old.search_attributes),
                attempt=1,
            ),
            run_id=can.new_run_id,
        )

    # ------------------------------------------------------------------ the instance
    def _drop_instance(self) -> None:
        if self.instance is not None:
            self.instance.dispose()
            self.instance = None

    def _run_context(self, run: _Run) -> RunContext:
        return RunContext(
            workflow_id=self.workflow_id,
            run_id=run.run_id,
            first_run_id=self._first_run_id,
            chain_start_ms=self._chain_start_ms,
            run_start_seq=run.start_seq,
            started=run.started,
            run_start_ms=run.started_at_ms,
            continue_as_new_after=self.registry.continue_as_new_suggested_after,
            run_bytes_until=lambda seq, start=run.start_seq: self._bytes_between(start, seq),
            continue_as_new_after_bytes=self._limits().warn_bytes,
        )

    def _limits(self) -> Any:
        from ._registry import HistoryLimits

        return getattr(self.registry, "history_limits", None) or HistoryLimits()

    def _bytes_between(self, first_seq: int, last_seq: int) -> int:
        """Payload bytes of the events with seq in [first_seq, last_seq].

        Counted lazily (``_cum_bytes[i]``: bytes of ``history[:i + 1]``), each event once: a
        replay for reading only (``aion rebuild``) never pays for it."""
        cum = self._cum_bytes
        last = min(last_seq, len(self.history))
        if len(cum) < last:
            total = cum[-1] if cum else 0
            for ev in self.history[len(cum):last]:
                total += payload_size(ev.body)
                cum.append(total)
        if last < first_seq:
            return 0
        return cum[last - 1] - (cum[first_seq - 2] if first_seq >= 2 else 0)

    def _check_history_limits(self) -> None:
        """Terminate the open run once its history passed the hard limits."""
        run = self.run
        if run is None or run.status != RUNNING or not self._new:
            return
        lim = self._limits()
        n = self.next_seq - run.start_seq
        size = self._bytes_between(run.start_seq, self.next_seq - 1)
        if n > lim.fail_events or size > lim.fail_bytes:
            what = f"{n} events (limit {lim.fail_events})" if n > lim.fail_events else f"{size} payload bytes (limit {lim.fail_bytes})"
            self._drop_instance()
            self._record(WorkflowTerminated(reason=(
                f"history limit exceeded: run {run.run_id} of workflow {self.workflow_id!r} reached {what}; "
                "use workflow.continue_as_new when workflow.info().continue_as_new_suggested turns true")))

    def _rebuild_instance(self, upto: int, *, extend: bool = False) -> WorkflowInstance | None:
        """Replay the current run's events ``history[run.start_index:upto]`` into a fresh
        instance. On failure: no instance, ``load_failure`` set."""
        self._drop_instance()
        run = self.run
        assert run is not None
        defn = self.registry.workflow(run.workflow_type)
        if defn is None:
            self.load_failure = WorkflowTypeNotFoundError(
                f"workflow type {run.workflow_type!r} of {self.workflow_id!r} is not registered with this "
                f"engine: deploy code that registers it; the workflow is held until then"
            )
            return None
        inst = WorkflowInstance(defn, self._run_context(run), self.registry.converter,
                                self.registry.policy_for(run.workflow_type), self.registry)
        failure = replay_into(inst, self.history, run.start_index, upto, extend=extend)
        if failure is not None:
            inst.dispose()
            self.load_failure = failure
            return None
        self.instance = inst
        return inst

    # ------------------------------------------------------------------ state (+ effects when live)
    def _apply(self, ev: Event, fx: list[Effect] | None) -> None:
        b = ev.body
        if ev.command_id and ev.command_id not in self._command_ids:
            self._command_ids[ev.command_id] = len(self.history) - 1
        run = self.run
        if run is not None and run.resume_pending and not isinstance(b, WorkflowTaskFailed):
            run.resume_pending = False
            run.task_attempt = 0
        t = ev.recorded_at_ms
        if isinstance(b, WorkflowStarted):
            self._apply_started(ev, b, fx)
            return
        if run is None:
            return
        wf, rid = self.workflow_id, run.run_id
        if isinstance(b, ActivityScheduled):
            act = _Act(b.activity_id, b.activity_type, list(b.input), b.task_queue, b.retry_policy,
                       b.timeouts.schedule_to_close_ms, b.timeouts.schedule_to_start_ms,
                       b.timeouts.start_to_close_ms, b.timeouts.heartbeat_ms, t, attempt=1, attempt_at_ms=t)
            run.activities[b.activity_id] = act
            if fx is not None:
                fx.append(DispatchActivity(self._task(act, run)))
                if act.s2close_ms is not None:
                    fx.append(ScheduleTimer(wf, rid, f"a/{act.activity_id}/close", t + act.s2close_ms))
                if act.s2s_ms is not None:
                    fx.append(ScheduleTimer(wf, rid, f"a/{act.activity_id}/1/s2s", t + act.s2s_ms))
        elif isinstance(b, ActivityStarted):
            act = run.activities.get(b.activity_id)
            if act is None:
                return
            act.started_at_ms = t
            act.backoff_until_ms = None
            act.hb_gen = 0
            if fx is not None:
                p = f"a/{act.activity_id}/{act.attempt}"
                if act.s2s_ms is not None:
                    fx.append(DropTimer(wf, rid, f"{p}/s2s"))
                if act.s2c_ms is not None:
                    fx.append(ScheduleTimer(wf, rid, f"{p}/s2c", t + act.s2c_ms))
                if act.hb_ms is not None:
                    fx.append(ScheduleTimer(wf, rid, f"{p}/hb/0", t + act.hb_ms))
        elif isinstance(b, (ActivityCompleted, ActivityCancelled)):
            act = run.activities.get(b.activity_id)
            if act is not None and not act.closed:
                if fx is not None:
                    self._drop_activity_timers(act, run, fx)
                self._close_activity(act, fx)
        elif isinstance(b, (ActivityFailed, ActivityTimedOut)):
            act = run.activities.get(b.activity_id)
            if act is None or act.closed:
                return
            was_in_flight = act.in_flight(t)
            if fx is not None:
                self._drop_activity_timers(act, run, fx, keep_close=b.will_retry)
                if isinstance(b, ActivityTimedOut) and was_in_flight:
                    fx.append(self._cancel_task(act, run))
            if b.will_retry and b.retry_at_ms is not None:
                act.attempt = b.attempt + 1
                act.attempt_at_ms = b.retry_at_ms
                act.backoff_until_ms = b.retry_at_ms
                act.started_at_ms = None
                act.last_heartbeat_ms = None
                act.hb_gen = 0
                if fx is not None:
                    fx.append(ScheduleTimer(wf, rid, f"a/{act.activity_id}/{act.attempt}/retry", b.retry_at_ms))
            else:
                self._close_activity(act, fx)
        elif isinstance(b, ActivityCancelRequested):
            act = run.activities.get(b.activity_id)
            if act is None or act.closed:
                return
            act.cancel_requested = True
            if fx is not None:
                if act.in_flight(t):
                    fx.append(self._cancel_task(act, run))
                else:
                    fx.append(DropTimer(wf, rid, f"a/{act.activity_id}/{act.attempt}/retry"))
                    fx.append(self._self_cancel_confirm(act, run))
        elif isinstance(b, TimerStarted):
            run.timers[b.timer_id] = b.fire_at_ms
            if fx is not None:
                fx.append(ScheduleTimer(wf, rid, b.timer_id, b.fire_at_ms))
        elif isinstance(b, TimerFired):
            run.timers.pop(b.timer_id, None)
        elif isinstance(b, TimerCancelled):
            if run.timers.pop(b.timer_id, None) is not None and fx is not None:
                fx.append(DropTimer(wf, rid, b.timer_id))
        elif isinstance(b, SignalSent):
            if fx is not None:
                fx.append(SendCommand(Command(
                    command_id=b.signal_id, workflow_id=b.target_workflow_id, sent_at_ms=t,
                    body=SignalWorkflow(b.signal_name, list(b.args), signal_id=b.signal_id))))
        elif isinstance(b, ChildWorkflowStarted):
            run.children[b.child_workflow_id] = _Child(b.child_workflow_id, b.workflow_type, b.parent_close_policy)
            self._child_starts[(rid, b.child_workflow_id)] = b
            if fx is not None:
                fx.extend(self._child_start_effects(run, b.child_workflow_id))
        elif isinstance(b, (ChildWorkflowCompleted, ChildWorkflowFailed, ChildWorkflowCancelled,
                            ChildWorkflowTimedOut, ChildWorkflowTerminated)):
            ch = run.children.get(b.child_workflow_id)
            if ch is not None:
                ch.closed = True
        elif isinstance(b, MarkerRecorded):
            if b.marker_name == MARKER_CANCEL_CHILD:
                ch = run.children.get(b.marker_id)
                if ch is not None and not ch.closed and fx is not None:
                    fx.append(SendCommand(Command(
                        command_id=f"{wf}:{rid}:cancel-child:{b.marker_id}", workflow_id=b.marker_id,
                        sent_at_ms=t, body=CancelWorkflow(reason=f"cancellation requested by parent {wf!r}"))))
            elif b.marker_name == MARKER_RESUME:
                run.held = False
                run.resume_pending = True
                run.task_retry_at_ms = None
        elif isinstance(b, SearchAttributesUpserted):
            run.search_attributes.update(b.attributes)
        elif isinstance(b, WorkflowCancelRequested):
            run.cancel_requested = True
        elif isinstance(b, WorkflowTaskFailed):
            run.held = True
            run.resume_pending = False
            run.task_attempt = b.attempt
            run.task_retry_at_ms = b.retry_at_ms
            if fx is not None and b.retry_at_ms is not None:
                fx.append(ScheduleTimer(wf, rid, f"task/{b.attempt}", b.retry_at_ms))
        elif type(b) in _CLOSE_STATUS:
            self._apply_close(ev, run, b, fx)

    def _apply_started(self, ev: Event, b: WorkflowStarted, fx: list[Effect] | None) -> None:
        t = ev.recorded_at_ms
        prev = self.run
        if prev is not None and prev.status == RUNNING:  # a history that never closed it: treat as closed
            prev.status = "TERMINATED"
        run = _Run(ev.run_id, b, ev.seq, len(self.history) - 1, t,
                   search_attributes=dict(b.search_attributes))
        if b.previous_run_id is None or self.run is None:
            self._first_run_id = ev.run_id
            self._chain_start_ms = t
            self._exec_deadline_ms = t + b.execution_timeout_ms if b.execution_timeout_ms else None
            self._last_close = None
        run.exec_deadline_ms = self._exec_deadline_ms
        run.run_deadline_ms = t + b.run_timeout_ms if b.run_timeout_ms else None
        # The run this one continues: its close commands (parent-close policies of its open
        # children) were effects of the same step as this start (see recovery_effects).
        self._continued_from = prev if b.previous_run_id is not None and prev is not None else None
        self.run = run
        self._drop_instance()
        if ev.command_id:
            self._start_runs[ev.command_id] = ev.run_id
        if b.reply_to and ev.command_id:
            # Recorded, so never refused: a start's waiter is not held to MAX_WAITERS.
            self._waiters[(ev.command_id, b.reply_to)] = None
        if fx is not None:
            if run.exec_deadline_ms is not None:
                fx.append(ScheduleTimer(self.workflow_id, run.run_id, "wf/exec", run.exec_deadline_ms))
            if run.run_deadline_ms is not None:
                fx.append(ScheduleTimer(self.workflow_id, run.run_id, "wf/run", run.run_deadline_ms))

    def _apply_close(self, ev: Event, run: _Run, b: Any, fx: list[Effect] | None) -> None:
        if run.status != RUNNING:
            return
        status = _CLOSE_STATUS[type(b)]
        run.status = status
        run.close_body = b
        wf, rid, t = self.workflow_id, run.run_id, ev.recorded_at_ms
        for act in run.activities.values():
            if act.closed:
                continue
            if fx is not None:
                self._drop_activity_timers(act, run, fx)
                if act.in_flight(t) and not act.cancel_requested:  # (a requested one was sent already)
                    fx.append(self._cancel_task(act, run))
            self._close_activity(act, fx)
        if fx is not None:
            for tid in run.timers:
                fx.append(DropTimer(wf, rid, tid))
            if run.exec_deadline_ms is not None:
                fx.append(DropTimer(wf, rid, "wf/exec"))
            if run.run_deadline_ms is not None:
                fx.append(DropTimer(wf, rid, "wf/run"))
            if run.held and run.task_retry_at_ms is not None:
                fx.append(DropTimer(wf, rid, f"task/{run.task_attempt}"))
        run.timers.clear()
        for ch in run.children.values():
            if ch.closed:
                continue
            if ch.parent_close_policy in ("TERMINATE", "REQUEST_CANCEL"):
                body: Any = (TerminateWorkflow(reason=f"parent {wf!r} run closed ({status})")
                             if ch.parent_close_policy == "TERMINATE"
                             else CancelWorkflow(reason=f"parent {wf!r} run closed ({status})"))
                run.close_commands.append(Command(f"{wf}:{rid}:close-child:{ch.child_workflow_id}",
                                                  ch.child_workflow_id, t, body))
            ch.closed = True
        if status != "CONTINUED_AS_NEW":
            result, failure = self._outcome(b, status)
            self._last_close = (rid, status, result, failure)
            st = run.started
            if st.parent_workflow_id:
                run.close_commands.append(Command(
                    f"{wf}:{rid}:result-to-parent", st.parent_workflow_id, t,
                    ChildWorkflowResult(run_id=st.parent_run_id or "", child_workflow_id=wf,
                                        outcome=status, result=result, failure=failure)))
        if fx is not None:
            fx.extend(SendCommand(c) for c in run.close_commands)
        if status == "CONTINUED_AS_NEW":
            return
        waiters, self._waiters = self._waiters, {}
        if fx is not None:
            for cmd_id, reply_to in waiters:
                fx.append(SendReply(reply_to, Reply(cmd_id, wf, "RESULT", rid, status, result, failure)))

    @staticmethod
    def _outcome(b: Any, status: str) -> tuple[Payload | None, Failure | None]:
        if isinstance(b, WorkflowCompleted):
            return b.result, None
        if isinstance(b, WorkflowFailed):
            return None, b.failure
        if isinstance(b, WorkflowCancelled):
            return None, Failure("CancelledError", "workflow cancelled", details=b.details)
        if isinstance(b, WorkflowTerminated):
            return None, Failure("TerminatedError", b.reason or "workflow terminated")
        if isinstance(b, WorkflowTimedOut):
            return None, Failure("TimeoutError", f"workflow timed out ({b.timeout_type})")
        return None, None

    # ------------------------------------------------------------------ effect builders
    def _task(self, act: _Act, run: _Run) -> ActivityTask:
        return ActivityTask(
            workflow_id=self.workflow_id,
            run_id=run.run_id,
            activity_id=act.activity_id,
            attempt=act.attempt,
            activity_type=act.activity_type,
            input=list(act.input),
            task_queue=act.task_queue,
            workflow_type=run.workflow_type,
            scheduled_at_ms=act.attempt_at_ms,
            start_to_close_ms=act.s2c_ms,
            heartbeat_ms=act.hb_ms,
            schedule_to_close_deadline_ms=(act.scheduled_at_ms + act.s2close_ms) if act.s2close_ms is not None else None,
            heartbeat_details=act.heartbeat_details,
        )

    def _cancel_task(self, act: _Act, run: _Run) -> DispatchActivityCancel:
        return DispatchActivityCancel(
            CancelActivityTask(self.workflow_id, run.run_id, act.activity_id, act.attempt), act.task_queue)

    def _self_cancel_confirm(self, act: _Act, run: _Run) -> SendCommand:
        return SendCommand(Command(
            f"{self.workflow_id}:{run.run_id}:cancel-confirm:{act.activity_id}:{act.attempt}",
            self.workflow_id, self._now,
            ActivityTaskCancelled(run.run_id, act.activity_id, act.attempt)))

    def _close_activity(self, act: _Act, fx: list[Effect] | None) -> None:
        act.closed = True
        if fx is not None and act.heartbeat_details is not None:
            fx.append(DropHeartbeat(self.workflow_id, act.activity_id))

    def _drop_activity_timers(self, act: _Act, run: _Run, fx: list[Effect], keep_close: bool = False) -> None:
        wf, rid = self.workflow_id, run.run_id
        p = f"a/{act.activity_id}/{act.attempt}"
        if act.s2close_ms is not None and not keep_close:
            fx.append(DropTimer(wf, rid, f"a/{act.activity_id}/close"))
        if act.backoff_until_ms is not None:
            fx.append(DropTimer(wf, rid, f"{p}/retry"))
        if act.started_at_ms is None:
            if act.s2s_ms is not None:
                fx.append(DropTimer(wf, rid, f"{p}/s2s"))
        else:
            if act.s2c_ms is not None:
                fx.append(DropTimer(wf, rid, f"{p}/s2c"))
            if act.hb_ms is not None:
                fx.append(DropTimer(wf, rid, f"{p}/hb/{act.hb_gen}"))

    def _child_start_effects(self, run: _Run, cid: str) -> list[Effect]:
        b = self._child_starts.get((run.run_id, cid))
        if b is None:
            return []
        wf, rid = self.workflow_id, run.run_id
        return [SendCommand(Command(
            command_id=f"{wf}:{rid}:start-child:{cid}",
            workflow_id=cid,
            sent_at_ms=self._now,
            body=StartWorkflow(
                workflow_type=b.workflow_type,
                input=list(b.input),
                task_queue=b.task_queue,
                id_reuse_policy="ALLOW_DUPLICATE",
                request_id=f"{wf}:{rid}:child:{cid}",
                execution_timeout_ms=b.execution_timeout_ms,
                parent_workflow_id=wf,
                parent_run_id=rid,
                parent_close_policy=b.parent_close_policy,
            )))]

    # ------------------------------------------------------------------ replies
    def _reply(self, command: Command, kind: str, **kw: Any) -> None:
        if command.reply_to and self._fx is not None:
            self._fx.append(SendReply(command.reply_to, Reply(command.command_id, self.workflow_id, kind, **kw)))

    def _refuse(self, command: Command, error: type[BaseException] | str, message: str, *,
                notify_parent: bool = True) -> None:
        """Refuse ``command`` (no event): ``ERROR`` to its ``reply_to``, a failed child result to
        the parent of a refused child start (unless ``notify_parent`` is False), else nothing
        but ``Step.refusal`` (the engine dead-letters it with the reason). ``error`` is the class,
        or its name."""
        name = error if isinstance(error, str) else error.__name__
        failure = Failure(type=name, message=message)
        self._refusal = failure
        b = command.body
        start = b.start if isinstance(b, SignalWithStart) else b
        if command.reply_to:
            self._reply(command, "ERROR", run_id=self.run_id, failure=failure)
        elif (notify_parent and isinstance(start, StartWorkflow) and start.parent_workflow_id
              and self._fx is not None):
            self._fx.append(SendCommand(Command(
                f"{self.workflow_id}:refused:{command.command_id}", start.parent_workflow_id, self._now,
                ChildWorkflowResult(run_id=start.parent_run_id or "", child_workflow_id=self.workflow_id,
                                    outcome="FAILED", failure=failure))))
        else:
            log.info("workflow %s: refused %s (%s): %s", self.workflow_id, command.type, name, message)

    def _reply_result_or_wait(self, command: Command) -> None:
        run = self.run
        if run is not None and run.status not in (RUNNING, "CONTINUED_AS_NEW") and self._last_close is not None:
            rid, status, result, failure = self._last_close
            self._reply(command, "RESULT", run_id=rid, status=status, result=result, failure=failure)
        elif command.reply_to:
            key = (command.command_id, command.reply_to)
            if key in self._waiters:
                return  # a re-send of a waiting GetResult (or start): it waits already
            if len(self._waiters) >= MAX_WAITERS:
                self._refuse(command, "TooManyWaitersError",
                             f"workflow {self.workflow_id!r} already has {len(self._waiters)} result waiters, "
                             f"the most one workflow keeps (MAX_WAITERS = {MAX_WAITERS}); wait on fewer "
                             f"handles, or follow the workflow's events instead")
                return
            self._waiters[key] = None

    # ------------------------------------------------------------------ command handlers
    def _on_duplicate(self, command: Command) -> None:
        b = command.body
        if isinstance(b, GetResult):
            # Its id recorded events (a task failure found at load was recorded in its step),
            # but a GetResult itself records nothing: a re-send must still wait or be answered.
            self._h_get_result(command, b)
            return
        if isinstance(b, _CLIENT_COMMANDS):
            problem = self._reuse_problem(command)
            if problem is not None:
                self._refuse(command, "CommandIdReusedError", problem, notify_parent=False)
                return
        if isinstance(b, (StartWorkflow, SignalWithStart)):
            rid = self._start_runs.get(command.command_id, self.run_id)
            self._reply(command, "ACCEPTED", run_id=rid)
            start = b.start if isinstance(b, SignalWithStart) else b
            if start.wait_result:
                self._reply_result_or_wait(command)
        elif isinstance(b, (SignalWorkflow, CancelWorkflow, TerminateWorkflow)):
            self._reply(command, "ACCEPTED", run_id=self.run_id)

    def _recorded_by(self, command_id: str) -> _Recorded:
        """What the events of ``command_id`` (a known id) say its command was.

        A command's events are one contiguous run of the history from its first one: its own
        step, plus what a step cut short by a crash still owed (recorded under its id at the
        start of the next step). Only this run is read, and only for a repeated client command.
        """
        h = self.history
        i = self._command_ids[command_id]
        seq = h[i].seq
        started: WorkflowStarted | None = None
        signal: SignalReceived | None = None
        closed = False
        kind: str | None = None
        while i < len(h) and h[i].command_id == command_id:
            b = h[i].body
            i += 1
            if started is not None:  # a start's step: its signal (signal-with-start), its close
                if isinstance(b, SignalReceived) and signal is None:
                    signal = b
                closed = closed or (type(b) in _CLOSE_STATUS and not isinstance(b, WorkflowContinuedAsNew))
            elif isinstance(b, WorkflowStarted):
                # A run the step's code continued as new has a previous run: not a start command's.
                if b.previous_run_id is None:
                    started, kind = b, "start"
            elif isinstance(b, (WorkflowTaskFailed, WorkflowFailed)):
                continue  # a task failure found at load (and the failure it exhausts) precede any step
            elif isinstance(b, WorkflowTerminated) and b.reason == _TERMINATED_BY_START:
                continue  # a TERMINATE_IF_RUNNING start ends the running run before its WorkflowStarted
            else:
                # The step's input comes first: what it is decides.
                if isinstance(b, SignalReceived):
                    signal, kind = b, "signal"
                elif isinstance(b, WorkflowCancelRequested):
                    kind = "cancel"
                elif isinstance(b, WorkflowTerminated):
                    kind = "terminate"
                else:
                    kind = type(b).__name__
                break
        return _Recorded(seq, kind, started, signal, closed)

    def _reuse_problem(self, command: Command) -> str | None:
        """Why a client command whose id already produced events is not a re-delivery of the
        command that produced them (None: it is, or nothing recorded says otherwise).

        Compared with what the id recorded: a start's workflow type, input and task queue (its
        ``WorkflowStarted``), a signal's name and arguments (its ``SignalReceived``; a
        signal-with-start recorded both, or only the signal when the workflow was running),
        a cancel request or a termination by kind. Fields that nothing recorded (a start's id
        reuse policy, a cancel's reason) are not compared.
        """
        rec = self._recorded_by(command.command_id)
        if rec.kind is None:
            return None  # only a task failure (or a start's termination of the run before): unknown
        b = command.body
        diffs: list[str] = []

        def signal_diffs(name: str, args: Sequence[Payload]) -> None:
            assert rec.signal is not None
            if rec.signal.signal_name != name:
                diffs.append(f"signal {rec.signal.signal_name!r} was recorded, this one is {name!r}")
            elif list(rec.signal.args) != list(args):
                diffs.append(f"signal {name!r} was recorded with other arguments")

        if isinstance(b, (StartWorkflow, SignalWithStart)):
            start = b.start if isinstance(b, SignalWithStart) else b
            if rec.kind == "start":
                st = rec.started
                assert st is not None
                if st.workflow_type != start.workflow_type:
                    diffs.append(f"workflow type {st.workflow_type!r} was started, this one is {start.workflow_type!r}")
                if list(st.input) != list(start.input):
                    diffs.append("the workflow was started with another input")
                if st.task_queue != start.task_queue:
                    diffs.append(f"task queue {st.task_queue!r} was recorded, this one is {start.task_queue!r}")
                if rec.signal is not None:  # a signal-with-start that started the workflow
                    if isinstance(b, SignalWithStart):
                        signal_diffs(b.signal_name, b.args)
                    else:
                        diffs.append(f"a signal-with-start (signal {rec.signal.signal_name!r}) was recorded, "
                                     f"this is a plain start")
                elif isinstance(b, SignalWithStart) and not rec.closed:
                    # (a signal-with-start whose run closed in its first activation records no signal)
                    diffs.append("a plain start was recorded, this is a signal-with-start")
            elif rec.kind == "signal" and isinstance(b, SignalWithStart):
                signal_diffs(b.signal_name, b.args)  # it was delivered to the running workflow
            else:
                diffs.append(f"{_recorded_kind(rec)} was recorded, this is a {command.type}")
        elif isinstance(b, SignalWorkflow):
            if rec.kind == "signal":
                signal_diffs(b.signal_name, b.args)
            else:
                diffs.append(f"{_recorded_kind(rec)} was recorded, this is signal {b.signal_name!r}")
        elif isinstance(b, CancelWorkflow):
            if rec.kind != "cancel":
                diffs.append(f"{_recorded_kind(rec)} was recorded, this is a cancel request")
        else:
            assert isinstance(b, TerminateWorkflow)
            if rec.kind != "terminate":
                diffs.append(f"{_recorded_kind(rec)} was recorded, this is a termination")
        if not diffs:
            return None
        return (f"command id {command.command_id!r} was already used on workflow {self.workflow_id!r} "
                f"(its events start at seq {rec.seq}) by another command: {'; '.join(diffs)}. This "
                f"{command.type} is not a re-delivery of it and is refused (the first command's effect "
                f"stays); give each distinct command its own id")

    def _on_start(self, command: Command, b: StartWorkflow, signal: SignalWithStart | None = None) -> None:
        run = self.run
        if b.request_id and run is not None and run.started.request_id == b.request_id:
            self._reply(command, "ACCEPTED", run_id=run.run_id)
            if b.wait_result:
                self._reply_result_or_wait(command)
            return
        defn = self.registry.workflow(b.workflow_type)
        if defn is None:
            known = ", ".join(sorted(self.registry.workflows)) or "none"
            self._refuse(command, WorkflowTypeNotFoundError,
                         f"workflow type {b.workflow_type!r} is not registered (registered: {known}); "
                         f"check the type name or deploy an engine that registers it")
            return
        if signal is not None and signal.signal_name not in defn.signals:
            self._refuse(command, SignalNotFoundError, self._unknown_signal_msg(defn, signal.signal_name))
            return
        policy = b.id_reuse_policy
        if run is not None and run.status == RUNNING:
            if policy == "TERMINATE_IF_RUNNING":
                self._record(WorkflowTerminated(reason=_TERMINATED_BY_START))
            else:
                self._refuse(command, WorkflowAlreadyStartedError,
                             f"workflow {self.workflow_id!r} is already running (run {run.run_id}); "
                             f"signal or query it, use another id, or start with "
                             f"id_reuse_policy=TERMINATE_IF_RUNNING")
                return
        elif run is not None:
            if policy == "REJECT_DUPLICATE" or (policy == "ALLOW_DUPLICATE_FAILED_ONLY" and run.status not in _FAILED_STATUSES):
                self._refuse(command, WorkflowAlreadyStartedError,
                             f"workflow {self.workflow_id!r} already ran (last run {run.run_id} ended "
                             f"{run.status}) and id_reuse_policy={policy} forbids another run; use a new id")
                return
        run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"aion:{self.workflow_id}:{command.command_id}"))
        self._reply(command, "ACCEPTED", run_id=run_id)
        self._record(
            WorkflowStarted(
                workflow_type=b.workflow_type,
                input=list(b.input),
                task_queue=b.task_queue,
                parent_workflow_id=b.parent_workflow_id,
                parent_run_id=b.parent_run_id,
                parent_close_policy=b.parent_close_policy,
                execution_timeout_ms=b.execution_timeout_ms,
                run_timeout_ms=b.run_timeout_ms,
                search_attributes=dict(b.search_attributes),
                request_id=b.request_id,
                reply_to=command.reply_to if b.wait_result else None,
            ),
            run_id=run_id,
        )
        if signal is not None and self.run is not None and self.run.status == RUNNING:
            self._record(SignalReceived(signal.signal_name, list(signal.args), signal_id=command.command_id))

    def _h_start(self, command: Command, b: StartWorkflow) -> None:
        self._on_start(command, b)

    def _h_signal_with_start(self, command: Command, b: SignalWithStart) -> None:
        run = self.run
        if run is not None and run.status == RUNNING:
            self._h_signal(command, SignalWorkflow(b.signal_name, b.args, signal_id=command.command_id))
            return
        self._on_start(command, b.start, b)

    @staticmethod
    def _unknown_signal_msg(defn: Any, name: str) -> str:
        known = ", ".join(sorted(defn.signals)) or "none"
        return (f"workflow type {defn.name!r} has no signal {name!r} (its signals: {known}); "
                f"check the signal name")

    def _open_run_or_refuse(self, command: Command, what: str, run_id: str | None) -> _Run | None:
        run = self.run
        if run is None:
            self._refuse(command, WorkflowNotFoundError,
                         f"no workflow with id {self.workflow_id!r}: cannot {what}; check the id or start it first")
            return None
        if run_id and run_id != run.run_id:
            self._refuse(command, WorkflowNotFoundError,
                         f"run {run_id} of workflow {self.workflow_id!r} is not the current run "
                         f"({run.run_id}): cannot {what}")
            return None
        if run.status != RUNNING:
            self._refuse(command, WorkflowNotFoundError,
                         f"workflow {self.workflow_id!r} is not running (its last run {run.run_id} ended "
                         f"{run.status}): cannot {what}")
            return None
        return run

    def _h_signal(self, command: Command, b: SignalWorkflow) -> None:
        run = self._open_run_or_refuse(command, f"deliver signal {b.signal_name!r}", b.run_id)
        if run is None:
            return
        defn = self.registry.workflow(run.workflow_type)
        if defn is not None and b.signal_name not in defn.signals:
            self._refuse(command, SignalNotFoundError, self._unknown_signal_msg(defn, b.signal_name))
            return
        self._reply(command, "ACCEPTED", run_id=run.run_id)
        self._record(SignalReceived(b.signal_name, list(b.args), signal_id=b.signal_id or command.command_id))

    def _h_cancel(self, command: Command, b: CancelWorkflow) -> None:
        run = self._open_run_or_refuse(command, "cancel it", b.run_id)
        if run is None:
            return
        self._reply(command, "ACCEPTED", run_id=run.run_id)
        if not run.cancel_requested:
            self._record(WorkflowCancelRequested(reason=b.reason))

    def _h_terminate(self, command: Command, b: TerminateWorkflow) -> None:
        run = self._open_run_or_refuse(command, "terminate it", b.run_id)
        if run is None:
            return
        self._reply(command, "ACCEPTED", run_id=run.run_id)
        self._drop_instance()
        self._record(WorkflowTerminated(reason=b.reason))

    def _h_get_result(self, command: Command, b: GetResult) -> None:
        if self.run is None:
            self._refuse(command, WorkflowNotFoundError,
                         f"no workflow with id {self.workflow_id!r}: nothing to wait for; check the id")
            return
        self._reply_result_or_wait(command)

    def _h_query(self, command: Command, b: QueryWorkflow) -> None:  # pragma: no cover - handled in handle()
        pass

    def _activity(self, run_id: str, activity_id: str, attempt: int) -> _Act | None:
        run = self.run
        if run is None:
            # Nobody to answer: the engine dead-letters the report with this reason.
            self._refusal = Failure("WorkflowNotFoundError", (
                f"activity report for workflow {self.workflow_id!r}, which does not exist; "
                "the report was not recorded"))
            return None
        if run.status != RUNNING or run.run_id != run_id:
            return None  # a late report for a closed or older run: expected, dropped
        act = run.activities.get(activity_id)
        if act is None:
            self._refusal = Failure("ActivityNotFoundError", (
                f"activity report for activity id {activity_id!r} of workflow {self.workflow_id!r} "
                f"(run {run_id}), which never scheduled it; the report was not recorded"))
            return None
        if act is None or act.closed or act.attempt != attempt:
            return None
        return act

    def _retry_at(self, act: _Act, failure: Failure | None) -> int | None:
        if act.cancel_requested:
            return None
        p = act.retry
        if failure is not None and (failure.non_retryable or failure.type in p.non_retryable_error_types):
            return None
        if p.maximum_attempts and act.attempt >= p.maximum_attempts:
            return None
        at = self._now + _backoff_ms(p, act.attempt)
        if act.s2close_ms is not None and at >= act.scheduled_at_ms + act.s2close_ms:
            return None
        return at

    def _h_act_started(self, command: Command, b: ActivityTaskStarted) -> None:
        act = self._activity(b.run_id, b.activity_id, b.attempt)
        if act is None or act.started_at_ms is not None or not act.in_flight(self._now):
            return
        self._record(ActivityStarted(b.activity_id, b.attempt, worker=b.worker))

    def _started_with_outcome(self, act: _Act, worker: str) -> None:
        """An outcome of an attempt whose start was not reported: the worker reports the start
        of a short attempt with its outcome (one step instead of two), so record it first —
        every attempt's history reads ``ActivityStarted`` then its outcome, as in Temporal."""
        if act.started_at_ms is None:
            self._record(ActivityStarted(act.activity_id, act.attempt, worker=worker))

    def _h_act_completed(self, command: Command, b: ActivityTaskCompleted) -> None:
        act = self._activity(b.run_id, b.activity_id, b.attempt)
        if act is None or not act.in_flight(self._now):
            return
        self._started_with_outcome(act, b.worker)
        self._record(ActivityCompleted(b.activity_id, b.attempt, b.result))

    def _h_act_failed(self, command: Command, b: ActivityTaskFailed) -> None:
        act = self._activity(b.run_id, b.activity_id, b.attempt)
        if act is None or not act.in_flight(self._now):
            return
        self._started_with_outcome(act, b.worker)
        at = self._retry_at(act, b.failure)
        self._record(ActivityFailed(b.activity_id, b.attempt, b.failure, will_retry=at is not None, retry_at_ms=at))

    def _h_act_cancelled(self, command: Command, b: ActivityTaskCancelled) -> None:
        act = self._activity(b.run_id, b.activity_id, b.attempt)
        if act is None:
            return
        if act.cancel_requested:
            self._record(ActivityCancelled(b.activity_id, b.details))
            return
        if not act.in_flight(self._now):
            return
        failure = Failure("CancelledError", "the activity attempt was cancelled by its worker")
        at = self._retry_at(act, failure)
        self._record(ActivityFailed(b.activity_id, b.attempt, failure, will_retry=at is not None, retry_at_ms=at))

    def _h_act_heartbeat(self, command: Command, b: ActivityHeartbeat) -> None:
        act = self._activity(b.run_id, b.activity_id, b.attempt)
        if act is None or not act.in_flight(self._now):
            return
        act.last_heartbeat_ms = self._now
        if b.details is not None:
            act.heartbeat_details = b.details
            if self._fx is not None:
                self._fx.append(KeepHeartbeat(self.workflow_id, self._now, b))
        if act.cancel_requested and self._fx is not None and self.run is not None:
            self._fx.append(self._cancel_task(act, self.run))

    def _h_child_result(self, command: Command, b: ChildWorkflowResult) -> None:
        run = self.run
        if run is None or run.status != RUNNING or run.run_id != b.run_id:
            return
        ch = run.children.get(b.child_workflow_id)
        if ch is None or ch.closed:
            return
        cid = b.child_workflow_id
        body: EventBody
        if b.outcome == "COMPLETED":
            body = ChildWorkflowCompleted(cid, b.result if b.result is not None else self.registry.converter.to_payload(None))
        elif b.outcome == "CANCELLED":
            body = ChildWorkflowCancelled(cid)
        elif b.outcome == "TIMED_OUT":
            body = ChildWorkflowTimedOut(cid)
        elif b.outcome == "TERMINATED":
            body = ChildWorkflowTerminated(cid, reason=b.failure.message if b.failure else "")
        else:
            body = ChildWorkflowFailed(cid, b.failure or Failure("ChildWorkflowError", f"child {cid} failed"))
        self._record(body)

    def _h_fire(self, command: Command, b: FireTimer) -> None:
        run = self.run
        if run is None or run.status != RUNNING or run.run_id != b.run_id:
            return
        tid = b.timer_id
        if tid in run.timers:
            self._record(TimerFired(tid))
        elif tid.startswith("a/"):
            self._fire_activity_timer(run, tid)
        elif tid == "wf/exec" and run.exec_deadline_ms is not None:
            self._drop_instance()
            self._record(WorkflowTimedOut("EXECUTION"))
        elif tid == "wf/run" and run.run_deadline_ms is not None:
            self._drop_instance()
            self._record(WorkflowTimedOut("RUN"))
        elif tid.startswith("task/"):
            if run.held and tid in (f"task/{run.task_attempt}", "task/now"):
                self._record(MarkerRecorded(MARKER_RESUME, str(run.task_attempt)))

    def _fire_activity_timer(self, run: _Run, tid: str) -> None:
        fx = self._fx
        assert fx is not None
        if tid.endswith("/close"):
            act = run.activities.get(tid[2:-6])
            if act is None or act.closed:
                return
            self._record(ActivityTimedOut(act.activity_id, act.attempt, "SCHEDULE_TO_CLOSE", will_retry=False))
            return
        parts = tid[2:].split("/")
        if len(parts) >= 4 and parts[-2] == "hb":
            aid, n_s, kind, gen_s = "/".join(parts[:-3]), parts[-3], "hb", parts[-1]
        elif len(parts) >= 3:
            aid, n_s, kind, gen_s = "/".join(parts[:-2]), parts[-2], parts[-1], "0"
        else:
            return
        try:
            n, gen = int(n_s), int(gen_s)
        except ValueError:
            return
        act = self._activity(run.run_id, aid, n)
        if act is None:
            return
        now = self._now
        if kind == "retry":
            if act.backoff_until_ms is None:
                return
            if act.cancel_requested:
                fx.append(self._self_cancel_confirm(act, run))
                return
            fx.append(DispatchActivity(self._task(act, run)))
            if act.s2s_ms is not None:
                fx.append(ScheduleTimer(self.workflow_id, run.run_id, f"a/{aid}/{n}/s2s", act.attempt_at_ms + act.s2s_ms))
        elif kind == "s2s":
            if act.started_at_ms is not None or not act.in_flight(now):
                return
            at = self._retry_at(act, None)
            self._record(ActivityTimedOut(aid, n, "SCHEDULE_TO_START", will_retry=at is not None, retry_at_ms=at))
        elif kind == "s2c":
            if act.started_at_ms is None:
                return
            at = self._retry_at(act, None)
            self._record(ActivityTimedOut(aid, n, "START_TO_CLOSE", will_retry=at is not None, retry_at_ms=at))
        elif kind == "hb":
            if act.started_at_ms is None or act.hb_ms is None:
                return
            last = max(act.started_at_ms, act.last_heartbeat_ms or 0)
            if self._resident_since_ms is not None and act.started_at_ms < self._resident_since_ms:
                last = max(last, self._resident_since_ms)  # heartbeats before a reload are unknown
            deadline = last + act.hb_ms
            if now >= deadline:
                at = self._retry_at(act, None)
                self._record(ActivityTimedOut(aid, n, "HEARTBEAT", will_retry=at is not None, retry_at_ms=at))
            else:
                act.hb_gen = gen + 1
                fx.append(ScheduleTimer(self.workflow_id, run.run_id, f"a/{aid}/{n}/hb/{act.hb_gen}", deadline))

    _HANDLERS: dict[type, Callable[..., None]] = {
        StartWorkflow: _h_start,
        SignalWithStart: _h_signal_with_start,
        SignalWorkflow: _h_signal,
        CancelWorkflow: _h_cancel,
        TerminateWorkflow: _h_terminate,
        GetResult: _h_get_result,
        QueryWorkflow: _h_query,
        ActivityTaskStarted: _h_act_started,
        ActivityTaskCompleted: _h_act_completed,
        ActivityTaskFailed: _h_act_failed,
        ActivityTaskCancelled: _h_act_cancelled,
        ActivityHeartbeat: _h_act_heartbeat,
        ChildWorkflowResult: _h_child_result,
        FireTimer: _h_fire,
    }

    # ------------------------------------------------------------------ queries
    def query(self, command: Command) -> Reply:
        """Answer a ``QueryWorkflow`` from the workflow's current state; never appends history."""
        b = command.body
        assert isinstance(b, QueryWorkflow)
        cid, wf = command.command_id, self.workflow_id

        def error(cls: type[BaseException], msg: str) -> Reply:
            return Reply(cid, wf, "ERROR", run_id=self.run_id, failure=Failure(cls.__name__, msg))

        run = self.run
        if run is None:
            return error(WorkflowNotFoundError, f"no workflow with id {wf!r}: nothing to query; check the id")
        defn = self.registry.workflow(run.workflow_type)
        if defn is None:
            return error(QueryError, f"workflow type {run.workflow_type!r} is not registered here: cannot run query {b.query_name!r}")
        hd = defn.queries.get(b.query_name)
        if hd is None:
            known = ", ".join(sorted(defn.queries)) or "none"
            return error(QueryError, f"workflow type {defn.name!r} has no query {b.query_name!r} (its queries: {known})")
        if self.held:
            why = self.load_failure or "a failed workflow task"
            return error(QueryError, f"workflow {wf!r} is held after a task failure ({why}); "
                                     f"queries are answered again once it resumes")
        inst = self.instance
        if inst is None or inst.disposed:
            saved = self.load_failure
            inst = self._rebuild_instance(len(self.history))
            if inst is None:
                failure, self.load_failure = self.load_failure, saved
                return error(QueryError, f"cannot rebuild workflow {wf!r} to answer the query: {failure}")
        if inst.obj is None:
            return error(QueryError, f"workflow {wf!r} has not started running its code yet")
        try:
            value = inst.query(hd.fn, list(b.args), hints_of(hd.fn, skip_self=True))
            payload = self.registry.converter.to_payload(value)
        except Exception as e:
            return error(QueryError, f"query {b.query_name!r} of {wf!r} raised {type(e).__name__}: {e}")
        return Reply(cid, wf, "QUERY", run_id=run.run_id, result=payload)


def _recorded_kind(rec: _Recorded) -> str:
    if rec.kind == "start":
        assert rec.started is not None
        return f"a start of workflow type {rec.started.workflow_type!r}"
    if rec.kind == "signal":
        assert rec.signal is not None
        return f"signal {rec.signal.signal_name!r}"
    if rec.kind == "cancel":
        return "a cancel request"
    if rec.kind == "terminate":
        return "a termination"
    return f"an engine input ({rec.kind})"


# ============================================================================ replay of one run


def replay_into(inst: WorkflowInstance, history: Sequence[Event], start: int, end: int, *,
                extend: bool = False) -> BaseException | None:
    """Replay ``history[start:end]`` (one run segment) into ``inst``; returns a task failure
    (divergence, deadlock, code failure) or None. The last activation is a replay too: the
    history holds every command of every completed step — unless ``extend``: then the last
    activation may go on past the end and ``inst.tail`` holds what it issued there (the
    repair of a step cut short by a crash, see ``WorkflowInstance.activate``)."""
    inst.extend_at_end = extend
    try:
        return _replay_segment(inst, history, start, end)
    finally:
        inst.extend_at_end = False


def _replay_segment(inst: WorkflowInstance, history: Sequence[Event], start: int, end: int) -> BaseException | None:
    held = False
    i = start
    while i < end:
        ev = history[i]
        b = ev.body
        if isinstance(b, WorkflowTaskFailed):
            held = True
            i += 1
            continue
        if isinstance(b, MarkerRecorded) and b.marker_name == MARKER_RESUME:
            held = False
        if not is_instance_input(b) or inst.closed is not None:
            i += 1
            continue
        inst.deliver(ev)
        nxt = history[i + 1] if i + 1 < end else None
        if held or (nxt is not None and isinstance(nxt.body, WorkflowTaskFailed)):
            i += 1
            continue
        j = i + 1
        while j < end and is_command_event(history[j].body):
            j += 1
        act = inst.activate(list(history[i + 1:j]), history[j] if j < end else None, ev.seq + 1)
        if act.failure is not None:
            return act.failure
        i = j
    return None

