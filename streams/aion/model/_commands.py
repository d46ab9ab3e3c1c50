"""Commands: everything that asks the engine to change a workflow (mirror schemas/aion.commands.*).

A :class:`Command` travels on the commands topic keyed by its workflow id, so one workflow's
inputs are ordered on one partition. ``command_id`` de-duplicates re-deliveries; ``reply_to``
names the replies topic where the engine answers the sender (refusals, query answers, results).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ._common import Failure, Payload, RetryPolicy


@dataclass(slots=True, frozen=True)
class StartWorkflow:
    workflow_type: str
    input: list[Payload]
    task_queue: str = "default"
    #: ALLOW_DUPLICATE | ALLOW_DUPLICATE_FAILED_ONLY | REJECT_DUPLICATE | TERMINATE_IF_RUNNING
    id_reuse_policy: str = "ALLOW_DUPLICATE"
    request_id: str = ""
    execution_timeout_ms: int | None = None
    run_timeout_ms: int | None = None
    search_attributes: dict[str, str] = field(default_factory=dict)
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    parent_close_policy: str = "TERMINATE"
    #: Whether the sender wants the terminal result on ``reply_to``.
    wait_result: bool = False
    retry_policy: RetryPolicy | None = None
    cron_schedule: str = ""
    memo: dict[str, Payload] = field(default_factory=dict)
    search_attribute_types: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class SignalWorkflow:
    signal_name: str
    args: list[Payload]
    signal_id: str = ""
    run_id: str | None = None


@dataclass(slots=True, frozen=True)
class SignalWithStart:
    start: StartWorkflow
    signal_name: str
    args: list[Payload]


@dataclass(slots=True, frozen=True)
class CancelWorkflow:
    reason: str = ""
    run_id: str | None = None


@dataclass(slots=True, frozen=True)
class TerminateWorkflow:
    reason: str = ""
    run_id: str | None = None


@dataclass(slots=True, frozen=True)
class QueryWorkflow:
    query_name: str
    args: list[Payload]


@dataclass(slots=True, frozen=True)
class GetResult:
    """Ask for the terminal result of the latest run on ``reply_to`` (now, or when it closes)."""

    run_id: str | None = None


@dataclass(slots=True, frozen=True)
class ActivityTaskStarted:
    run_id: str
    activity_id: str
    attempt: int
    worker: str = ""


@dataclass(slots=True, frozen=True)
class ActivityTaskCompleted:
    run_id: str
    activity_id: str
    attempt: int
    result: Payload
    worker: str = ""


@dataclass(slots=True, frozen=True)
class ActivityTaskFailed:
    run_id: str
    activity_id: str
    attempt: int
    failure: Failure
    worker: str = ""


@dataclass(slots=True, frozen=True)
class ActivityTaskCancelled:
    run_id: str
    activity_id: str
    attempt: int
    details: Payload | None = None


@dataclass(slots=True, frozen=True)
class ActivityHeartbeat:
    run_id: str
    activity_id: str
    attempt: int
    details: Payload | None = None


@dataclass(slots=True, frozen=True)
class ChildWorkflowResult:
    """A child's terminal outcome, sent to its parent's partition."""

    run_id: str  # the parent's run
    child_workflow_id: str
    #: COMPLETED | FAILED | CANCELLED | TERMINATED | TIMED_OUT
    outcome: str
    result: Payload | None = None
    failure: Failure | None = None


@dataclass(slots=True, frozen=True)
class FireTimer:
    run_id: str
    timer_id: str
    fire_at_ms: int


@dataclass(slots=True, frozen=True)
class PauseWorkflow:
    """Hold the run's activity dispatches and child starts until a :class:`ResumeWorkflow`."""

    reason: str = ""
    run_id: str | None = None


@dataclass(slots=True, frozen=True)
class ResumeWorkflow:
    """Resume a paused run: what it held is dispatched."""

    reason: str = ""
    run_id: str | None = None


@dataclass(slots=True, frozen=True)
class ReopenWorkflow:
    """Reopen the workflow's latest run if it is Failed or Cancelled (else WorkflowStateError)."""

    reason: str = ""
    run_id: str | None = None


@dataclass(slots=True, frozen=True)
class UpdateWorkflow:
    """Run the update handler ``update_name``; the sender is answered when the update is
    ``wait_for_stage`` (ACCEPTED or COMPLETED)."""

    update_id: str
    update_name: str
    args: list[Payload]
    run_id: str | None = None
    wait_for_stage: str = "COMPLETED"


@dataclass(slots=True, frozen=True)
class UpdateWithStart:
    """Start the workflow unless a run is open, then update it."""

    start: StartWorkflow
    update: UpdateWorkflow


CommandBody = Union[
    StartWorkflow,
    SignalWorkflow,
    SignalWithStart,
    CancelWorkflow,
    TerminateWorkflow,
    QueryWorkflow,
    GetResult,
    ActivityTaskStarted,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskCancelled,
    ActivityHeartbeat,
    ChildWorkflowResult,
    FireTimer,
    PauseWorkflow,
    ResumeWorkflow,
    ReopenWorkflow,
    UpdateWorkflow,
    UpdateWithStart,
]

COMMAND_TYPES: tuple[type, ...] = CommandBody.__args__  # type: ignore[attr-defined]


@dataclass(slots=True, frozen=True)
class Command:
    command_id: str
    workflow_id: str
    sent_at_ms: int
    body: CommandBody
    reply_to: str | None = None

    @property
    def type(self) -> str:
        return type(self.body).__name__


@dataclass(slots=True, frozen=True)
class Reply:
    """The engine's answer to a command's sender, on the sender's replies topic.

    ``kind``: ACCEPTED (a start or signal was recorded), RESULT (a run closed: ``status`` and
    ``result``/``failure``), QUERY (``result`` holds the answer), ERROR (``failure`` says why
    the command was refused: its ``type`` is the error class name).
    """

    command_id: str
    workflow_id: str
    kind: str
    run_id: str | None = None
    status: str | None = None
    result: Payload | None = None
    failure: Failure | None = None
