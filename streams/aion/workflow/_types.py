"""Value types of the authoring API: retry policy, close/cancellation policies, workflow info."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Sequence

from ..exceptions import FailureError, InvalidArgumentError
from ..model import RetryPolicy as _ModelRetryPolicy
from ..model.limits import MAX_DURATION_MS, task_queue_problem

if TYPE_CHECKING:
    from .._search_attributes import TypedSearchAttributes


def _empty_typed() -> "TypedSearchAttributes":
    from .._search_attributes import TypedSearchAttributes

    return TypedSearchAttributes.empty

__all__ = [
    "RetryPolicy",
    "ParentClosePolicy",
    "ActivityCancellationType",
    "IdReusePolicy",
    "FailurePolicy",
    "Info",
    "ParentInfo",
]


def to_ms(d: timedelta | float | int | None, what: str = "duration") -> int | None:
    """A duration (timedelta, or seconds as a number) in whole milliseconds."""
    if d is None:
        return None
    if isinstance(d, timedelta):
        ms = round(d.total_seconds() * 1000)
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        if not math.isfinite(d):
            raise InvalidArgumentError(f"{what} must be a finite number of seconds, got {d!r}")
        ms = round(float(d) * 1000)
    else:
        raise TypeError(f"{what} must be a datetime.timedelta (or seconds as a number), got {type(d).__name__}")
    if ms < 0:
        raise ValueError(f"{what} must not be negative, got {d!r}")
    if ms > MAX_DURATION_MS:
        raise InvalidArgumentError(f"{what} is {d!r}, over the limit of 100 years")
    return ms


def checked_task_queue(task_queue: str | None) -> str | None:
    """``task_queue`` when it is a valid name (or ``None``); else :class:`InvalidArgumentError`."""
    if task_queue is not None and (problem := task_queue_problem(task_queue)):
        raise InvalidArgumentError(problem)
    return task_queue


@dataclass(frozen=True)
class RetryPolicy:
    """How the engine retries a failed activity attempt (durably, with backoff timers).

    The n-th retry waits ``initial_interval * backoff_coefficient**(n-1)``, capped at
    ``maximum_interval`` (default 100 x ``initial_interval``). ``maximum_attempts=0`` means
    unlimited. Failures whose type (exception class name, or ``ApplicationError.type``) is in
    ``non_retryable_error_types`` — or that are raised with ``non_retryable=True`` — are not retried.
    """

    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta | None = None
    maximum_attempts: int = 0
    non_retryable_error_types: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.backoff_coefficient < 1:
            raise ValueError(f"RetryPolicy.backoff_coefficient must be >= 1, got {self.backoff_coefficient}")
        if self.maximum_attempts < 0:
            raise ValueError(f"RetryPolicy.maximum_attempts must be >= 0 (0 = unlimited), got {self.maximum_attempts}")
        if isinstance(self.non_retryable_error_types, str):
            raise TypeError("RetryPolicy.non_retryable_error_types must be a list of type names, not a string")

    def to_model(self) -> _ModelRetryPolicy:
        """The wire form (milliseconds)."""
        return _ModelRetryPolicy(
            initial_interval_ms=to_ms(self.initial_interval, "initial_interval") or 0,
            backoff_coefficient=float(self.backoff_coefficient),
            maximum_interval_ms=to_ms(self.maximum_interval, "maximum_interval"),
            maximum_attempts=int(self.maximum_attempts),
            non_retryable_error_types=list(self.non_retryable_error_types),
        )

    @classmethod
    def from_model(cls, p: _ModelRetryPolicy) -> "RetryPolicy":
        return cls(
            initial_interval=timedelta(milliseconds=p.initial_interval_ms),
            backoff_coefficient=p.backoff_coefficient,
            maximum_interval=None if p.maximum_interval_ms is None else timedelta(milliseconds=p.maximum_interval_ms),
            maximum_attempts=p.maximum_attempts,
            non_retryable_error_types=tuple(p.non_retryable_error_types),
        )


class ParentClosePolicy(str, enum.Enum):
    """What happens to an open child workflow when its parent's run closes."""

    TERMINATE = "TERMINATE"
    REQUEST_CANCEL = "REQUEST_CANCEL"
    ABANDON = "ABANDON"


class ActivityCancellationType(str, enum.Enum):
    """What cancelling an activity handle (or the task awaiting it) does.

    TRY_CANCEL (default): ask the worker to stop and raise ``CancelledError`` in the workflow
    at once. WAIT_CANCELLATION_COMPLETED: ask the worker, and raise only once the activity has
    ended. ABANDON: raise at once and send no cancellation to the worker.
    """

    TRY_CANCEL = "TRY_CANCEL"
    WAIT_CANCELLATION_COMPLETED = "WAIT_CANCELLATION_COMPLETED"
    ABANDON = "ABANDON"


class IdReusePolicy(str, enum.Enum):
    """Whether a start may reuse the id of a closed (or open) workflow."""

    ALLOW_DUPLICATE = "ALLOW_DUPLICATE"
    ALLOW_DUPLICATE_FAILED_ONLY = "ALLOW_DUPLICATE_FAILED_ONLY"
    REJECT_DUPLICATE = "REJECT_DUPLICATE"
    TERMINATE_IF_RUNNING = "TERMINATE_IF_RUNNING"


@dataclass(frozen=True)
class FailurePolicy:
    """Supervision of a workflow type's code (``@workflow.defn(failure_policy=...)``, or
    ``Registry(failure_policy=...)`` for every type that sets none).

    - ``workflow_failure_types``: an exception of one of these types escaping ``run`` (or a
      signal handler) fails the workflow (``WorkflowFailed``). Any other exception is treated as
      a bug: the step is recorded as ``WorkflowTaskFailed`` and the workflow is *held* — its
      inputs (signals, activity results, timers) are still recorded, no code runs — and retried
      with ``task_retry`` backoff, so that a fixed deploy resumes it where it stopped. Default:
      ``(aion.exceptions.FailureError,)``, as in Temporal: ``ApplicationError`` and the errors a
      workflow lets escape from what it awaited (``ActivityError``, ``ChildWorkflowError``,
      ``aion.exceptions.TimeoutError``, ``TerminatedError``) fail the workflow; a ``KeyError``,
      ``TypeError``, ... holds it (so does the builtin ``TimeoutError`` of plain
      ``asyncio.timeout``/``wait_for``, as in Temporal: catch it, or use ``workflow.timeout``).
      A cancellation (``CancelledError``) escaping ``run`` always ends the workflow
      ``CANCELLED``. To fail on every exception instead, say so:
      ``FailurePolicy(workflow_failure_types=(Exception,))``, or Temporal's spelling
      ``@workflow.defn(failure_exception_types=[Exception])``.
    - ``task_retry``: backoff of held workflows (divergence, runtime errors and the exceptions
      above). ``maximum_attempts`` (0 = forever) bounds the retries, after which the workflow
      fails with the last task failure.
    - ``deadlock_timeout``: a step that does not yield back within this is interrupted and
      counts as a task failure (``None`` disables the watchdog). A call blocked in C code
      (``time.sleep``) is interrupted only when it returns, so each run of a blocking step
      stalls the engine worker for its whole length: a deadlocked task is therefore **not**
      retried by ``task_retry`` on the same code. It is retried when other code holds the
      workflow — an engine worker started with a deploy (or a restart, or a hand-over to
      another worker; see ``Registry.code_id``) — or at once by ``WorkflowExecution.resume``.
    """

    workflow_failure_types: tuple[type[BaseException], ...] = (FailureError,)
    task_retry: RetryPolicy = RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=10),
        maximum_attempts=0,
    )
    deadlock_timeout: timedelta | None = timedelta(seconds=2)


@dataclass(frozen=True)
class ParentInfo:
    workflow_id: str
    run_id: str


@dataclass(frozen=True)
class Info:
    """What a running workflow knows about itself (``workflow.info()``); all deterministic."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    #: The attempt of this run (starts at 1).
    attempt: int
    #: Events in the whole workflow history up to the current replay position.
    history_length: int
    #: Events in this run segment up to the current replay position.
    run_history_length: int
    #: True once this run's history is long enough that continuing as new is advisable.
    continue_as_new_suggested: bool
    start_time: datetime
    run_start_time: datetime
    first_run_id: str
    previous_run_id: str | None = None
    parent: ParentInfo | None = None
    execution_timeout: timedelta | None = None
    run_timeout: timedelta | None = None
    #: The search attributes' values (text, or the typed value of a typed attribute).
    search_attributes: dict[str, Any] = field(default_factory=dict)
    #: The same as :class:`aion.common.TypedSearchAttributes` (Temporal's ``typed_search_attributes``).
    typed_search_attributes: "TypedSearchAttributes" = field(default_factory=lambda: _empty_typed())
    #: The cron schedule of a cron workflow (``start_workflow(..., cron_schedule=...)``), else "".
    cron_schedule: str = ""
    #: The workflow retry policy it was started with (``retry_policy=``), else None.
    retry_policy: "RetryPolicy | None" = None

    def get_current_history_length(self) -> int:
        """Temporal's spelling: events in this run's history so far (:attr:`run_history_length`;
        each run of a continue-as-new chain starts its own history, as in Temporal)."""
        return self.run_history_length

    def is_continue_as_new_suggested(self) -> bool:
        """Temporal's spelling of :attr:`continue_as_new_suggested`."""
        return self.continue_as_new_suggested
