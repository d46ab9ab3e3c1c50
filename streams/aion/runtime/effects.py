"""Effects: what the engine must do after a step's events are durable (record before effect).

A :class:`~aion.runtime.Step` lists them in the order they were decided. The engine performs
them only once the step's events are on the events topic (or in the same transaction). All of
them are idempotent on the receiving side: activity results are matched by (run, activity id,
attempt), timer fires by (run, timer id), commands by their deterministic ``command_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..model import ActivityHeartbeat, ActivityTask, CancelActivityTask, Command, Reply

__all__ = [
    "DispatchActivity",
    "DispatchActivityCancel",
    "ScheduleTimer",
    "DropTimer",
    "SendCommand",
    "SendReply",
    "KeepHeartbeat",
    "DropHeartbeat",
    "Effect",
]


@dataclass(slots=True, frozen=True)
class DispatchActivity:
    """Produce ``task`` on the activity task topic of ``task.task_queue``."""

    task: ActivityTask


@dataclass(slots=True, frozen=True)
class DispatchActivityCancel:
    """Ask the worker running ``task``'s attempt to stop (on ``task_queue``'s task topic)."""

    task: CancelActivityTask
    task_queue: str


@dataclass(slots=True, frozen=True)
class ScheduleTimer:
    """Arm a durable timer: at ``fire_at_ms`` send ``Command(FireTimer(run_id, timer_id, fire_at_ms))``
    to ``workflow_id``. Re-arming the same (run, timer id) replaces it."""

    workflow_id: str
    run_id: str
    timer_id: str
    fire_at_ms: int


@dataclass(slots=True, frozen=True)
class DropTimer:
    """The timer is no longer needed (cancelled, or its run closed). Optional to honour:
    the runtime ignores fires of timers that are not live."""

    workflow_id: str
    run_id: str
    timer_id: str


@dataclass(slots=True, frozen=True)
class SendCommand:
    """Send ``command`` to the commands topic (keyed by ``command.workflow_id``): child starts,
    results to a parent, signals/cancels/terminations of other workflows, self-confirmations."""

    command: Command


@dataclass(slots=True, frozen=True)
class SendReply:
    """Produce ``reply`` on the replies topic partition named by ``reply_to`` (``"topic:partition"``)."""

    reply_to: str
    reply: Reply


@dataclass(slots=True, frozen=True)
class KeepHeartbeat:
    """Keep an activity's last heartbeat (its details go to the next attempt) where a worker
    that loads the workflow later finds it: heartbeats are not events, but their details must
    survive a hand-over (:meth:`WorkflowExecution.restore_heartbeat`)."""

    workflow_id: str
    at_ms: int
    heartbeat: ActivityHeartbeat


@dataclass(slots=True, frozen=True)
class DropHeartbeat:
    """The activity closed: its kept heartbeat is no longer needed."""

    workflow_id: str
    activity_id: str


Effect = Union[DispatchActivity, DispatchActivityCancel, ScheduleTimer, DropTimer, SendCommand, SendReply,
               KeepHeartbeat, DropHeartbeat]
