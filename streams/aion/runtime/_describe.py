"""Human-readable command descriptions and the identity comparison used by replay matching."""

from __future__ import annotations

from typing import Any

from ..model import (
    ActivityCancelRequested,
    ActivityScheduled,
    ChildWorkflowStarted,
    MarkerRecorded,
    SignalSent,
    TimerCancelled,
    TimerStarted,
    WorkflowUpdateCompleted,
)

__all__ = ["describe", "same_command", "identity"]


def identity(body: Any) -> tuple[Any, ...]:
    """The fields that make two commands "the same command" (see ``_instance`` docs)."""
    if isinstance(body, ActivityScheduled):
        return ("ActivityScheduled", body.activity_id, body.activity_type)
    if isinstance(body, ActivityCancelRequested):
        return ("ActivityCancelRequested", body.activity_id)
    if isinstance(body, TimerStarted):
        return ("TimerStarted", body.timer_id, body.duration_ms)
    if isinstance(body, TimerCancelled):
        return ("TimerCancelled", body.timer_id)
    if isinstance(body, ChildWorkflowStarted):
        return ("ChildWorkflowStarted", body.child_workflow_id, body.workflow_type)
    if isinstance(body, SignalSent):
        return ("SignalSent", body.signal_id, body.target_workflow_id, body.signal_name)
    if isinstance(body, MarkerRecorded):
        return ("MarkerRecorded", body.marker_name, body.marker_id)
    if isinstance(body, WorkflowUpdateCompleted):
        return ("WorkflowUpdateCompleted", body.update_id)
    return (type(body).__name__,)


def same_command(recorded: Any, issued: Any) -> bool:
    return identity(recorded) == identity(issued)


_FIELDS = {
    "ActivityScheduled": ("activity_id", "activity_type"),
    "ActivityCancelRequested": ("activity_id",),
    "TimerStarted": ("timer_id", "duration_ms", "name"),
    "TimerCancelled": ("timer_id",),
    "TimerFired": ("timer_id",),
    "ChildWorkflowStarted": ("child_workflow_id", "workflow_type"),
    "SignalSent": ("signal_id", "target_workflow_id", "signal_name"),
    "SignalReceived": ("signal_name",),
    "MarkerRecorded": ("marker_name", "marker_id"),
    "ActivityCompleted": ("activity_id", "attempt"),
    "ActivityFailed": ("activity_id", "attempt"),
    "ActivityTimedOut": ("activity_id", "attempt", "timeout_type"),
    "ActivityCancelled": ("activity_id",),
    "ActivityStarted": ("activity_id", "attempt"),
    "WorkflowStarted": ("workflow_type",),
    "WorkflowUpdateAccepted": ("update_id", "update_name"),
    "WorkflowUpdateCompleted": ("update_id",),
}


def describe(body: Any) -> str:
    """``ActivityScheduled(activity_id='2', activity_type='charge')``."""
    name = type(body).__name__
    fields = _FIELDS.get(name, ())
    inner = ", ".join(f"{f}={getattr(body, f)!r}" for f in fields if getattr(body, f, "") != "")
    return f"{name}({inner})"
