"""The activity machine of a workflow execution: attempts, retries, timeouts, heartbeats, cancel.

Attempt ``n`` of activity ``a`` is dispatched at schedule time (n = 1) or when its retry timer
``a/<a>/<n>/retry`` fires. Durable timers (all through ``ScheduleTimer``; ids in ``_state.py``):
``a/<a>/close`` (schedule-to-close, armed at schedule), ``a/<a>/<n>/s2s`` (schedule-to-start,
armed at dispatch), ``a/<a>/<n>/s2c`` (start-to-close, armed on ``ActivityStarted``) and
``a/<a>/<n>/hb/<g>`` (heartbeat, armed on start; when it fires after a newer heartbeat it is
re-armed with generation ``g+1`` at the last heartbeat + timeout). A fire is acted on only if
it still applies (same attempt, still open, still not started ...). Failures and timeouts are
retried per the ``RetryPolicy`` (``ActivityFailed/TimedOut(will_retry=True, retry_at_ms)``);
non-retryable types, exhausted attempts, a passed schedule-to-close deadline, or a cancel
request end the activity. Heartbeats are not recorded (only their effect on the timer); their
last details are kept by the engine beside the history (``KeepHeartbeat``/``DropHeartbeat``)
and given back on a load (:meth:`Activities.restore_heartbeats`).

Cancellation of an activity records ``ActivityCancelRequested`` and sends
``DispatchActivityCancel`` to the running attempt; an activity waiting for its retry timer is
confirmed cancelled by a self-addressed ``ActivityTaskCancelled`` command (so the
confirmation is its own step, never an event inside another activation).
"""

from __future__ import annotations

from typing import Callable

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
    Command,
    Event,
    Failure,
)
from ._state import RUNNING, Act, ActivityTimer, Parts, Run, backoff_ms
from .effects import (
    DispatchActivity,
    DispatchActivityCancel,
    DropHeartbeat,
    DropTimer,
    Effect,
    KeepHeartbeat,
    ScheduleTimer,
    SendCommand,
)


class Activities(Parts):
    """The activity room of :class:`~aion.runtime.WorkflowExecution` (see the module docs)."""

    # ------------------------------------------------------------------ heartbeats kept by the engine
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

    # ------------------------------------------------------------------ state (+ effects when live)
    def _on_scheduled(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        b, t = ev.body, ev.recorded_at_ms
        assert isinstance(b, ActivityScheduled)
        act = Act(b.activity_id, b.activity_type, b.input, b.task_queue, b.retry_policy,
                  b.timeouts.schedule_to_close_ms, b.timeouts.schedule_to_start_ms,
                  b.timeouts.start_to_close_ms, b.timeouts.heartbeat_ms, t, attempt=1, attempt_at_ms=t)
        run.activities[b.activity_id] = act
        act.dispatch_held = run.paused_at_ms is not None  # dispatched at the resume (_lifecycle.py)
        if fx is not None:
            wf, rid = self.workflow_id, run.run_id
            if not act.dispatch_held:
                fx.append(DispatchActivity(self._task(act, run)))
            if act.s2close_ms is not None:
                fx.append(ScheduleTimer(wf, rid, act.timer("close"), t + act.s2close_ms))
            if act.s2s_ms is not None and not act.dispatch_held:
                fx.append(ScheduleTimer(wf, rid, act.timer("s2s"), t + act.s2s_ms))

    def _on_started(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        b, t = ev.body, ev.recorded_at_ms
        assert isinstance(b, ActivityStarted)
        act = run.activities.get(b.activity_id)
        if act is None:
            return
        act.started_at_ms = t
        act.backoff_until_ms = None
        act.hb_gen = 0
        if fx is not None:
            wf, rid = self.workflow_id, run.run_id
            if act.s2s_ms is not None:
                fx.append(DropTimer(wf, rid, act.timer("s2s")))
            if act.s2c_ms is not None:
                fx.append(ScheduleTimer(wf, rid, act.timer("s2c"), t + act.s2c_ms))
            if act.hb_ms is not None:
                fx.append(ScheduleTimer(wf, rid, act.timer("hb", gen=0), t + act.hb_ms))

    def _on_ended(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        """``ActivityCompleted`` / ``ActivityCancelled``."""
        act = run.activities.get(ev.body.activity_id)  # type: ignore[union-attr]
        if act is not None and not act.closed:
            if fx is not None:
                self._drop_activity_timers(act, run, fx)
            self._close_activity(act, fx)

    def _on_failed(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        """``ActivityFailed`` / ``ActivityTimedOut``: retried (its backoff timer) or closed."""
        b, t = ev.body, ev.recorded_at_ms
        assert isinstance(b, (ActivityFailed, ActivityTimedOut))
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
                fx.append(ScheduleTimer(self.workflow_id, run.run_id, act.timer("retry"), b.retry_at_ms))
        else:
            self._close_activity(act, fx)

    def _on_cancel_requested(self, ev: Event, run: Run, fx: list[Effect] | None) -> None:
        b = ev.body
        assert isinstance(b, ActivityCancelRequested)
        act = run.activities.get(b.activity_id)
        if act is None or act.closed:
            return
        act.cancel_requested = True
        if fx is not None:
            if act.in_flight(ev.recorded_at_ms):
                fx.append(self._cancel_task(act, run))
            else:
                fx.append(DropTimer(self.workflow_id, run.run_id, act.timer("retry")))
                fx.append(self._self_cancel_confirm(act, run))

    def _close_activities(self, run: Run, t: int, fx: list[Effect] | None) -> None:
        """The run closed: every open activity ends (its running attempt is told to cancel)."""
        for act in run.activities.values():
            if act.closed:
                continue
            if fx is not None:
                self._drop_activity_timers(act, run, fx)
                if act.in_flight(t) and not act.cancel_requested:  # (a requested one was sent already)
                    fx.append(self._cancel_task(act, run))
            self._close_activity(act, fx)

    def _activity_recovery(self, run: Run, now_ms: int) -> list[Effect]:
        """The open activities' share of ``recovery_effects``: their timers, their undelivered
        attempts and cancel requests."""
        out: list[Effect] = []
        wf, rid = self.workflow_id, run.run_id
        for act in run.activities.values():
            if act.closed:
                continue
            if act.s2close_ms is not None:
                out.append(ScheduleTimer(wf, rid, act.timer("close"), act.scheduled_at_ms + act.s2close_ms))
            if act.backoff_until_ms is not None and now_ms < act.backoff_until_ms:
                out.append(ScheduleTimer(wf, rid, act.timer("retry"), act.backoff_until_ms))
                continue
            if act.cancel_requested:
                out.append(self._cancel_task(act, run))
            if act.started_at_ms is None and run.paused_at_ms is not None:
                continue  # held by the pause
            if act.started_at_ms is None:
                out.append(DispatchActivity(self._task(act, run)))
                if act.s2s_ms is not None:
                    out.append(ScheduleTimer(wf, rid, act.timer("s2s"), act.attempt_at_ms + act.s2s_ms))
            else:
                if act.s2c_ms is not None:
                    out.append(ScheduleTimer(wf, rid, act.timer("s2c"), act.started_at_ms + act.s2c_ms))
                if act.hb_ms is not None:
                    out.append(ScheduleTimer(wf, rid, act.timer("hb"), max(now_ms, act.started_at_ms) + act.hb_ms))
        return out

    # ------------------------------------------------------------------ effect builders
    def _task(self, act: Act, run: Run) -> ActivityTask:
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

    def _cancel_task(self, act: Act, run: Run) -> DispatchActivityCancel:
        return DispatchActivityCancel(
            CancelActivityTask(self.workflow_id, run.run_id, act.activity_id, act.attempt), act.task_queue)

    def _self_cancel_confirm(self, act: Act, run: Run) -> SendCommand:
        return SendCommand(Command(
            f"{self.workflow_id}:{run.run_id}:cancel-confirm:{act.activity_id}:{act.attempt}",
            self.workflow_id, self._now,
            ActivityTaskCancelled(run.run_id, act.activity_id, act.attempt)))

    def _close_activity(self, act: Act, fx: list[Effect] | None) -> None:
        act.closed = True
        if fx is not None and act.heartbeat_details is not None:
            fx.append(DropHeartbeat(self.workflow_id, act.activity_id))

    def _drop_activity_timers(self, act: Act, run: Run, fx: list[Effect], keep_close: bool = False) -> None:
        wf, rid = self.workflow_id, run.run_id
        if act.s2close_ms is not None and not keep_close:
            fx.append(DropTimer(wf, rid, act.timer("close")))
        if act.backoff_until_ms is not None:
            fx.append(DropTimer(wf, rid, act.timer("retry")))
        if act.started_at_ms is None:
            if act.s2s_ms is not None:
                fx.append(DropTimer(wf, rid, act.timer("s2s")))
        else:
            if act.s2c_ms is not None:
                fx.append(DropTimer(wf, rid, act.timer("s2c")))
            if act.hb_ms is not None:
                fx.append(DropTimer(wf, rid, act.timer("hb")))

    # ------------------------------------------------------------------ the worker's reports
    def _activity(self, run_id: str, activity_id: str, attempt: int) -> Act | None:
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
        if act.closed or act.attempt != attempt:
            return None
        return act

    def _retry_at(self, act: Act, failure: Failure | None) -> int | None:
        if act.cancel_requested:
            return None
        p = act.retry
        if failure is not None and (failure.non_retryable or failure.type in p.non_retryable_error_types):
            return None
        if p.maximum_attempts and act.attempt >= p.maximum_attempts:
            return None
        at = self._now + backoff_ms(p, act.attempt)
        if act.s2close_ms is not None and at >= act.scheduled_at_ms + act.s2close_ms:
            return None
        return at

    def _h_act_started(self, command: Command, b: ActivityTaskStarted) -> None:
        act = self._activity(b.run_id, b.activity_id, b.attempt)
        if act is None or act.started_at_ms is not None or not act.in_flight(self._now):
            return
        self._record(ActivityStarted(b.activity_id, b.attempt, worker=b.worker))

    def _started_with_outcome(self, act: Act, worker: str) -> None:
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

    # ------------------------------------------------------------------ its timers
    def _fire_activity_timer(self, run: Run, timer: ActivityTimer) -> None:
        fx = self._fx
        assert fx is not None
        if timer.kind == "close":
            act = run.activities.get(timer.activity_id)
            if act is None or act.closed:
                return
            self._record(ActivityTimedOut(act.activity_id, act.attempt, "SCHEDULE_TO_CLOSE", will_retry=False))
            return
        aid, n = timer.activity_id, timer.attempt
        act = self._activity(run.run_id, aid, n)
        if act is None:
            return
        now = self._now
        if timer.kind == "retry":
            if act.backoff_until_ms is None:
                return
            if act.cancel_requested:
                fx.append(self._self_cancel_confirm(act, run))
                return
            if run.paused_at_ms is not None:
                return  # the resume dispatches it (its backoff ended during the pause)
            fx.append(DispatchActivity(self._task(act, run)))
            if act.s2s_ms is not None:
                fx.append(ScheduleTimer(self.workflow_id, run.run_id, act.timer("s2s"), act.attempt_at_ms + act.s2s_ms))
        elif timer.kind == "s2s":
            if act.started_at_ms is not None or not act.in_flight(now):
                return
            at = self._retry_at(act, None)
            self._record(ActivityTimedOut(aid, n, "SCHEDULE_TO_START", will_retry=at is not None, retry_at_ms=at))
        elif timer.kind == "s2c":
            if act.started_at_ms is None:
                return
            at = self._retry_at(act, None)
            self._record(ActivityTimedOut(aid, n, "START_TO_CLOSE", will_retry=at is not None, retry_at_ms=at))
        elif timer.kind == "hb":
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
                act.hb_gen = timer.gen + 1
                fx.append(ScheduleTimer(self.workflow_id, run.run_id, act.timer("hb"), deadline))

    #: Events this room applies (``WorkflowExecution._apply`` dispatches on the event's type).
    APPLY = {
        ActivityScheduled: _on_scheduled,
        ActivityStarted: _on_started,
        ActivityCompleted: _on_ended,
        ActivityCancelled: _on_ended,
        ActivityFailed: _on_failed,
        ActivityTimedOut: _on_failed,
        ActivityCancelRequested: _on_cancel_requested,
    }
    HANDLERS = {
        ActivityTaskStarted: _h_act_started,
        ActivityTaskCompleted: _h_act_completed,
        ActivityTaskFailed: _h_act_failed,
        ActivityTaskCancelled: _h_act_cancelled,
        ActivityHeartbeat: _h_act_heartbeat,
    }
