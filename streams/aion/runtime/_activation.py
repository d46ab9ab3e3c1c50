"""Which events start an activation of the workflow code, which ones its code issued, and the
replay of one run segment into a fresh instance (``WorkflowInstance``).

An *input* (``WorkflowStarted``, a signal, an activity's or child's outcome, a timer fire, a
cancel request, the resume marker) is delivered to the code and starts an activation; the
*command events* that follow it (``ActivityScheduled``, ``TimerStarted``, a close ...) are what
that activation issued, matched on replay. An input followed by ``WorkflowTaskFailed`` was not
activated (the workflow was held); the resume marker activates everything that arrived while it
was.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..model import (
    ActivityCancelled,
    ActivityCancelRequested,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ActivityTimedOut,
    ChildWorkflowCancelled,
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowStarted,
    ChildWorkflowTerminated,
    ChildWorkflowTimedOut,
    Event,
    MarkerRecorded,
    SearchAttributesUpserted,
    SignalReceived,
    SignalSent,
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
)
from ._instance import MARKER_RESUME, WorkflowInstance

__all__ = ["is_command_event", "is_instance_input", "replay_into"]

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

