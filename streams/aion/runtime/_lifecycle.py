"""Operator actions on a workflow's run: pause, resume and reopen.

``PauseWorkflow`` on a running run records ``WorkflowPaused``. While a run is paused, no
activity attempt and no child start is dispatched: an activity the code schedules, a retry
whose backoff ends and a child it starts are recorded and held. Everything else goes on:
timers fire, signals, activity results of attempts already out and child results are
recorded, and the code runs (it is the dispatches that wait). Cancel and terminate work on a
paused run. ``ResumeWorkflow`` records ``WorkflowResumed`` and dispatches what was held:
activities scheduled while paused (their schedule-to-start window starts at the resume),
retries whose backoff ended during the pause, child starts. Both are refused with
``WorkflowStateError`` when the run is not in the state they change (pausing a paused run,
resuming one that is neither paused nor held), with ``WorkflowNotFoundError`` when no run is open; nothing is
recorded then. A pause is part of the history, so it survives restarts and hand-overs; it ends
with its run (a continue-as-new starts unpaused).

Reopen
------
``ReopenWorkflow`` on a workflow whose latest run ended FAILED or CANCELLED records
``WorkflowReopened(from_seq)`` and the same run goes on. The events from ``from_seq`` to the
reopen are *taken back*: they stay in the log, but the engine state and the code's replay skip
them (``Run.voids``). ``from_seq`` is

- for a run failed by an activity's terminal failure (``ActivityFailed``/``ActivityTimedOut``
  without retry, the input of the step that failed it): that failure;
- for a cancelled run: its cancel request (``WorkflowCancelRequested``), or the close when the
  code cancelled itself;
- otherwise the close (``WorkflowFailed``): the step that issued it runs again, live, from the
  same input (``_rerun_code``); code that fails the same way closes the run the same way —
  reopen after the code is fixed.

At the reopen, every open activity not waiting for a retry gets a new attempt, dispatched at
once, with the attempt count continued (the attempt that was out was cancelled by the close);
timers are armed again with their fire times (a time passed fires at once); the workflow's
own cancellations before ``from_seq`` stand. An activity the code had asked to cancel ends
``ActivityCancelled``; a child the close ended by its parent-close policy ends
``ChildWorkflowTerminated`` (TERMINATE) or ``ChildWorkflowCancelled`` (REQUEST_CANCEL), since it
is not restarted; a run held after task failures is resumed (its task retried). The ids the
taken-back events used are not given out again (``WorkflowInstance.reserve_ids``), and the
commands the run's next close sends carry new ids (``Run.close_tag``), so a parent hears of a
reopened child's new end. Runs that COMPLETED, TIMED_OUT, were TERMINATED or CONTINUED_AS_NEW,
and running runs, are refused with ``WorkflowStateError`` naming the status; nothing is
recorded. A reopened run can fail and be reopened again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import (
    ActivityCancelled,
    ActivityFailed,
    ActivityTimedOut,
    ChildWorkflowCancelled,
    ChildWorkflowTerminated,
    Command,
    Event,
    MarkerRecorded,
    PauseWorkflow,
    ReopenWorkflow,
    ResumeWorkflow,
    WorkflowCancelled,
    WorkflowCancelRequested,
    WorkflowContinuedAsNew,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowReopened,
    WorkflowResumed,
)
from ._activation import is_command_event
from ._instance import MARKER_RESUME
from ._state import RUNNING, Parts, Run
from .effects import DispatchActivity, Effect, ScheduleTimer

if TYPE_CHECKING:
    from ..model import ActivityTask
    from ._instance import WorkflowInstance
    from ._state import Act

WORKFLOW_STATE_ERROR = "WorkflowStateError"
#: The statuses a reopen accepts.
REOPENABLE = ("FAILED", "CANCELLED")


class Lifecycle(Parts):
    """The pause/resume room of :class:`~aion.runtime.WorkflowExecution` (see the module docs)."""

    if TYPE_CHECKING:
        def _open_run_or_refuse(self, command: Command, what: str, run_id: str | None) -> Run | None: ...
        def _reply(self, command: Command, kind: str, **kw: object) -> None: ...
        def _refuse(self, command: Command, error: type[BaseException] | str, message: str, *,
                    notify_parent: bool = True) -> None: ...
        def _task(self, act: Act, run: Run) -> ActivityTask: ...
        def _child_start_effects(self, run: Run, cid: str) -> list[Effect]: ...
        def recovery_effects(self, now_ms: int) -> list[Effect]: ...
        def _rebuild_instance(self, upto: int, *, extend: bool = False) -> WorkflowInstance | None: ...
        def _task_failed(self, failure: BaseException) -> None: ...
        def _start_continued(self, old: Run, can: WorkflowContinuedAsNew) -> None: ...
        load_failure: BaseException | None

    def _h_pause(self, command: Command, b: PauseWorkflow) -> None:
        run = self._open_run_or_refuse(command, "pause it", b.run_id)
        if run is None:
            return
        if run.paused_at_ms is not None:
            self._refuse(command, WORKFLOW_STATE_ERROR,
                         f"workflow {self.workflow_id!r} (run {run.run_id}) is already paused (since "
                         f"{run.paused_at_ms}); resume it first")
            return
        self._reply(command, "ACCEPTED", run_id=run.run_id)
        self._record(WorkflowPaused(b.reason))

    def _h_resume_run(self, command: Command, b: ResumeWorkflow) -> None:
        run = self._open_run_or_refuse(command, "resume it", b.run_id)
        if run is None:
            return
        if run.paused_at_ms is None:
            if run.held:  # held after a task failure: retry its task now (after a fix was deployed)
                self._reply(command, "ACCEPTED", run_id=run.run_id)
                self._record(MarkerRecorded(MARKER_RESUME, str(run.task_attempt)))
                return
            self._refuse(command, WORKFLOW_STATE_ERROR,
                         f"workflow {self.workflow_id!r} (run {run.run_id}) is neither paused nor held after a "
                         f"task failure; nothing to resume")
            return
        self._reply(command, "ACCEPTED", run_id=run.run_id)
        self._record(WorkflowResumed(b.reason))

    def _on_paused(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        run.paused_at_ms = ev.recorded_at_ms

    def _on_resumed(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        paused_at, run.paused_at_ms = run.paused_at_ms, None
        if paused_at is None:
            return
        t = ev.recorded_at_ms
        wf, rid = self.workflow_id, run.run_id
        for act in run.activities.values():
            if act.closed or act.started_at_ms is not None or act.cancel_requested:
                continue
            retry_came = act.backoff_until_ms is not None and paused_at <= act.backoff_until_ms <= t
            if not (act.dispatch_held or retry_came):
                continue
            act.dispatch_held = False
            act.attempt_at_ms = t
            if fx is not None:
                fx.append(DispatchActivity(self._task(act, run)))
                if act.s2s_ms is not None:
                    fx.append(ScheduleTimer(wf, rid, act.timer("s2s"), t + act.s2s_ms))
        for ch in run.children.values():
            if ch.start_held and not ch.closed:
                ch.start_held = False
                if fx is not None:
                    fx.extend(self._child_start_effects(run, ch.child_workflow_id))

    # ------------------------------------------------------------------ reopen
    def _h_reopen(self, command: Command, b: ReopenWorkflow) -> None:
        run = self.run
        if run is None:
            self._refuse(command, "WorkflowNotFoundError",
                         f"no workflow with id {self.workflow_id!r}: cannot reopen it; check the id")
            return
        if b.run_id and b.run_id != run.run_id:
            self._refuse(command, "WorkflowNotFoundError",
                         f"run {b.run_id} of workflow {self.workflow_id!r} is not its latest run ({run.run_id}): "
                         "only the latest run can be reopened")
            return
        if run.status not in REOPENABLE:
            why = "it is running" if run.status == RUNNING else f"it ended {run.status}"
            self._refuse(command, WORKFLOW_STATE_ERROR,
                         f"workflow {self.workflow_id!r} (run {run.run_id}) cannot be reopened: {why}; only a "
                         "FAILED or CANCELLED run can be reopened (start a new run instead)")
            return
        from_seq = self._reopen_from(run)
        self._reply(command, "ACCEPTED", run_id=run.run_id)
        self._record(WorkflowReopened(from_seq, b.reason))
        run = self.run
        assert run is not None
        if not run.held:
            self._rerun_code(run)
        for act in list(run.activities.values()):
            if run.status != RUNNING:
                return
            if not act.closed and act.cancel_requested:  # its cancel went out with the close
                self._record(ActivityCancelled(act.activity_id, None))
        for ch in list(run.children.values()):
            if ch.closed or ch.start_held or run.status != RUNNING:
                continue
            if ch.parent_close_policy == "TERMINATE":
                self._record(ChildWorkflowTerminated(ch.child_workflow_id, reason=(
                    f"terminated by the parent-close policy when run {run.run_id} closed; a reopen does not "
                    "restart children")))
            elif ch.parent_close_policy == "REQUEST_CANCEL":
                self._record(ChildWorkflowCancelled(ch.child_workflow_id))
        if run.status != RUNNING:
            return
        if run.held:  # held after task failures: retry the task now, as a resume does
            self._record(MarkerRecorded(MARKER_RESUME, str(run.task_attempt)))
        if self._fx is not None and run.status == RUNNING:
            self._fx.extend(self.recovery_effects(self._now))

    def _rerun_code(self, run: Run) -> None:
        """Rebuild the code by replay without what the reopen took back. When that was the
        end of a step (the close the code issued after some input), the code runs that step
        again from there, live: what it issues now is recorded (the same close if it fails
        the same way — then deploy fixed code and reopen again)."""
        inst = self._rebuild_instance(len(self.history), extend=True)
        if inst is None:
            failure, self.load_failure = self.load_failure, None
            if failure is not None:
                self._task_failed(failure)
            return
        tail, inst.tail = list(inst.tail), ()
        for body in tail:
            self._record(body)
            if isinstance(body, WorkflowContinuedAsNew):
                self._start_continued(run, body)

    def _reopen_from(self, run: Run) -> int:
        """The first event the reopen of ``run`` takes back (see the module docs)."""
        hist = self.history
        close_i = len(hist) - 1
        while close_i > run.start_index and not (
                isinstance(hist[close_i].body, (WorkflowFailed, WorkflowCancelled)) and not run.voided(hist[close_i].seq)):
            close_i -= 1
        if isinstance(hist[close_i].body, WorkflowCancelled):
            for i in range(close_i - 1, run.start_index, -1):
                body = hist[i].body
                if isinstance(body, WorkflowReopened):
                    break
                if isinstance(body, WorkflowCancelRequested) and not run.voided(hist[i].seq):
                    return hist[i].seq
            return hist[close_i].seq
        j = close_i - 1
        while j > run.start_index and (is_command_event(hist[j].body) or run.voided(hist[j].seq)):
            j -= 1
        cause = hist[j].body
        if isinstance(cause, (ActivityFailed, ActivityTimedOut)) and not cause.will_retry:
            return hist[j].seq
        return hist[close_i].seq

    def _on_reopened(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        if fx is not None:
            # Live: the state still holds what the reopen takes back. Rebuild it from the
            # history, where the reopen is now recorded (that replay applies it, below).
            self._restate()
            return
        b = ev.body
        assert isinstance(b, WorkflowReopened)
        run.voids.append((b.from_seq, ev.seq))
        t = ev.recorded_at_ms
        for act in run.activities.values():
            if act.closed or (act.backoff_until_ms is not None and act.backoff_until_ms > t):
                continue  # (one waiting for its retry keeps it: its retry timer is armed again)
            act.attempt += 1
            act.attempt_at_ms = t
            act.started_at_ms = None
            act.backoff_until_ms = None
            act.last_heartbeat_ms = None
            act.hb_gen = 0
            act.dispatch_held = run.paused_at_ms is not None

    def _restate(self) -> None:
        """Take the engine state a replay of the history gives (without running code)."""
        fresh = type(self).from_history(None, self.workflow_id, self.history, run_code=False,  # type: ignore[attr-defined]
                                        chain_start=self._chain_start)  # type: ignore[attr-defined]
        self._drop_instance()
        self.run = fresh.run
        for name in ("_command_ids", "_last_close", "_child_starts", "_continued_from", "_start_runs"):
            setattr(self, name, getattr(fresh, name))

    APPLY = {WorkflowPaused: _on_paused, WorkflowResumed: _on_resumed, WorkflowReopened: _on_reopened}
    HANDLERS = {PauseWorkflow: _h_pause, ResumeWorkflow: _h_resume_run, ReopenWorkflow: _h_reopen}
