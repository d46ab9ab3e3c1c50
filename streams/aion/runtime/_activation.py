"""Which events start an activation of the workflow code, which ones its code issued, and the
replay of one run segment into a fresh instance (``WorkflowInstance``).

An *input* (``WorkflowStarted``, a signal, an accepted update, an activity's or child's outcome,
a timer fire, a cancel request, the resume marker) is delivered to the code and starts an activation; the
*command events* that follow it (``ActivityScheduled``, ``TimerStarted``, an update's
completion, a close ...) are what
that activation issued, matched on replay. An input followed by ``WorkflowTaskFailed`` was not
activated (the workflow was held); the resume marker activates everything that arrived while it
was. A ``WorkflowStarted`` with a first-task backoff (a retry, a cron run) is held the same way
until the marker its ``wf/start`` timer records.

A reopen (``WorkflowReopened``, ``_lifecycle.py``) takes back a range of events: replay skips
them, and at the reopen the instance reserves the ids they used (``reserve_ids``) so that the
code's next activity, timer, child or signal never takes an id the log already gave away.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

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
    WorkflowReopened,
    WorkflowStarted,
    WorkflowTaskFailed,
    WorkflowUpdateAccepted,
    WorkflowUpdateCompleted,
)
from ._instance import MARKER_RESUME, WorkflowInstance

__all__ = ["is_command_event", "is_instance_input", "replay_into"]

_COMMAND_EVENTS = (
    ActivityScheduled, ActivityCancelRequested, TimerStarted, TimerCancelled, ChildWorkflowStarted,
    SignalSent, SearchAttributesUpserted, WorkflowCompleted, WorkflowFailed, WorkflowCancelled,
    WorkflowContinuedAsNew, WorkflowUpdateCompleted,
)
_INPUTS = (
    WorkflowStarted, SignalReceived, ActivityCompleted, ActivityCancelled, TimerFired,
    ChildWorkflowCompleted, ChildWorkflowFailed, ChildWorkflowCancelled, ChildWorkflowTimedOut,
    ChildWorkflowTerminated, WorkflowCancelRequested, WorkflowUpdateAccepted,
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
                extend: bool = False, voided: Callable[[int], bool] | None = None) -> BaseException | None:
    """Replay ``history[start:end]`` (one run segment) into ``inst``; returns a task failure
    (divergence, deadlock, code failure) or None. The last activation is a replay too: the
    history holds every command of every completed step — unless ``extend``: then the last
    activation may go on past the end and ``inst.tail`` holds what it issued there (the
    repair of a step cut short by a crash, see ``WorkflowInstance.activate``). ``voided(seq)``
    says which events a reopen took back (``Run.voided``): they are not replayed."""
    inst.extend_at_end = extend
    try:
        if voided is None:
            return _replay_segment(inst, history, start, end, {})
        kept: list[Event] = []
        taken: dict[int, list[Any]] = {}
        pending: list[Any] = []
        for ev in history[start:end]:
            if voided(ev.seq):
                pending.append(ev.body)
                continue
            if isinstance(ev.body, WorkflowReopened):
                taken[len(kept)], pending = pending, []
            kept.append(ev)
        return _replay_segment(inst, kept, 0, len(kept), taken)
    finally:
        inst.extend_at_end = False


def _replay_segment(inst: WorkflowInstance, history: Sequence[Event], start: int, end: int,
                    taken: dict[int, list[Any]]) -> BaseException | None:
    held = False
    i = start
    while i < end:
        ev = history[i]
        b = ev.body
        if isinstance(b, WorkflowReopened):
            inst.reserve_ids(taken.get(i, ()))
            i += 1
            continue
        if isinstance(b, WorkflowTaskFailed):
            held = True
            i += 1
            continue
        if isinstance(b, MarkerRecorded) and b.marker_name == MARKER_RESUME:
            held = False
        if isinstance(b, WorkflowStarted) and b.first_task_backoff_ms > 0:
            held = True  # its code starts at the resume marker the wf/start timer records
        if not is_instance_input(b) or inst.closed is not None:
            i += 1
            continue
        inst.deliver(ev)
        nxt = history[i + 1] if i + 1 < end else None
        if held or (nxt is not None and isinstance(nxt.body, WorkflowTaskFailed)):
            i += 1
            continue
        # The commands of this activation: the command events after it. A reopen between them
        # means it took back the rest (the close) and the code went on from there at the reopen.
        j = i + 1
        commands: list[Event] = []
        while j < end:
            nb = history[j].body
            if isinstance(nb, WorkflowReopened):
                inst.reserve_ids(taken.get(j, ()))
            elif is_command_event(nb):
                commands.append(history[j])
            else:
                break
            j += 1
        act = inst.activate(commands, history[j] if j < end else None, ev.seq + 1)
        if act.failure is not None:
            return act.failure
        i = j
    return None

