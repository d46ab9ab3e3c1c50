"""WorkflowExecution: one workflow id's history, engine state machine and resident code.

The execution is built from rooms, each a mixin over the shared state of ``_state.py``:

- this module: the step, recording and replay, the run's lifecycle (start, close,
  continue-as-new, timeouts, supervision), timers and markers, and the dispatch of commands
  (``_HANDLERS``) and events (``_APPLY``) to the rooms;
- ``_commands.py``: client commands (start, signal, cancel, terminate, results, queries), their
  de-duplication, refusals, replies and result waiters;
- ``_activities.py``: the activity machine (attempts, retries, timeouts, heartbeats, cancel);
- ``_children.py``: child workflows and the parent-close policy;
- ``_lifecycle.py``: operator actions on a run (pause, resume, reopen);
- ``_updates.py``: updates (validation, acceptance, de-duplication by update id, answers);
- ``_activation.py``: which events are inputs and which are commands, and the replay of a run.

Step semantics
--------------
``handle(command, now_ms)`` turns one command into new events and effects:

1. De-duplication: a command whose ``command_id`` already produced events produces none (see
   ``_commands.py`` for client commands whose id is reused with another body). Stale inputs —
   an activity result for another attempt, a fire of a timer that is not live, anything for a
   closed run — produce nothing. Engine-internal commands (activity reports, timer fires, child
   results) are re-deliveries whenever their id is known.
2. Refusals produce no event and a ``SendReply(ERROR)`` (``_commands.py``).
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

Supervision
-----------
An exception escaping ``run`` (or a signal handler) fails the workflow when it matches the
type's ``FailurePolicy.workflow_failure_types`` (default: ``aion.exceptions.FailureError`` —
``ApplicationError`` and the activity, child, timeout and termination errors the code lets
escape — as in Temporal; ``(Exception,)`` fails on every exception; a ``CancelledError`` ends
it ``CANCELLED``). Anything else
in a step — another exception, a deadlock (no yield within ``deadlock_timeout``), a replay
divergence, a bug of the runtime — discards that activation's commands, records
``WorkflowTaskFailed(attempt, retry_at_ms)`` and *holds* the workflow: inputs keep being
recorded but no code runs. The task timer ``task/<attempt>`` (or a ``resume()`` after a
deploy, or an operator's ``ResumeWorkflow`` on a held run) records ``MarkerRecorded('aion.resume')``
and rebuilds the code by replay; on replay an
input followed by ``WorkflowTaskFailed`` is not activated, inputs while held accumulate, and
the resume marker activates them all — exactly what happened live. After
``task_retry.maximum_attempts`` failures the workflow fails (``WorkflowFailed``). A deadlocked
task is not retried on the code that deadlocked: on that code the fire of ``task/<n>`` records
nothing and only re-arms the timer (``_supervision.py``); it is retried by other code — a
restarted or newly deployed engine worker (``Registry.code_id``) — or at once by a resume.

Continue-as-new appends ``WorkflowContinuedAsNew`` then the new run's ``WorkflowStarted``
(run id ``uuid5`` of the old run id) to the same history; ordinals and timer liveness are per
run segment. The execution timeout spans the chain; the run timeout is per run.

An execution need not hold the whole history: ``from_history(events, chain_start=...)`` takes
the history from the start of the step that began the current run (the engine's cache miss,
``engine/_store.py``: its cost is the current run's, not the chain's) plus the chain's first
``WorkflowStarted``, which alone says what the current run needs of the earlier runs (the
chain's first run id and start, hence the execution deadline, and the start's result waiter).
The events before ``first_seq`` are then read through ``earlier`` when a history page asks
for them. A history whose earlier runs were retired (``engine/_retention.py``: the chain's first
``WorkflowStarted``, then a gap, then the runs from a step that began one) has that shape by
itself: ``from_history`` takes its first event as ``chain_start`` (:func:`split_retired`).
What the runs before the current one recorded is not known to such an execution: a client
command id they used (other than the chain's start and the command whose step began
the current run) is taken as new, as Temporal de-duplicates request ids per run. A retried run
(``retry_policy``) and a cron run (``cron_schedule``) are followed the same way, right after
their close, by a run whose code waits for a first-task backoff (``_successors.py``).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .._search_attributes import apply_upsert
from ..exceptions import VersionNotLoadedError, WorkflowTypeNotFoundError, exception_to_failure
from ..model import (
    CancelWorkflow,
    ChildWorkflowResult,
    ChildWorkflowStarted,
    Command,
    Event,
    EventBody,
    Failure,
    FireTimer,
    MarkerRecorded,
    Payload,
    QueryWorkflow,
    Reply,
    SearchAttributesUpserted,
    SignalSent,
    SignalWorkflow,
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
    reopen_ranges,
    taken_back,
)
from ._run_ids import uuid5_url
from ._activation import is_command_event, is_instance_input, replay_into
from ._activities import Activities
from ._children import Children
from ._lifecycle import Lifecycle
from ._updates import Updates
from ._commands import MAX_WAITERS, ClientCommands
from ._instance import MARKER_CANCEL_CHILD, MARKER_CANCEL_EXTERNAL, MARKER_RESUME, RunContext, WorkflowInstance
from ._state import (
    CLOSE_STATUS, EXEC_TIMER, RESUME_NOW_TIMER, RUN_TIMER, RUNNING, START_TIMER, ActivityTimer, Run, backoff_ms,
    model_retry, task_timer,
)
from ._registry import HistoryLimits, WorkflowCode
from ._successors import successor_of, successor_start
from ._supervision import hold_deadlocked_task
from ._versions import code_of, route_of, version_not_loaded
from .effects import DropTimer, Effect, ScheduleTimer, SendCommand, SendReply

__all__ = ["Step", "WorkflowExecution", "is_instance_input", "is_command_event", "replay_into", "MAX_WAITERS"]

log = logging.getLogger("aion.runtime")

#: Set on the log record of a workflow task failure, so that a logging filter can tell it apart
#: (e.g. raise its level): ``record.aion_error_identifier``, and the attribute Temporal's
#: Python SDK sets on its own, so that a filter written for Temporal works unchanged.
TASK_FAILURE_LOG_EXTRA = {"aion_error_identifier": "WorkflowTaskFailure",
                          "__temporal_error_identifier": "WorkflowTaskFailure"}


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


# ============================================================================ the execution


def split_retired(events: Sequence[Event]) -> tuple[Event | None, Sequence[Event]]:
    """``(chain_start, rest)`` when ``events`` (a history in seq order) is one whose continue-as-new
    chain had its earlier runs retired: its first event a ``WorkflowStarted`` followed by a gap
    in the seqs (the retention keeps the chain's first start and the runs from a step that began
    one, ``engine/_retention.py``); else ``(None, events)``."""
    if len(events) > 1 and events[1].seq > events[0].seq + 1 and isinstance(events[0].body, WorkflowStarted):
        return events[0], events[1:]
    return None, events


class WorkflowExecution(Updates, ClientCommands, Activities, Children, Lifecycle):
    """One workflow id: its history, the engine state and the resident workflow instance.

    Build with :meth:`new` (nothing recorded) or :meth:`from_history` (replay). Not thread-safe:
    the engine feeds one workflow's commands in order from one task.
    """

    def __init__(self, registry: WorkflowCode, workflow_id: str) -> None:
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
        self.run: Run | None = None
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
        self._continued_from: Run | None = None
        #: Seq of the ``WorkflowStarted`` that began the current chain (0 before the first start).
        self._chain_start_seq = 0
        #: That event, when ``history`` starts after it (a history loaded from the current run on).
        self._chain_start: Event | None = None
        #: The events with seq in ``[from_seq, first_seq)`` in seq order, when ``history`` starts
        #: after seq 1 (the engine sets it: its history table holds them).
        self.earlier: Callable[[int, int], Iterable[Event]] | None = None
        #: What a step cut short by a crash still owes (see ``from_history(repair=True)``).
        self._owed: Sequence[EventBody] = ()
        self._owed_close: EventBody | None = None
        self._record_as: str | None = None
        # per step
        self._now = 0
        self._cmd: Command | None = None
        self._new: list[Event] = []
        self._fx: list[Effect] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def new(cls, registry: WorkflowCode, workflow_id: str) -> "WorkflowExecution":
        """An execution with nothing recorded yet (the next command is usually a start)."""
        return cls(registry, workflow_id)

    @classmethod
    def from_history(cls, registry: WorkflowCode, workflow_id: str, events: Sequence[Event], *,
                     run_code: bool = True, repair: bool = False,
                     chain_start: Event | None = None) -> "WorkflowExecution":
        """Rebuild by replaying ``events`` (the whole history, in seq order).

        ``events`` may instead be the history's tail from the start of the step that began the
        current run (gapless, in seq order), with ``chain_start`` the ``WorkflowStarted`` that
        began the chain (see the module docs; :attr:`step_start_seq` and :attr:`chain_start_seq`
        say where both are).
        The engine state, the code's replay and every later step are then those of the whole
        history, and the replay costs the current run only.

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
        if chain_start is None:
            chain_start, events = split_retired(events)
        if chain_start is not None and events and chain_start.seq < events[0].seq:
            ex._seed_chain(chain_start)
        # Events a later reopen took back stay in the history but are never applied (nor
        # their command ids known: a timer fire or a signal taken back may come again).
        voids = reopen_ranges(events)
        for ev in events:
            ex.history.append(ev)
            ex.next_seq = ev.seq + 1
            if voids and taken_back(ev.seq, voids):
                continue
            ex._apply(ev, None)
        run = ex.run
        if run_code and run is not None and run.status == RUNNING and not run.held and run.first_task_at_ms is None:
            inst = ex._rebuild_instance(len(ex.history), extend=repair)
            if inst is not None and inst.tail:
                ex._owed = list(inst.tail)
                inst.tail = ()
        if repair and ex.history:
            last = ex.history[-1].body
            if isinstance(last, WorkflowContinuedAsNew) or (
                    isinstance(last, WorkflowTaskFailed) and last.retry_at_ms is None
                    and run is not None and run.status == RUNNING) or (
                    type(last) in CLOSE_STATUS and run is not None and run.successor is not None):
                ex._owed_close = last
        return ex

    def _seed_chain(self, ev: Event) -> None:
        """What the chain's first ``WorkflowStarted`` (``ev``, before the events held) gives the
        runs after it: as :meth:`_apply_started` takes it, without a run."""
        b = ev.body
        if not isinstance(b, WorkflowStarted):
            raise ValueError(f"workflow {self.workflow_id!r}: the chain start (seq {ev.seq}) is a "
                             f"{type(b).__name__}, not a WorkflowStarted")
        self._chain_start = ev
        self._chain_start_seq = ev.seq
        self._first_run_id = ev.run_id
        self._chain_start_ms = ev.recorded_at_ms
        self._exec_deadline_ms = ev.recorded_at_ms + b.execution_timeout_ms if b.execution_timeout_ms else None
        if ev.command_id:
            self._start_runs[ev.command_id] = ev.run_id
            if b.reply_to:
                self._waiters[(ev.command_id, b.reply_to)] = None

    def _is_chain_start(self, command_id: str) -> bool:
        """Whether ``command_id`` began the chain in an event before the ones held."""
        cs = self._chain_start
        return cs is not None and cs.command_id == command_id and command_id not in self._command_ids

    # ------------------------------------------------------------------ properties
    @property
    def first_seq(self) -> int:
        """The seq of the first event held in :attr:`history` (1 unless loaded from a later run)."""
        return self.history[0].seq if self.history else self.next_seq

    @property
    def chain_start_seq(self) -> int:
        """The seq of the ``WorkflowStarted`` that began the current chain (0: none yet)."""
        return self._chain_start_seq

    @property
    def step_start_seq(self) -> int:
        """Where a cache miss loads from: the first event of the step that began the current
        run (its ``WorkflowStarted``, or the step's input and the previous run's close before
        it). 0 before the first start."""
        run = self.run
        if run is None:
            return 0
        h, i = self.history, run.start_index
        cid = h[i].command_id
        while cid and i > 0 and h[i - 1].command_id == cid:
            i -= 1
        return h[i].seq

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
        return task_timer(run.task_attempt)

    @property
    def search_attributes(self) -> dict[str, str]:
        """The latest run's search attributes as stored (text; see :attr:`search_attribute_types`)."""
        return dict(self.run.search_attributes) if self.run is not None else {}

    @property
    def search_attribute_types(self) -> dict[str, str]:
        """The types of the latest run's typed search attributes."""
        return dict(self.run.search_attribute_types) if self.run is not None else {}

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
            elif command.command_id in self._command_ids or self._is_chain_start(command.command_id):
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
        owed, self._owed = self._owed, ()
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
            elif run.successor is not None and run.status != RUNNING:
                self._start_successor(run)
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
                                   FireTimer(run.run_id, RESUME_NOW_TIMER, now_ms)), now_ms)

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
            out.append(ScheduleTimer(wf, rid, EXEC_TIMER, run.exec_deadline_ms))
        if run.run_deadline_ms is not None:
            out.append(ScheduleTimer(wf, rid, RUN_TIMER, run.run_deadline_ms))
        if run.held and run.task_retry_at_ms is not None:
            out.append(ScheduleTimer(wf, rid, task_timer(run.task_attempt), run.task_retry_at_ms))
        if run.first_task_at_ms is not None:
            out.append(ScheduleTimer(wf, rid, START_TIMER, run.first_task_at_ms))
        out.extend(self._activity_recovery(run, now_ms))
        out.extend(self._child_recovery(run))
        return out

    # ------------------------------------------------------------------ recording
    def _record(self, body: EventBody, run_id: str | None = None) -> Event:
        assert self._cmd is not None
        rid = run_id if run_id is not None else (self.run.run_id if self.run is not None else "")
        ev = Event(self.workflow_id, self.next_seq, rid, self._now, body, self._record_as or self._cmd.command_id)
        self.next_seq += 1
        self.history.append(ev)
        self._new.append(ev)
        before = self.run
        self._apply(ev, self._fx)
        if is_instance_input(body):
            self._feed(ev)
        elif (before is not None and before is self.run and before.successor is not None
              and type(body) in CLOSE_STATUS):
            self._start_successor(before)  # a retry or the next cron run (_successors.py)
        return ev

    def _feed(self, ev: Event) -> None:
        """Deliver a just-recorded input to the code and record the commands it issues."""
        run = self.run
        if run is None or run.status != RUNNING or run.held or run.first_task_at_ms is not None:
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
        model = model_retry(policy)
        exhausted = bool(model.maximum_attempts) and attempt >= model.maximum_attempts
        exhausted = exhausted and not isinstance(failure, VersionNotLoadedError)  # waits for its build
        retry_at = None if exhausted else self._now + backoff_ms(model, attempt)
        f = exception_to_failure(failure, self.registry.converter)
        log.warning("workflow %s (run %s): task failed (attempt %d)%s: %s", self.workflow_id, run.run_id,
                    attempt, "" if exhausted else f", held until retry at {retry_at}", failure,
                    extra=TASK_FAILURE_LOG_EXTRA)
        self._record(WorkflowTaskFailed(failure=f, attempt=attempt, retry_at_ms=retry_at))
        if exhausted:
            self._record(WorkflowFailed(f))

    def _start_continued(self, old: Run, can: WorkflowContinuedAsNew) -> None:
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
                search_attribute_types=dict(old.search_attribute_types),
                code_version=route_of(self.registry, can.workflow_type)[0],  # the routed build
                attempt=1,
                # A cron or retrying workflow keeps its options across continue-as-new.
                retry_policy=st.retry_policy,
                cron_schedule=st.cron_schedule,
                memo=dict(st.memo),
                last_completion_result=st.last_completion_result,
            ),
            run_id=can.new_run_id,
        )

    def _start_successor(self, old: Run) -> None:
        """Record the run that follows ``old`` by its retry policy or cron schedule."""
        assert old.successor is not None
        initiator, wait = old.successor
        st = old.started
        new_run_id = uuid5_url(f"aion:{self.workflow_id}:{old.run_id}:{initiator.lower()}")
        log.info("workflow %s: run %s closed %s; run %s follows (%s) in %d ms", self.workflow_id, old.run_id,
                 old.status, new_run_id, initiator, wait)
        self._record(successor_start(st, old.run_id, old.close_body, initiator, wait,
                                     search_attributes=old.search_attributes,
                                     search_attribute_types=old.search_attribute_types,
                                     code_version=route_of(self.registry, st.workflow_type)[0]),
                     run_id=new_run_id)

    # ------------------------------------------------------------------ the instance
    def _drop_instance(self) -> None:
        if self.instance is not None:
            self.instance.dispose()
            self.instance = None

    def _run_context(self, run: Run) -> RunContext:
        return RunContext(
            workflow_id=self.workflow_id,
            run_id=run.run_id,
            first_run_id=self._first_run_id,
            chain_start_ms=self._chain_start_ms,
            run_start_seq=run.start_seq,
            started=run.started,
            run_start_ms=run.started_at_ms,
            continue_as_new_after=self.registry.continue_as_new_suggested_after,
            run_bytes_until=functools.partial(self._bytes_between, run.start_seq),
            continue_as_new_after_bytes=self._limits().warn_bytes,
        )

    def _limits(self) -> Any:
        return getattr(self.registry, "history_limits", None) or HistoryLimits()

    def _bytes_between(self, first_seq: int, last_seq: int) -> int:
        """Payload bytes of the events with seq in [first_seq, last_seq].

        Counted lazily (``_cum_bytes[i]``: bytes of ``history[:i + 1]``), each event once: a
        replay for reading only (``aion rebuild``) never pays for it."""
        cum = self._cum_bytes
        base = self.first_seq  # history[i] has seq base + i
        last = min(last_seq - base + 1, len(self.history))
        first = max(first_seq - base, 0)
        if len(cum) < last:
            total = cum[-1] if cum else 0
            for ev in self.history[len(cum):last]:
                total += payload_size(ev.body)
                cum.append(total)
        if last <= first:
            return 0
        return cum[last - 1] - (cum[first - 1] if first >= 1 else 0)

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
        code = code_of(self.registry, run.started)  # the run's build (_versions.py)
        if code is None:
            self.load_failure = version_not_loaded(self.registry, self.workflow_id, run.run_id, run.started)
            return None
        defn = code.workflow(run.workflow_type)
        if defn is None:
            self.load_failure = WorkflowTypeNotFoundError(
                f"workflow type {run.workflow_type!r} of {self.workflow_id!r} is not registered with this "
                f"engine: deploy code that registers it; the workflow is held until then"
            )
            return None
        inst = WorkflowInstance(defn, self._run_context(run), self.registry.converter,
                                code.policy_for(run.workflow_type), code)
        failure = replay_into(inst, self.history, run.start_index, upto, extend=extend,
                              voided=run.voided if run.voids else None)
        if failure is not None:
            inst.dispose()
            self.load_failure = failure
            return None
        self.instance = inst
        return inst

    # ------------------------------------------------------------------ state (+ effects when live)
    def _apply(self, ev: Event, fx: list[Effect] | None) -> None:
        """Apply ``ev`` to the engine state; live (``fx`` is a list), append its effects. The
        rooms' and this class's ``_on_*`` methods, by the event's type (``_APPLY``)."""
        b = ev.body
        if ev.command_id and ev.command_id not in self._command_ids:
            self._command_ids[ev.command_id] = len(self.history) - 1
        run = self.run
        if run is not None and run.resume_pending and not isinstance(b, WorkflowTaskFailed):
            run.resume_pending = False
            run.task_attempt = 0
        if isinstance(b, WorkflowStarted):
            self._apply_started(ev, b, fx)
            return
        if run is None:
            return
        apply = self._APPLY.get(type(b))
        if apply is not None:
            apply(self, ev, run, fx)

    def _on_timer_started(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        b = ev.body
        assert isinstance(b, TimerStarted)
        run.timers[b.timer_id] = b.fire_at_ms
        if fx is not None:
            fx.append(ScheduleTimer(self.workflow_id, run.run_id, b.timer_id, b.fire_at_ms))

    def _on_timer_fired(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        run.timers.pop(ev.body.timer_id, None)  # type: ignore[union-attr]

    def _on_timer_cancelled(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        tid = ev.body.timer_id  # type: ignore[union-attr]
        if run.timers.pop(tid, None) is not None and fx is not None:
            fx.append(DropTimer(self.workflow_id, run.run_id, tid))

    def _on_signal_sent(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        b = ev.body
        assert isinstance(b, SignalSent)
        if fx is not None:
            fx.append(SendCommand(Command(
                command_id=b.signal_id, workflow_id=b.target_workflow_id, sent_at_ms=ev.recorded_at_ms,
                body=SignalWorkflow(b.signal_name, list(b.args), signal_id=b.signal_id))))

    def _on_marker(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        b = ev.body
        assert isinstance(b, MarkerRecorded)
        if b.marker_name == MARKER_CANCEL_CHILD:
            self._on_cancel_child_marker(b, run, ev.recorded_at_ms, fx)
        elif b.marker_name == MARKER_CANCEL_EXTERNAL and fx is not None:
            # The seq makes the command id unique per request and the same on a re-run.
            target_run = None if b.value is None else self.registry.converter.from_payload(b.value, str)
            fx.append(SendCommand(Command(
                command_id=f"{self.workflow_id}:{run.run_id}:cancel-external:{ev.seq}", workflow_id=b.marker_id,
                sent_at_ms=ev.recorded_at_ms,
                body=CancelWorkflow(reason=f"cancellation requested by workflow {self.workflow_id!r}",
                                    run_id=target_run))))
        elif b.marker_name == MARKER_RESUME:
            run.held = False
            run.resume_pending = True
            run.task_retry_at_ms = None
            run.first_task_at_ms = None  # a delayed first task starts here too

    def _on_search_attributes(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        b = ev.body
        assert isinstance(b, SearchAttributesUpserted)
        apply_upsert(run.search_attributes, run.search_attribute_types, b.attributes, b.types, b.unset)

    def _on_workflow_cancel_requested(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        run.cancel_requested = True

    def _on_task_failed(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        b = ev.body
        assert isinstance(b, WorkflowTaskFailed)
        run.held = True
        run.resume_pending = False
        run.task_attempt = b.attempt
        run.task_retry_at_ms = b.retry_at_ms
        if fx is not None and b.retry_at_ms is not None:
            fx.append(ScheduleTimer(self.workflow_id, run.run_id, task_timer(b.attempt), b.retry_at_ms))

    def _apply_started(self, ev: Event, b: WorkflowStarted, fx: list[Effect] | None) -> None:
        t = ev.recorded_at_ms
        prev = self.run
        if prev is not None and prev.status == RUNNING:  # a history that never closed it: treat as closed
            prev.status = "TERMINATED"
        run = Run(ev.run_id, b, ev.seq, len(self.history) - 1, t,
                   search_attributes=dict(b.search_attributes),
                   search_attribute_types=dict(b.search_attribute_types))
        if b.previous_run_id is None or (self.run is None and self._chain_start is None):
            self._chain_start_seq = ev.seq
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
        if b.first_task_backoff_ms > 0:
            run.first_task_at_ms = t + b.first_task_backoff_ms
        if fx is not None:
            if run.exec_deadline_ms is not None:
                fx.append(ScheduleTimer(self.workflow_id, run.run_id, EXEC_TIMER, run.exec_deadline_ms))
            if run.run_deadline_ms is not None:
                fx.append(ScheduleTimer(self.workflow_id, run.run_id, RUN_TIMER, run.run_deadline_ms))
            if run.first_task_at_ms is not None:
                fx.append(ScheduleTimer(self.workflow_id, run.run_id, START_TIMER, run.first_task_at_ms))

    def _on_close(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        """A closing event (or ``WorkflowContinuedAsNew``): open activities end, timers go,
        children get their parent-close policy, the parent its result, waiters theirs."""
        if run.status != RUNNING:
            return
        b = ev.body
        status = CLOSE_STATUS[type(b)]
        run.status = status
        run.close_body = b
        wf, rid, t = self.workflow_id, run.run_id, ev.recorded_at_ms
        self._close_activities(run, t, fx)
        if fx is not None:
            for tid in run.timers:
                fx.append(DropTimer(wf, rid, tid))
            if run.exec_deadline_ms is not None:
                fx.append(DropTimer(wf, rid, EXEC_TIMER))
            if run.run_deadline_ms is not None:
                fx.append(DropTimer(wf, rid, RUN_TIMER))
            if run.held and run.task_retry_at_ms is not None:
                fx.append(DropTimer(wf, rid, task_timer(run.task_attempt)))
            if run.first_task_at_ms is not None:
                fx.append(DropTimer(wf, rid, START_TIMER))
        run.first_task_at_ms = None
        run.timers.clear()
        self._close_children(run, status, t)
        self._close_updates(run, status, fx)
        # A retry or the next cron run follows: the parent and the waiters wait for that one.
        run.successor = successor_of(run.started, b, status, t, run.exec_deadline_ms)
        if run.successor is not None:
            if fx is not None:
                fx.extend(SendCommand(c) for c in run.close_commands)
            return
        if status != "CONTINUED_AS_NEW":
            result, failure = self._outcome(b, status)
            self._last_close = (rid, status, result, failure)
            st = run.started
            if st.parent_workflow_id:
                run.close_commands.append(Command(
                    f"{wf}:{rid}:result-to-parent{run.close_tag}", st.parent_workflow_id, t,
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

    # ------------------------------------------------------------------ timer fires
    def _h_fire(self, command: Command, b: FireTimer) -> None:
        run = self.run
        if run is None or run.status != RUNNING or run.run_id != b.run_id:
            return
        tid = b.timer_id
        if tid in run.timers:
            if 0 < b.fire_at_ms < run.timers[tid]:
                # A fire of an earlier arming of this timer id (a row a worker left behind when
                # its transaction never committed): the timer is due later. Never fire early.
                return
            self._record(TimerFired(tid))
        elif (timer := ActivityTimer.parse(tid)) is not None:
            self._fire_activity_timer(run, timer)
        elif tid == EXEC_TIMER and run.exec_deadline_ms is not None:
            self._drop_instance()
            self._record(WorkflowTimedOut("EXECUTION"))
        elif tid == RUN_TIMER and run.run_deadline_ms is not None:
            self._drop_instance()
            self._record(WorkflowTimedOut("RUN"))
        elif tid == START_TIMER and run.first_task_at_ms is not None:
            self._record(MarkerRecorded(MARKER_RESUME, "start"))  # the delayed first task runs
        elif run.held and tid in (task_timer(run.task_attempt), RESUME_NOW_TIMER):
            if tid == RESUME_NOW_TIMER or not hold_deadlocked_task(self, run):  # (_supervision.py)
                self._record(MarkerRecorded(MARKER_RESUME, str(run.task_attempt)))

    #: Command handlers by body type: the rooms' and the timer fire.
    _HANDLERS: dict[type, Callable[..., None]] = {
        **ClientCommands.HANDLERS, **Activities.HANDLERS, **Children.HANDLERS, **Lifecycle.HANDLERS,
        **Updates.HANDLERS,
        FireTimer: _h_fire,
    }
    #: How each event type changes the engine state (``WorkflowStarted`` aside: ``_apply``).
    _APPLY: dict[type, Callable[..., None]] = {
        **Activities.APPLY, **Children.APPLY, **Lifecycle.APPLY, **Updates.APPLY,
        TimerStarted: _on_timer_started,
        TimerFired: _on_timer_fired,
        TimerCancelled: _on_timer_cancelled,
        SignalSent: _on_signal_sent,
        MarkerRecorded: _on_marker,
        SearchAttributesUpserted: _on_search_attributes,
        WorkflowCancelRequested: _on_workflow_cancel_requested,
        WorkflowTaskFailed: _on_task_failed,
        **dict.fromkeys(CLOSE_STATUS, _on_close),
    }



