"""Operator actions on a running workflow: pause and resume.

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import Command, Event, MarkerRecorded, PauseWorkflow, ResumeWorkflow, WorkflowPaused, WorkflowResumed
from ._instance import MARKER_RESUME
from ._state import Parts, Run
from .effects import DispatchActivity, Effect, ScheduleTimer

if TYPE_CHECKING:
    from ..model import ActivityTask
    from ._state import Act

WORKFLOW_STATE_ERROR = "WorkflowStateError"


class Lifecycle(Parts):
    """The pause/resume room of :class:`~aion.runtime.WorkflowExecution` (see the module docs)."""

    if TYPE_CHECKING:
        def _open_run_or_refuse(self, command: Command, what: str, run_id: str | None) -> Run | None: ...
        def _reply(self, command: Command, kind: str, **kw: object) -> None: ...
        def _refuse(self, command: Command, error: type[BaseException] | str, message: str, *,
                    notify_parent: bool = True) -> None: ...
        def _task(self, act: Act, run: Run) -> ActivityTask: ...
        def _child_start_effects(self, run: Run, cid: str) -> list[Effect]: ...

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

    APPLY = {WorkflowPaused: _on_paused, WorkflowResumed: _on_resumed}
    HANDLERS = {PauseWorkflow: _h_pause, ResumeWorkflow: _h_resume_run}
