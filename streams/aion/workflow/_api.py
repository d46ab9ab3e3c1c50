"""The functions workflow code calls (``workflow.execute_activity``, ``workflow.sleep``, ...).

They find the workflow's runtime on the running event loop (the runtime's deterministic loop
carries it as ``loop.aion_runtime``), so this module imports nothing of ``aion.runtime``. Called
outside a workflow they raise :class:`NotInWorkflowError`.
"""

from __future__ import annotations

import asyncio
import random as _random
import uuid as _uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Mapping, NoReturn, Protocol, TypedDict, TypeVar, Unpack, overload

from ..exceptions import AionError, InvalidArgumentError
from ..exceptions import TimeoutError as _AionTimeoutError
from ..model.limits import workflow_id_problem
from ._handles import ActivityHandle, ChildWorkflowHandle, ExternalWorkflowHandle, TimerHandle
from ._types import (
    ActivityCancellationType,
    Info,
    ParentClosePolicy,
    RetryPolicy,
    checked_task_queue,
    to_ms,
)

__all__ = [
    "NotInWorkflowError",
    "ContinueAsNewError",
    "ActivityOptions",
    "ChildOptions",
    "execute_activity",
    "start_activity",
    "execute_activity_method",
    "start_activity_method",
    "execute_local_activity",
    "start_local_activity",
    "execute_local_activity_method",
    "start_local_activity_method",
    "sleep",
    "start_timer",
    "wait_condition",
    "timeout",
    "execute_child_workflow",
    "start_child_workflow",
    "continue_as_new",
    "info",
    "now",
    "time",
    "random",
    "uuid4",
    "side_effect",
    "patched",
    "deprecate_patch",
    "signal_external",
    "get_external_workflow_handle",
    "get_external_workflow_handle_for",
    "upsert_search_attributes",
    "in_workflow",
    "is_replaying",
    "all_handlers_finished",
]

T = TypeVar("T")
R = TypeVar("R")  # an activity's or a child workflow's result type
A = TypeVar("A")  # the type of its one argument


class _ActivityKw(TypedDict, total=False):
    """The options of :func:`start_activity` / :func:`execute_activity` (for the overloads)."""

    task_queue: str | None
    schedule_to_close_timeout: timedelta | None
    schedule_to_start_timeout: timedelta | None
    start_to_close_timeout: timedelta | None
    heartbeat_timeout: timedelta | None
    retry_policy: RetryPolicy | None
    cancellation_type: ActivityCancellationType
    activity_id: str | None
    result_type: Any


class _LocalActivityKw(TypedDict, total=False):
    """The options of :func:`start_local_activity` / :func:`execute_local_activity`."""

    schedule_to_close_timeout: timedelta | None
    schedule_to_start_timeout: timedelta | None
    start_to_close_timeout: timedelta | None
    retry_policy: RetryPolicy | None
    local_retry_threshold: timedelta | None
    cancellation_type: ActivityCancellationType
    activity_id: str | None
    result_type: Any


class _ChildKw(TypedDict, total=False):
    """The options of :func:`start_child_workflow` / :func:`execute_child_workflow`."""

    id: str | None
    task_queue: str | None
    parent_close_policy: ParentClosePolicy | str
    execution_timeout: timedelta | None
    result_type: Any
    retry_policy: RetryPolicy | None
    cron_schedule: str
    memo: Mapping[str, Any] | None


class NotInWorkflowError(AionError, RuntimeError):
    """A workflow API was called outside of workflow code."""


class ContinueAsNewError(BaseException):
    """Raised by :func:`continue_as_new` to end the run; do not catch it.

    A :class:`BaseException` so that ``except Exception`` in workflow code lets it through.
    """

    def __init__(self, args: tuple[Any, ...], workflow: str | None, task_queue: str | None) -> None:
        super().__init__("continue as new")
        self.run_args = args
        self.workflow = workflow
        self.task_queue = task_queue


class ActivityOptions:
    """Resolved options of one activity call (what the runtime records)."""

    __slots__ = ("task_queue", "schedule_to_close_ms", "schedule_to_start_ms", "start_to_close_ms",
                 "heartbeat_ms", "retry_policy", "cancellation_type", "activity_id", "result_type")
    task_queue: str | None
    schedule_to_close_ms: int | None
    schedule_to_start_ms: int | None
    start_to_close_ms: int | None
    heartbeat_ms: int | None
    retry_policy: RetryPolicy | None
    cancellation_type: ActivityCancellationType
    activity_id: str | None
    result_type: Any

    def __init__(self, **kw: Any) -> None:
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


class ChildOptions:
    """Resolved options of one child workflow start."""

    __slots__ = ("id", "task_queue", "parent_close_policy", "execution_timeout_ms", "result_type",
                 "retry_policy", "cron_schedule", "memo")
    id: str | None
    task_queue: str | None
    parent_close_policy: ParentClosePolicy
    execution_timeout_ms: int | None
    result_type: Any
    retry_policy: RetryPolicy | None
    cron_schedule: str | None
    memo: Mapping[str, Any] | None

    def __init__(self, **kw: Any) -> None:
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


class _Runtime(Protocol):
    """What the deterministic runtime offers to the API (implemented in aion.runtime)."""

    def info(self) -> Info: ...
    def now_ms(self) -> int: ...
    def random(self) -> _random.Random: ...
    def is_replaying(self) -> bool: ...
    def all_handlers_finished(self) -> bool: ...
    def start_activity(self, activity: Any, args: tuple[Any, ...], options: ActivityOptions) -> ActivityHandle[Any]: ...
    def start_timer(self, duration_ms: int, name: str) -> TimerHandle: ...
    def wait_condition(self, fn: Callable[[], bool]) -> asyncio.Future[None]: ...
    def start_child(self, workflow: Any, args: tuple[Any, ...], options: ChildOptions) -> ChildWorkflowHandle[Any]: ...
    def signal_external(self, workflow_id: str, signal: str, args: tuple[Any, ...]) -> None: ...
    def cancel_external(self, workflow_id: str, run_id: str | None) -> None: ...
    def side_effect(self, fn: Callable[[], Any], result_type: Any) -> Any: ...
    def patched(self, patch_id: str, deprecated: bool) -> bool: ...
    def upsert_search_attributes(self, attributes: Any) -> None: ...
    def memo(self) -> dict[str, Any]: ...
    def memo_value(self, key: str, type_hint: Any) -> Any: ...
    def last_completion_result(self, type_hint: Any) -> Any: ...
    def last_failure(self) -> BaseException | None: ...


def _rt() -> _Runtime:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    rt = getattr(loop, "aion_runtime", None)
    if rt is None:
        raise NotInWorkflowError(
            "not in workflow code: aion.workflow functions only work inside a @workflow.defn "
            "class run by the aion runtime (use aion.testing to run workflows in tests)"
        )
    return rt


def in_workflow() -> bool:
    """Whether the caller runs inside workflow code."""
    try:
        _rt()
    except NotInWorkflowError:
        return False
    return True


def is_replaying() -> bool:
    """True while the runtime re-runs code against recorded history (e.g. to skip logging)."""
    return _rt().is_replaying()


def all_handlers_finished() -> bool:
    """Whether no ``async`` signal handler is still running: ``await workflow.wait_condition(
    workflow.all_handlers_finished)`` before returning lets the handlers' work finish first."""
    return _rt().all_handlers_finished()


# ------------------------------------------------------------------------------ activities
# Typed as Temporal's: ``await execute_activity(charge, ...)`` is what ``charge`` returns; a call
# with none or one argument is checked against the activity's parameters (one with more is not).


@overload
def start_activity(activity: Callable[[], Awaitable[R]], /, **options: Unpack[_ActivityKw]) -> ActivityHandle[R]: ...
@overload
def start_activity(activity: Callable[[], R], /, **options: Unpack[_ActivityKw]) -> ActivityHandle[R]: ...
@overload
def start_activity(activity: Callable[[A], Awaitable[R]], arg: A, /, **options: Unpack[_ActivityKw]) -> ActivityHandle[R]: ...
@overload
def start_activity(activity: Callable[[A], R], arg: A, /, **options: Unpack[_ActivityKw]) -> ActivityHandle[R]: ...
@overload
def start_activity(activity: Callable[..., Awaitable[R]], arg1: Any, arg2: Any, /, *args: Any, **options: Unpack[_ActivityKw]) -> ActivityHandle[R]: ...
@overload
def start_activity(activity: Callable[..., R], arg1: Any, arg2: Any, /, *args: Any, **options: Unpack[_ActivityKw]) -> ActivityHandle[R]: ...
@overload
def start_activity(activity: str, /, *args: Any, **options: Unpack[_ActivityKw]) -> ActivityHandle[Any]: ...
def start_activity(
    activity: Callable[..., Any] | str,
    *args: Any,
    task_queue: str | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    schedule_to_start_timeout: timedelta | None = None,
    start_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
    retry_policy: RetryPolicy | None = None,
    cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
    activity_id: str | None = None,
    result_type: Any = None,
) -> ActivityHandle[Any]:
    """Schedule an activity (records ``ActivityScheduled``) and return its handle.

    ``activity`` is an ``@activity.defn`` function or an activity type name. The result is
    decoded with the function's return annotation (or ``result_type``). Retries, backoff and
    the four timeouts are run by the engine with durable timers. ``task_queue`` defaults to
    the workflow's task queue.
    """
    if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
        raise TypeError("retry_policy must be an aion.RetryPolicy")
    opts = ActivityOptions(
        task_queue=checked_task_queue(task_queue),
        schedule_to_close_ms=to_ms(schedule_to_close_timeout, "schedule_to_close_timeout"),
        schedule_to_start_ms=to_ms(schedule_to_start_timeout, "schedule_to_start_timeout"),
        start_to_close_ms=to_ms(start_to_close_timeout, "start_to_close_timeout"),
        heartbeat_ms=to_ms(heartbeat_timeout, "heartbeat_timeout"),
        retry_policy=retry_policy,
        cancellation_type=ActivityCancellationType(cancellation_type),
        activity_id=activity_id,
        result_type=result_type,
    )
    return _rt().start_activity(activity, args, opts)


@overload
async def execute_activity(activity: Callable[[], Awaitable[R]], /, **options: Unpack[_ActivityKw]) -> R: ...
@overload
async def execute_activity(activity: Callable[[], R], /, **options: Unpack[_ActivityKw]) -> R: ...
@overload
async def execute_activity(activity: Callable[[A], Awaitable[R]], arg: A, /, **options: Unpack[_ActivityKw]) -> R: ...
@overload
async def execute_activity(activity: Callable[[A], R], arg: A, /, **options: Unpack[_ActivityKw]) -> R: ...
@overload
async def execute_activity(activity: Callable[..., Awaitable[R]], arg1: Any, arg2: Any, /, *args: Any, **options: Unpack[_ActivityKw]) -> R: ...
@overload
async def execute_activity(activity: Callable[..., R], arg1: Any, arg2: Any, /, *args: Any, **options: Unpack[_ActivityKw]) -> R: ...
@overload
async def execute_activity(activity: str, /, *args: Any, **options: Unpack[_ActivityKw]) -> Any: ...
async def execute_activity(
    activity: Callable[..., Any] | str,
    *args: Any,
    task_queue: str | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    schedule_to_start_timeout: timedelta | None = None,
    start_to_close_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
    retry_policy: RetryPolicy | None = None,
    cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
    activity_id: str | None = None,
    result_type: Any = None,
) -> Any:
    """Run an activity and return its result; raises ``ActivityError`` when it finally fails
    (``__cause__``: the last failure, a ``TimeoutError`` or ``CancelledError``)."""
    return await start_activity(
        activity,
        *args,
        task_queue=task_queue,
        schedule_to_close_timeout=schedule_to_close_timeout,
        schedule_to_start_timeout=schedule_to_start_timeout,
        start_to_close_timeout=start_to_close_timeout,
        heartbeat_timeout=heartbeat_timeout,
        retry_policy=retry_policy,
        cancellation_type=cancellation_type,
        activity_id=activity_id,
        result_type=result_type,
    )


def start_activity_method(activity: Callable[..., Any], *args: Any, **options: Any) -> ActivityHandle[Any]:
    """:func:`start_activity` for an activity that is a method: name it by its class
    (``Db.fetch``); the worker runs the bound method it was given (``activities=[db.fetch]``).
    Takes the same options as :func:`start_activity`."""
    return start_activity(activity, *args, **options)


async def execute_activity_method(activity: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """:func:`execute_activity` for an activity that is a method (see
    :func:`start_activity_method`)."""
    return await start_activity(activity, *args, **options)


@overload
def start_local_activity(activity: Callable[[], Awaitable[R]], /, **options: Unpack[_LocalActivityKw]) -> ActivityHandle[R]: ...
@overload
def start_local_activity(activity: Callable[[], R], /, **options: Unpack[_LocalActivityKw]) -> ActivityHandle[R]: ...
@overload
def start_local_activity(activity: Callable[[A], Awaitable[R]], arg: A, /, **options: Unpack[_LocalActivityKw]) -> ActivityHandle[R]: ...
@overload
def start_local_activity(activity: Callable[[A], R], arg: A, /, **options: Unpack[_LocalActivityKw]) -> ActivityHandle[R]: ...
@overload
def start_local_activity(activity: Callable[..., Awaitable[R]], arg1: Any, arg2: Any, /, *args: Any, **options: Unpack[_LocalActivityKw]) -> ActivityHandle[R]: ...
@overload
def start_local_activity(activity: Callable[..., R], arg1: Any, arg2: Any, /, *args: Any, **options: Unpack[_LocalActivityKw]) -> ActivityHandle[R]: ...
@overload
def start_local_activity(activity: str, /, *args: Any, **options: Unpack[_LocalActivityKw]) -> ActivityHandle[Any]: ...
def start_local_activity(
    activity: Callable[..., Any] | str,
    *args: Any,
    schedule_to_close_timeout: timedelta | None = None,
    schedule_to_start_timeout: timedelta | None = None,
    start_to_close_timeout: timedelta | None = None,
    retry_policy: RetryPolicy | None = None,
    local_retry_threshold: timedelta | None = None,
    cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
    activity_id: str | None = None,
    result_type: Any = None,
) -> ActivityHandle[Any]:
    """Temporal's local activity, run here as an ordinary activity on the workflow's task queue.

    Temporal runs a local activity inside the workflow worker and records only a marker; Aion
    Streams schedules it like :func:`start_activity` (``ActivityScheduled`` ... on the task topic
    of the workflow's queue, run by that queue's activity workers, retried by the engine with
    durable timers). The signature is Temporal's, so ported code runs unchanged: no
    ``task_queue`` and no ``heartbeat_timeout``; ``local_retry_threshold`` is accepted and
    ignored (every retry waits on a durable timer here).
    """
    del local_retry_threshold  # every retry is a durable timer here: no local/remote threshold
    return start_activity(
        activity,
        *args,
        schedule_to_close_timeout=schedule_to_close_timeout,
        schedule_to_start_timeout=schedule_to_start_timeout,
        start_to_close_timeout=start_to_close_timeout,
        retry_policy=retry_policy,
        cancellation_type=cancellation_type,
        activity_id=activity_id,
        result_type=result_type,
    )


@overload
async def execute_local_activity(activity: Callable[[], Awaitable[R]], /, **options: Unpack[_LocalActivityKw]) -> R: ...
@overload
async def execute_local_activity(activity: Callable[[], R], /, **options: Unpack[_LocalActivityKw]) -> R: ...
@overload
async def execute_local_activity(activity: Callable[[A], Awaitable[R]], arg: A, /, **options: Unpack[_LocalActivityKw]) -> R: ...
@overload
async def execute_local_activity(activity: Callable[[A], R], arg: A, /, **options: Unpack[_LocalActivityKw]) -> R: ...
@overload
async def execute_local_activity(activity: Callable[..., Awaitable[R]], arg1: Any, arg2: Any, /, *args: Any, **options: Unpack[_LocalActivityKw]) -> R: ...
@overload
async def execute_local_activity(activity: Callable[..., R], arg1: Any, arg2: Any, /, *args: Any, **options: Unpack[_LocalActivityKw]) -> R: ...
@overload
async def execute_local_activity(activity: str, /, *args: Any, **options: Unpack[_LocalActivityKw]) -> Any: ...
async def execute_local_activity(activity: Callable[..., Any] | str, *args: Any, **options: Any) -> Any:
    """Run a "local" activity and return its result (see :func:`start_local_activity`: here it
    is an ordinary activity on the workflow's task queue)."""
    return await start_local_activity(activity, *args, **options)


def start_local_activity_method(activity: Callable[..., Any], *args: Any, **options: Any) -> ActivityHandle[Any]:
    """:func:`start_local_activity` for an activity that is a method (``Db.fetch``)."""
    return start_local_activity(activity, *args, **options)


async def execute_local_activity_method(activity: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """:func:`execute_local_activity` for an activity that is a method (``Db.fetch``)."""
    return await start_local_activity(activity, *args, **options)


# ------------------------------------------------------------------------------ timers


def start_timer(duration: timedelta | float, *, name: str = "") -> TimerHandle:
    """Start a durable timer (records ``TimerStarted``); await the handle to wait for it,
    ``cancel()`` it to record ``TimerCancelled``."""
    ms = to_ms(duration, "timer duration")
    assert ms is not None
    return _rt().start_timer(ms, name)


async def sleep(duration: timedelta | float) -> None:
    """Wait durably (a one-year sleep survives restarts). ``asyncio.sleep`` in workflow code
    is mapped to the same durable timer."""
    ms = to_ms(duration, "sleep duration")
    if not ms:
        await asyncio.sleep(0)
        return
    await _rt().start_timer(ms, "sleep")


async def wait_condition(fn: Callable[[], bool], *, timeout: timedelta | float | None = None) -> None:
    """Wait until ``fn()`` is true (re-checked after every change of workflow state).

    With ``timeout``, a durable timer races the condition: raises
    :class:`aion.exceptions.TimeoutError` if the timer is recorded first.
    """
    rt = _rt()
    if fn():
        return
    if timeout is None:
        await rt.wait_condition(fn)
        return
    async with _Timeout(to_ms(timeout, "wait_condition timeout") or 0, "wait_condition"):
        await rt.wait_condition(fn)


class _Timeout:
    """``async with workflow.timeout(d):`` — a durable anonymous timer cancels the body.

    The body's task is cancelled when the timer's ``TimerFired`` is applied; if the body
    finishes first the timer is cancelled (``TimerCancelled``). Whichever event the history
    recorded first wins, in a live run and in replay alike.
    """

    def __init__(self, ms: int, name: str = "timeout") -> None:
        self._ms = ms
        self._name = name
        self._task: asyncio.Task[Any] | None = None
        self._timer: TimerHandle | None = None
        self._expired = False
        self._exited = False
        self._cancelling = 0

    async def __aenter__(self) -> "_Timeout":
        task = asyncio.current_task()
        if task is None:  # pragma: no cover
            raise RuntimeError("workflow.timeout() must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._timer = _rt().start_timer(self._ms, self._name)
        self._timer.add_done_callback(self._on_timer)
        return self

    def _on_timer(self, fut: "asyncio.Future[None]") -> None:
        if fut.cancelled() or self._exited or self._task is None:
            return
        self._expired = True
        self._task.cancel()

    @property
    def expired(self) -> bool:
        return self._expired

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self._exited = True
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        if self._expired and exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            assert self._task is not None
            if self._task.uncancel() <= self._cancelling:
                raise _AionTimeoutError(
                    f"{self._name} deadline of {self._ms / 1000:g}s passed"
                ) from exc
        return False


def timeout(duration: timedelta | float) -> _Timeout:
    """A durable deadline around any awaits: ``async with workflow.timeout(d): ...`` raises
    :class:`aion.exceptions.TimeoutError` when the deadline's timer fires first."""
    ms = to_ms(duration, "timeout")
    return _Timeout(ms or 0)


# ------------------------------------------------------------------------------ children
# Typed as Temporal's: ``await execute_child_workflow(Child.run, arg)`` is what ``Child.run``
# returns; a call with none or one argument is checked against the run method (whose first
# parameter is its ``self``).


def _child_options(
    id: str | None,
    task_queue: str | None,
    parent_close_policy: ParentClosePolicy | str,
    execution_timeout: timedelta | None,
    result_type: Any,
    retry_policy: RetryPolicy | None = None,
    cron_schedule: str = "",
    memo: Mapping[str, Any] | None = None,
) -> ChildOptions:
    if id is not None and (problem := workflow_id_problem(id, "child workflow id")):
        raise InvalidArgumentError(problem)
    if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
        raise TypeError("retry_policy must be an aion.RetryPolicy")
    if not isinstance(cron_schedule, str):
        raise TypeError("cron_schedule must be a cron expression string")
    if memo is not None and (not isinstance(memo, Mapping) or not all(isinstance(k, str) for k in memo)):
        raise TypeError("memo must be a dict with str keys")
    return ChildOptions(
        id=id,
        task_queue=checked_task_queue(task_queue),
        parent_close_policy=ParentClosePolicy(parent_close_policy),
        execution_timeout_ms=to_ms(execution_timeout, "execution_timeout"),
        result_type=result_type,
        retry_policy=retry_policy,
        cron_schedule=cron_schedule,
        memo=memo,
    )


@overload
async def start_child_workflow(workflow: Callable[[Any], Awaitable[R]], /, **options: Unpack[_ChildKw]) -> ChildWorkflowHandle[R]: ...
@overload
async def start_child_workflow(workflow: Callable[[Any, A], Awaitable[R]], arg: A, /, **options: Unpack[_ChildKw]) -> ChildWorkflowHandle[R]: ...
@overload
async def start_child_workflow(workflow: Callable[..., Awaitable[R]], arg1: Any, arg2: Any, /, *args: Any, **options: Unpack[_ChildKw]) -> ChildWorkflowHandle[R]: ...
@overload
async def start_child_workflow(workflow: str | type, /, *args: Any, **options: Unpack[_ChildKw]) -> ChildWorkflowHandle[Any]: ...
async def start_child_workflow(
    workflow: Any,
    *args: Any,
    id: str | None = None,
    task_queue: str | None = None,
    parent_close_policy: ParentClosePolicy | str = ParentClosePolicy.TERMINATE,
    execution_timeout: timedelta | None = None,
    result_type: Any = None,
    retry_policy: RetryPolicy | None = None,
    cron_schedule: str = "",
    memo: Mapping[str, Any] | None = None,
) -> ChildWorkflowHandle[Any]:
    """Start a child workflow (records ``ChildWorkflowStarted``) and return its handle.

    ``workflow`` is the child's run method (``Child.run``), its class, or its type name.
    The default child id is derived from this workflow's id, run and an ordinal. A child
    whose id is already running is not started: the handle fails with ``ChildWorkflowError``
    (cause ``WorkflowAlreadyStartedError``).

    As in Temporal: with ``retry_policy`` a failed child run is retried as a new run of the same
    child id (the parent sees the last run's outcome); with ``cron_schedule`` the child runs at
    each fire time until it is cancelled or terminated; ``memo`` is shown by the child's
    ``describe()`` and ``workflow.memo()``.
    """
    opts = _child_options(id, task_queue, parent_close_policy, execution_timeout, result_type,
                          retry_policy, cron_schedule, memo)
    return _rt().start_child(workflow, args, opts)


@overload
async def execute_child_workflow(workflow: Callable[[Any], Awaitable[R]], /, **options: Unpack[_ChildKw]) -> R: ...
@overload
async def execute_child_workflow(workflow: Callable[[Any, A], Awaitable[R]], arg: A, /, **options: Unpack[_ChildKw]) -> R: ...
@overload
async def execute_child_workflow(workflow: Callable[..., Awaitable[R]], arg1: Any, arg2: Any, /, *args: Any, **options: Unpack[_ChildKw]) -> R: ...
@overload
async def execute_child_workflow(workflow: str | type, /, *args: Any, **options: Unpack[_ChildKw]) -> Any: ...
async def execute_child_workflow(
    workflow: Any,
    *args: Any,
    id: str | None = None,
    task_queue: str | None = None,
    parent_close_policy: ParentClosePolicy | str = ParentClosePolicy.TERMINATE,
    execution_timeout: timedelta | None = None,
    result_type: Any = None,
    retry_policy: RetryPolicy | None = None,
    cron_schedule: str = "",
    memo: Mapping[str, Any] | None = None,
) -> Any:
    """Start a child workflow and wait for its result; raises ``ChildWorkflowError`` when the
    child does not complete."""
    opts = _child_options(id, task_queue, parent_close_policy, execution_timeout, result_type,
                          retry_policy, cron_schedule, memo)
    return await _rt().start_child(workflow, args, opts)


# ------------------------------------------------------------------------------ misc


def continue_as_new(*args: Any, workflow: Any = None, task_queue: str | None = None) -> NoReturn:
    """End this run and start a new run of the same workflow id with ``args`` (a fresh, short
    history). Never returns."""
    _rt()
    wf_name = None
    if workflow is not None:
        wf_name = workflow if isinstance(workflow, str) else getattr(
            workflow, "__aion_workflow_type__", None) or getattr(
            getattr(workflow, "__aion_workflow_definition__", None), "name", None)
    raise ContinueAsNewError(args, wf_name, checked_task_queue(task_queue))


def info() -> Info:
    """This workflow's ids, attempt and history length (deterministic)."""
    return _rt().info()


_NO_DEFAULT: Any = object()


def memo() -> dict[str, Any]:
    """The memo this workflow was started with (``start_workflow(..., memo=...)``, a child's
    ``memo=``), values decoded; kept across retries, cron runs and continue-as-new."""
    return _rt().memo()


def memo_value(key: str, default: Any = _NO_DEFAULT, *, type_hint: Any = None) -> Any:
    """One value of :func:`memo`; ``KeyError`` when it is missing and no ``default`` is given."""
    try:
        return _rt().memo_value(key, type_hint)
    except KeyError:
        if default is _NO_DEFAULT:
            raise
        return default


def has_last_completion_result() -> bool:
    """Whether an earlier run of this cron workflow completed (see
    :func:`get_last_completion_result`)."""
    return _rt().last_completion_result(None) is not None


def get_last_completion_result(type_hint: Any = None) -> Any:
    """The result of the last run of this cron workflow that completed (None before any did).
    Retries of a run see the same value."""
    return _rt().last_completion_result(type_hint)


def get_last_failure() -> BaseException | None:
    """The failure of the previous run when this run is its retry, or the cron run after a
    failed one (None otherwise)."""
    return _rt().last_failure()


def now() -> datetime:
    """The workflow clock: the time recorded for the event being applied (UTC, aware)."""
    return datetime.fromtimestamp(_rt().now_ms() / 1000, tz=timezone.utc)


def time() -> float:
    """The workflow clock in seconds since the epoch (see :func:`now`)."""
    return _rt().now_ms() / 1000


def random() -> _random.Random:
    """A :class:`random.Random` seeded from the run id: the same numbers in every replay."""
    return _rt().random()


def uuid4() -> _uuid.UUID:
    """A version-4 UUID drawn from :func:`random` (deterministic)."""
    return _uuid.UUID(int=_rt().random().getrandbits(128), version=4)


def side_effect(fn: Callable[[], T], *, result_type: Any = None) -> T:
    """Run ``fn`` once and record its (encodable) value as a marker; replays return the
    recorded value without calling ``fn``. For small non-deterministic values only (ids,
    clocks); anything with I/O belongs in an activity."""
    return _rt().side_effect(fn, result_type)


def patched(patch_id: str) -> bool:
    """Branch on a code change safely: ``if workflow.patched("v2"): new() else: old()``.

    A new run records a marker and returns True; a replay of history recorded before the
    change (no marker at this point) returns False so the old path re-issues the old commands.
    """
    return _rt().patched(patch_id, False)


def deprecate_patch(patch_id: str) -> None:
    """Once no history without the marker is running: keeps accepting the marker in replay
    without requiring it."""
    _rt().patched(patch_id, True)


async def signal_external(workflow_id: str, signal: str, *args: Any) -> None:
    """Signal another workflow (records ``SignalSent``; delivery is asynchronous)."""
    _rt().signal_external(workflow_id, signal, args)


def get_external_workflow_handle(workflow_id: str, *, run_id: str | None = None) -> ExternalWorkflowHandle:
    """A handle to another workflow by id, to ``signal`` or ``cancel`` it from workflow code."""
    rt = _rt()
    if problem := workflow_id_problem(workflow_id):
        raise InvalidArgumentError(f"get_external_workflow_handle: {problem}")
    return ExternalWorkflowHandle(workflow_id, run_id, rt)


def get_external_workflow_handle_for(workflow: Any, workflow_id: str, *,
                                     run_id: str | None = None) -> ExternalWorkflowHandle:
    """:func:`get_external_workflow_handle`, typed by the target's run method (Temporal's)."""
    return get_external_workflow_handle(workflow_id, run_id=run_id)


def upsert_search_attributes(attributes: Any) -> None:
    """Record indexed attributes for visibility (``SearchAttributesUpserted``).

    As in Temporal: a list of typed updates (``SearchAttributeKey.for_int("Priority").value_set(2)``,
    ``key.value_unset()``; ``aion.common``), or a dict (``{"Customer": "c-1"}``; a list of str is a
    keyword list, an int, float, bool or datetime gets that type). A value that fits no type
    raises :class:`~aion.exceptions.InvalidArgumentError` naming the attribute."""
    _rt().upsert_search_attributes(attributes)

