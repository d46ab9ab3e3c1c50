"""Messages on the activity task topics (mirror schemas/aion.tasks.*)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ._common import Payload


@dataclass(slots=True, frozen=True)
class ActivityTask:
    """Run one attempt of an activity; the result goes back as a command."""

    workflow_id: str
    run_id: str
    activity_id: str
    attempt: int
    activity_type: str
    input: list[Payload]
    task_queue: str
    workflow_type: str
    scheduled_at_ms: int
    start_to_close_ms: int | None = None
    heartbeat_ms: int | None = None
    schedule_to_close_deadline_ms: int | None = None
    heartbeat_details: Payload | None = None


@dataclass(slots=True, frozen=True)
class CancelActivityTask:
    """Server-initiated cancellation of a running attempt."""

    workflow_id: str
    run_id: str
    activity_id: str
    attempt: int


TaskBody = Union[ActivityTask, CancelActivityTask]
TASK_TYPES: tuple[type, ...] = TaskBody.__args__  # type: ignore[attr-defined]
