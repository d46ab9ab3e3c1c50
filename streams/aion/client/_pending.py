"""What an open workflow waits on, read from its history: pending activities (attempt, last
failure, next retry), pending timers, and a workflow task held by an error in workflow code."""

from __future__ import annotations

from typing import Any, Callable

from ..model import (
    ActivityCancelled,
    ActivityCancelRequested,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ActivityStarted,
    ActivityTimedOut,
    Event,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowTaskFailed,
)


def _failure_line(f: Any) -> str:
    return f"{f.type}: {f.message}" if f.type else f.message


def pending_of(events: list[Event], iso: Callable[[int | None], str | None]) -> dict[str, Any]:
    """``pending_activities``, ``pending_timers`` and ``workflow_task`` of the latest run
    (``events`` in seq order; ``iso`` formats epoch milliseconds)."""
    if not events:
        return {"pending_activities": [], "pending_timers": [], "workflow_task": None}
    run = events[-1].run_id
    activities: dict[str, dict[str, Any]] = {}
    timers: dict[str, dict[str, Any]] = {}
    task_failure: dict[str, Any] | None = None
    for e in (e for e in events if e.run_id == run):
        b = e.body
        if isinstance(b, ActivityScheduled):
            activities[b.activity_id] = {"activity_id": b.activity_id, "activity_type": b.activity_type,
                                         "task_queue": b.task_queue, "state": "SCHEDULED", "attempt": 1,
                                         "last_failure": None, "next_retry": None, "scheduled_at": iso(e.recorded_at_ms)}
        elif isinstance(b, ActivityStarted) and b.activity_id in activities:
            activities[b.activity_id].update(state="STARTED", attempt=b.attempt)
        elif isinstance(b, (ActivityFailed, ActivityTimedOut)) and b.activity_id in activities:
            if not b.will_retry:
                del activities[b.activity_id]
                continue
            why = _failure_line(b.failure) if isinstance(b, ActivityFailed) else f"{b.timeout_type} timeout"
            activities[b.activity_id].update(state="BACKOFF", attempt=b.attempt, last_failure=why,
                                             next_retry=iso(b.retry_at_ms))
        elif isinstance(b, ActivityCancelRequested) and b.activity_id in activities:
            activities[b.activity_id]["state"] = "CANCEL_REQUESTED"
        elif isinstance(b, (ActivityCompleted, ActivityCancelled)):
            activities.pop(b.activity_id, None)
        elif isinstance(b, TimerStarted):
            timers[b.timer_id] = {"timer_id": b.timer_id, "name": b.name or None, "fire_at": iso(b.fire_at_ms)}
        elif isinstance(b, (TimerFired, TimerCancelled)):
            timers.pop(b.timer_id, None)
        if isinstance(b, WorkflowTaskFailed):
            # A deadlock is not retried on the code that deadlocked (aion/runtime/_supervision.py):
            # its next try is when a restarted or newly deployed engine worker holds it.
            deadlock = b.failure.type == "DeadlockError"
            task_failure = {"state": "HELD", "attempt": b.attempt, "error": _failure_line(b.failure),
                            "next_try": None if deadlock else iso(b.retry_at_ms),
                            "failed_at": iso(e.recorded_at_ms)}
        elif task_failure is not None and not isinstance(b, (ActivityStarted, ActivityFailed, ActivityTimedOut,
                                                             ActivityCompleted, TimerFired)):
            task_failure = None  # the code ran on: it issued something after the failure
    return {"pending_activities": list(activities.values()), "pending_timers": list(timers.values()),
            "workflow_task": task_failure}
