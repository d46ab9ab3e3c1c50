"""Workflow history events (mirror schemas/aion.events.*).

Every record on the events topic is an :class:`Event`: the envelope (workflow id, gapless
``seq``, run id, the time it was recorded and the id of the command that caused it) around one
body from :data:`EventBody`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence, Union

from ._common import ActivityTimeouts, Failure, Payload, RetryPolicy


# ---------------------------------------------------------------- workflow lifecycle


@dataclass(slots=True, frozen=True)
class WorkflowStarted:
    workflow_type: str
    input: list[Payload]
    task_queue: str = "default"
    previous_run_id: str | None = None
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    parent_close_policy: str = "TERMINATE"
    execution_timeout_ms: int | None = None
    run_timeout_ms: int | None = None
    search_attributes: dict[str, str] = field(default_factory=dict)
    code_version: str = ""
    attempt: int = 1
    request_id: str = ""
    reply_to: str | None = None
    #: Temporal's workflow retry policy: a failed (or run-timed-out) run is followed by a new
    #: run of the same id, ``attempt + 1``, after the policy's backoff.
    retry_policy: RetryPolicy | None = None
    #: A cron expression: each run's code starts at a fire time; the next run follows the
    #: close of this one (unless cancelled or terminated).
    cron_schedule: str = ""
    memo: dict[str, Payload] = field(default_factory=dict)
    #: The code starts this long after the start is recorded (timer ``wf/start``).
    first_task_backoff_ms: int = 0
    #: ``RETRY`` or ``CRON_SCHEDULE`` (what started this run after its predecessor's close);
    #: ``""`` for a first run and after continue-as-new.
    initiator: str = ""
    last_completion_result: Payload | None = None
    last_failure: Failure | None = None
    #: The type of each typed search attribute (``aion.common``); untyped ones are text.
    search_attribute_types: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class WorkflowCompleted:
    result: Payload


@dataclass(slots=True, frozen=True)
class WorkflowFailed:
    failure: Failure


@dataclass(slots=True, frozen=True)
class WorkflowCancelRequested:
    reason: str = ""


@dataclass(slots=True, frozen=True)
class WorkflowCancelled:
    details: Payload | None = None


@dataclass(slots=True, frozen=True)
class WorkflowTerminated:
    reason: str = ""


@dataclass(slots=True, frozen=True)
class WorkflowTimedOut:
    timeout_type: str = "EXECUTION"


@dataclass(slots=True, frozen=True)
class WorkflowContinuedAsNew:
    new_run_id: str
    workflow_type: str
    input: list[Payload]
    task_queue: str = "default"


@dataclass(slots=True, frozen=True)
class WorkflowTaskFailed:
    """Workflow code raised unexpectedly, deadlocked or diverged: the workflow is held, not failed."""

    failure: Failure
    attempt: int = 1
    retry_at_ms: int | None = None


# ---------------------------------------------------------------- activities


@dataclass(slots=True, frozen=True)
class ActivityScheduled:
    activity_id: str
    activity_type: str
    input: list[Payload]
    task_queue: str = "default"
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: ActivityTimeouts = field(default_factory=ActivityTimeouts)


@dataclass(slots=True, frozen=True)
class ActivityStarted:
    activity_id: str
    attempt: int
    worker: str = ""


@dataclass(slots=True, frozen=True)
class ActivityCompleted:
    activity_id: str
    attempt: int
    result: Payload


@dataclass(slots=True, frozen=True)
class ActivityFailed:
    activity_id: str
    attempt: int
    failure: Failure
    will_retry: bool = False
    retry_at_ms: int | None = None


@dataclass(slots=True, frozen=True)
class ActivityTimedOut:
    activity_id: str
    attempt: int
    timeout_type: str  # SCHEDULE_TO_CLOSE | SCHEDULE_TO_START | START_TO_CLOSE | HEARTBEAT
    will_retry: bool = False
    retry_at_ms: int | None = None


@dataclass(slots=True, frozen=True)
class ActivityCancelRequested:
    activity_id: str


@dataclass(slots=True, frozen=True)
class ActivityCancelled:
    activity_id: str
    details: Payload | None = None


# ---------------------------------------------------------------- timers


@dataclass(slots=True, frozen=True)
class TimerStarted:
    timer_id: str
    fire_at_ms: int
    duration_ms: int
    name: str = ""


@dataclass(slots=True, frozen=True)
class TimerFired:
    timer_id: str


@dataclass(slots=True, frozen=True)
class TimerCancelled:
    timer_id: str


# ---------------------------------------------------------------- signals


@dataclass(slots=True, frozen=True)
class SignalReceived:
    signal_name: str
    args: list[Payload]
    signal_id: str = ""


@dataclass(slots=True, frozen=True)
class SignalSent:
    signal_id: str
    target_workflow_id: str
    signal_name: str
    args: list[Payload]


# ---------------------------------------------------------------- child workflows


@dataclass(slots=True, frozen=True)
class ChildWorkflowStarted:
    child_workflow_id: str
    workflow_type: str
    input: list[Payload]
    task_queue: str = "default"
    parent_close_policy: str = "TERMINATE"
    execution_timeout_ms: int | None = None
    retry_policy: RetryPolicy | None = None
    cron_schedule: str = ""
    memo: dict[str, Payload] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class ChildWorkflowCompleted:
    child_workflow_id: str
    result: Payload


@dataclass(slots=True, frozen=True)
class ChildWorkflowFailed:
    child_workflow_id: str
    failure: Failure


@dataclass(slots=True, frozen=True)
class ChildWorkflowCancelled:
    child_workflow_id: str


@dataclass(slots=True, frozen=True)
class ChildWorkflowTimedOut:
    child_workflow_id: str


@dataclass(slots=True, frozen=True)
class ChildWorkflowTerminated:
    child_workflow_id: str
    reason: str = ""


# ---------------------------------------------------------------- markers and attributes


@dataclass(slots=True, frozen=True)
class MarkerRecorded:
    """A side effect's value (``marker_name='side_effect'``) or a patch (``'patch'``)."""

    marker_name: str
    marker_id: str
    value: Payload | None = None


@dataclass(slots=True, frozen=True)
class SearchAttributesUpserted:
    attributes: dict[str, str]
    #: The types of the typed ones among ``attributes`` (``aion.common``).
    types: dict[str, str] = field(default_factory=dict)
    #: Names removed (``key.value_unset()``).
    unset: list[str] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class WorkflowPaused:
    """An operator paused the run: no activity task or child start is dispatched until it is
    resumed (timers, signals and completions are still recorded, and the code still runs)."""

    reason: str = ""


@dataclass(slots=True, frozen=True)
class WorkflowResumed:
    """An operator resumed a paused run: the activity attempts and child starts it held go out."""

    reason: str = ""


@dataclass(slots=True, frozen=True)
class WorkflowReopened:
    """An operator reopened a Failed or Cancelled run; the same run goes on.

    The code no longer sees the events from ``from_seq`` up to this one (the terminal failures
    or the cancel that closed the run, and the close): they stay in the log, but replay skips
    them, so activities that failed terminally there are dispatched again with their attempt
    count continued and timers the cancel tore down are armed again."""

    from_seq: int
    reason: str = ""


@dataclass(slots=True, frozen=True)
class WorkflowUpdateAccepted:
    """An update passed its validator and was handed to its handler (a rejected update appends
    nothing). ``reply_to`` is kept so that an engine taking over answers the completion."""

    update_id: str
    update_name: str
    args: list[Payload]
    reply_to: str | None = None


@dataclass(slots=True, frozen=True)
class WorkflowUpdateCompleted:
    """An accepted update's handler returned (``result``) or raised (``failure``)."""

    update_id: str
    result: Payload | None = None
    failure: Failure | None = None


EventBody = Union[
    WorkflowStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowCancelRequested,
    WorkflowCancelled,
    WorkflowTerminated,
    WorkflowTimedOut,
    WorkflowContinuedAsNew,
    WorkflowTaskFailed,
    ActivityScheduled,
    ActivityStarted,
    ActivityCompleted,
    ActivityFailed,
    ActivityTimedOut,
    ActivityCancelRequested,
    ActivityCancelled,
    TimerStarted,
    TimerFired,
    TimerCancelled,
    SignalReceived,
    SignalSent,
    ChildWorkflowStarted,
    ChildWorkflowCompleted,
    ChildWorkflowFailed,
    ChildWorkflowCancelled,
    ChildWorkflowTimedOut,
    ChildWorkflowTerminated,
    MarkerRecorded,
    SearchAttributesUpserted,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowReopened,
    WorkflowUpdateAccepted,
    WorkflowUpdateCompleted,
]

EVENT_TYPES: tuple[type, ...] = EventBody.__args__  # type: ignore[attr-defined]

#: Events that close a run: exactly one per run segment.
RUN_CLOSING_EVENTS: tuple[type, ...] = (
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowCancelled,
    WorkflowTerminated,
    WorkflowTimedOut,
    WorkflowContinuedAsNew,
)

#: The status a run has after each closing event.
STATUS_OF_CLOSE: dict[type, str] = {
    WorkflowCompleted: "COMPLETED",
    WorkflowFailed: "FAILED",
    WorkflowCancelled: "CANCELLED",
    WorkflowTerminated: "TERMINATED",
    WorkflowTimedOut: "TIMED_OUT",
    WorkflowContinuedAsNew: "CONTINUED_AS_NEW",
}


@dataclass(slots=True, frozen=True)
class EventKey:
    """The events topic's record key: never the workflow id alone, or compaction loses history."""

    workflow_id: str
    seq: int


@dataclass(slots=True, frozen=True)
class Event:
    """One history event: the envelope around a body."""

    workflow_id: str
    seq: int
    run_id: str
    recorded_at_ms: int
    body: EventBody
    command_id: str | None = None

    @property
    def key(self) -> EventKey:
        return EventKey(self.workflow_id, self.seq)

    @property
    def type(self) -> str:
        return type(self.body).__name__


# ---------------------------------------------------------------------------- reopens

#: ``[from_seq, reopen_seq)`` seq ranges a reopen took back (``WorkflowReopened``).
SeqRanges = list[tuple[int, int]]


def reopen_ranges(events: "Iterable[Event]") -> SeqRanges:
    """The seq ranges the reopens among ``events`` took back: each ``WorkflowReopened`` takes
    back the events from its ``from_seq`` up to itself (they stay in the log, but no run state,
    replay or description counts them)."""
    return [(b.from_seq, e.seq) for e in events if isinstance(b := e.body, WorkflowReopened)]


def taken_back(seq: int, ranges: SeqRanges) -> bool:
    """Whether the event ``seq`` lies in one of ``ranges`` (see :func:`reopen_ranges`)."""
    return any(lo <= seq < hi for lo, hi in ranges)


def without_taken_back(events: "Sequence[Event]") -> "list[Event]":
    """``events`` without what their reopens took back."""
    ranges = reopen_ranges(events)
    return [e for e in events if not taken_back(e.seq, ranges)] if ranges else list(events)
