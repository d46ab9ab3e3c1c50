"""Typed errors of Aion Streams, and their conversion to and from the wire :class:`~aion.model.Failure`.

Workflow and activity code raise and catch these; the engine records them as failure chains
(``Failure`` with ``cause``) and clients get them back as exceptions.

One root
--------
Every error class of the package derives from :class:`AionError`, so ``except AionError``
catches whatever Aion raises on purpose. The errors of the other parts (``CodecError``,
``SettingsError``, ``TopicConfigError``, the client's ``TopicMissingError``, ...) keep their
former builtin as a second base (``class CodecError(AionError, ValueError)``), so existing
``except ValueError`` clauses still catch them. Not under the root, by design:
:data:`CancelledError` (below) and two internal control-flow exceptions that are
:class:`BaseException` so that ``except Exception`` in workflow code cannot swallow them
(``ContinueAsNewError``, the watchdog's ``DeadlockInterrupt``). ``tests/unit/test_error_root.py``
walks the package for strays.

Cancellation
------------
:data:`CancelledError` **is** :class:`asyncio.CancelledError` (an alias, not a subclass). In a
workflow, a cancel request, a cancelled activity/timer/child and plain asyncio task cancellation
all raise that same class at the current ``await``, so a single ``except CancelledError:``
catches every form of it, and re-raising it (or letting it propagate) ends the workflow
``CANCELLED``. Being a :class:`BaseException`, it is *not* swallowed by ``except Exception``.
A subclass could not give both properties, because asyncio itself raises the base class.

Failure type names
------------------
``exception_to_failure`` writes ``Failure.type`` as the exception's class name, except for an
:class:`ApplicationError` with an explicit ``type=`` (that application type is written). This is
what ``RetryPolicy.non_retryable_error_types`` matches against: ``"ValueError"`` or
``"CardDeclined"``. ``failure_to_exception`` rebuilds the aion classes by name and turns any
other type into an :class:`ApplicationError` with ``type`` set to that name.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import traceback
from dataclasses import dataclass
from typing import Any, Sequence

from .model import Failure, Payload

__all__ = [
    "AionError",
    "ApplicationError",
    "FailureError",
    "ActivityError",
    "ChildWorkflowError",
    "CancelledError",
    "TimeoutError",
    "TerminatedError",
    "NondeterminismError",
    "WorkflowFailureError",
    "WorkflowAlreadyStartedError",
    "WorkflowNotFoundError",
    "WorkflowTypeNotFoundError",
    "SignalNotFoundError",
    "SignalArgumentsError",
    "QueryError",
    "PayloadTooLargeError",
    "InvalidArgumentError",
    "CommandIdReusedError",
    "TooManyWaitersError",
    "WorkflowStateError",
    "UpdateNotFoundError",
    "TooManyUpdatesError",
    "WorkflowUpdateFailedError",
    "DeadlockError",
    "exception_to_failure",
    "failure_to_exception",
]

#: See the module docs: the workflow cancellation error is asyncio's own.
CancelledError = asyncio.CancelledError


class AionError(Exception):
    """Base class of every error Aion raises on purpose."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class _FailureView:
    """``err.failure``: Temporal's ``Failure`` fields that code reads (``message``,
    ``stack_trace``, ``cause``), for an error that travelled as a failure."""

    message: str
    stack_trace: str
    type: str
    non_retryable: bool
    cause: "_FailureView | None"


class FailureError(AionError):
    """Base of errors that travel as a :class:`~aion.model.Failure` (activity, workflow, child)."""

    #: The stack text of the original exception, when it came from another process.
    remote_stack: str = ""

    @property
    def failure(self) -> _FailureView:
        """The failure as Temporal's SDK shows it: ``err.failure.stack_trace`` is the stack of
        the original exception where it was raised (another process' for a remote error), and
        ``err.failure.cause`` the failure of ``__cause__``."""
        stack = self.remote_stack
        if not stack and self.__traceback__ is not None:
            stack = "".join(traceback.format_tb(self.__traceback__))
        cause = self.__cause__
        return _FailureView(
            message=str(self), stack_trace=stack, type=getattr(self, "type", None) or type(self).__name__,
            non_retryable=bool(getattr(self, "non_retryable", False)),
            cause=cause.failure if isinstance(cause, FailureError) else None)


class ApplicationError(FailureError):
    """An error raised on purpose by workflow or activity code.

    ``type`` names the error for retry policies (``non_retryable_error_types``) and for callers;
    ``non_retryable=True`` stops activity retries regardless of the policy. ``details`` are any
    JSON-able values that travel with the failure.
    """

    def __init__(
        self,
        message: str = "",
        *details: Any,
        type: str | None = None,
        non_retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.details: tuple[Any, ...] = tuple(details)
        self.type = type
        self.non_retryable = non_retryable


class TimeoutError(FailureError, builtins.TimeoutError):
    """A durable deadline passed: ``wait_condition(timeout=)``, ``workflow.timeout()``, or an
    activity/child/workflow timeout (``timeout_type`` says which: ``START_TO_CLOSE``,
    ``SCHEDULE_TO_START``, ``SCHEDULE_TO_CLOSE``, ``HEARTBEAT``, ``EXECUTION``, ``RUN``, or ``""``
    for a workflow-code deadline).

    Also the builtin :class:`TimeoutError` (which ``asyncio.TimeoutError`` is), so workflow code
    written ``except TimeoutError:`` or ``except asyncio.TimeoutError:`` around
    ``wait_condition(timeout=)`` catches it, as with asyncio and Temporal's Python SDK."""

    def __init__(self, message: str = "deadline exceeded", *, timeout_type: str = "") -> None:
        super().__init__(message)
        self.timeout_type = timeout_type


class TerminatedError(FailureError):
    """The workflow (or a child) was terminated; no code ran after it."""


class ActivityError(FailureError):
    """An activity ended without a result. ``__cause__`` (and ``cause``) holds why:
    an :class:`ApplicationError` (or the rebuilt remote exception), a :class:`TimeoutError`,
    or :data:`CancelledError`."""

    def __init__(
        self,
        message: str = "",
        *,
        activity_id: str = "",
        activity_type: str = "",
        attempt: int = 0,
        retry_state: str = "",
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message or f"activity {activity_type!r} (id {activity_id}) failed")
        self.activity_id = activity_id
        self.activity_type = activity_type
        self.attempt = attempt
        #: NON_RETRYABLE_FAILURE | MAXIMUM_ATTEMPTS_REACHED | TIMEOUT | CANCEL_REQUESTED | ""
        self.retry_state = retry_state
        if cause is not None:
            self.__cause__ = cause

    @property
    def cause(self) -> BaseException | None:
        return self.__cause__


class ChildWorkflowError(FailureError):
    """A child workflow ended without a result; ``__cause__`` holds why."""

    def __init__(
        self,
        message: str = "",
        *,
        workflow_id: str = "",
        workflow_type: str = "",
        status: str = "",
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message or f"child workflow {workflow_type!r} ({workflow_id}) {status.lower() or 'failed'}")
        self.workflow_id = workflow_id
        self.workflow_type = workflow_type
        #: FAILED | CANCELLED | TERMINATED | TIMED_OUT
        self.status = status
        if cause is not None:
            self.__cause__ = cause

    @property
    def cause(self) -> BaseException | None:
        return self.__cause__


#: How replay --strict's ``found`` ends when a command's values differ from the recorded ones.
_OTHER_VALUES = " (same identity, different values)"


class NondeterminismError(AionError):
    """Replaying a workflow's history against its code issued a different command.

    ``expected`` describes the event the history holds at ``seq``; ``found`` the command the
    code issued there (``"nothing"`` when one side ran out).
    """

    def __init__(
        self,
        message: str = "",
        *,
        workflow_id: str = "",
        run_id: str = "",
        seq: int = 0,
        expected: str = "",
        found: str = "",
    ) -> None:
        if not message and found.endswith(_OTHER_VALUES):  # replay --strict
            message = (
                f"workflow {workflow_id!r} (run {run_id}) diverged from its history at seq {seq}: "
                f"the history holds {expected} but the code issued {found}. The code computed other "
                f"values than were recorded: a non-deterministic call (random.random(), datetime.now(), "
                f"time.time(), uuid.uuid4()) feeds this command; use workflow.random(), workflow.now(), "
                f"workflow.time(), workflow.uuid4() (the engine warns of such calls on "
                f"aion.workflow.determinism)"
            )
        if not message:
            message = (
                f"workflow {workflow_id!r} (run {run_id}) diverged from its history at seq {seq}: "
                f"the history holds {expected} but the code issued {found}. Changing the commands "
                f"of running workflows needs workflow.patched(...); or replay the history with "
                f"the previous code"
            )
        super().__init__(message)
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.seq = seq
        self.expected = expected
        self.found = found


class DeadlockError(AionError):
    """Workflow code did not yield back to the runtime within the deadlock timeout (a blocking
    call or a busy loop in workflow code: move it into an activity).

    ``code_id`` is the ``Registry.code_id`` of the code that deadlocked (recorded with the task
    failure): the engine does not retry the task on that same code, only once other code (a
    restarted or newly deployed engine worker) holds the workflow, or on an explicit resume."""

    def __init__(self, message: str = "", *, code_id: str = "") -> None:
        super().__init__(message)
        self.code_id = code_id


class VersionNotLoadedError(AionError):
    """The run is pinned to a build (``WorkflowStarted.code_version``) that this engine worker
    has not loaded — not deployed (yet), unloaded, or its import failed. The run is held, never
    run on other code, and goes on once the build is loaded (see ``aion deploy``)."""


class BuildNotFoundError(AionError):
    """``aion deploy``: no build with this id is deployed (``aion deploy list`` shows them)."""


class BuildInUseError(AionError):
    """``aion deploy unload`` refused: open runs are pinned to the build, or a workflow type is
    routed to it. ``open_runs`` counts the runs, ``example`` names one of them, ``routes`` the
    types routed to it."""

    def __init__(self, message: str = "", *, build_id: str = "", open_runs: int = 0, example: str = "",
                 routes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.build_id = build_id
        self.open_runs = open_runs
        self.example = example
        self.routes = routes


class WorkflowFailureError(AionError):
    """Client side: the workflow run did not complete. ``status`` is FAILED, CANCELLED,
    TERMINATED or TIMED_OUT; ``__cause__`` (and ``cause``) holds the rebuilt failure chain."""

    def __init__(
        self,
        message: str = "",
        *,
        workflow_id: str = "",
        run_id: str | None = None,
        status: str = "FAILED",
        cause: BaseException | None = None,
        failure: Failure | None = None,
    ) -> None:
        super().__init__(message or f"workflow {workflow_id!r} ended {status}")
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.status = status
        self.failure = failure
        if cause is None and failure is not None:
            cause = failure_to_exception(failure)
        if cause is not None:
            self.__cause__ = cause

    @property
    def cause(self) -> BaseException | None:
        return self.__cause__


class WorkflowAlreadyStartedError(AionError):
    """A start was refused: a run with that workflow id is open (or its reuse policy forbids it)."""


class WorkflowNotFoundError(AionError):
    """No workflow (or no open run) with that id: the command could not be applied."""


class WorkflowTypeNotFoundError(AionError):
    """The workflow type is not registered with the engine."""


class SignalNotFoundError(AionError):
    """The workflow type has no handler for that signal name."""


class SignalArgumentsError(AionError, TypeError):
    """A signal's arguments do not fit its handler (too many or too few, or a value that cannot
    be decoded as the parameter's type): the engine refuses the signal (nothing is recorded,
    the run goes on) instead of delivering it to fail in the handler. Also a
    :class:`TypeError`, as calling the handler with them would raise."""


class QueryError(AionError):
    """A query could not be answered (unknown query, handler raised, workflow held)."""


class PayloadTooLargeError(AionError):
    """An encoded payload is larger than the configured maximum (``max_payload_bytes``)."""


class InvalidArgumentError(AionError, ValueError):
    """A command field is outside its limits (an empty or over-long id, a control character in a
    name, an illegal task queue, a duration beyond 100 years, a reply address the engine does
    not answer on: see ``aion.model.limits``). Raised by the client before sending and by the
    engine for a record that another producer wrote; also a :class:`ValueError`."""


class WorkflowStateError(AionError):
    """The command does not apply to the workflow's current state: pausing a paused run,
    resuming one that is not paused. The message names the state."""


class CommandIdReusedError(AionError):
    """A command id that the workflow already recorded came again with a different body (a
    different signal, another workflow type): the new command is refused, not silently taken
    as a re-delivery. Give each distinct command its own id."""


class TooManyWaitersError(AionError):
    """More senders wait for one workflow's result than the engine keeps waiters for
    (``aion.runtime.MAX_WAITERS``): wait on fewer handles, or read the result from the events
    topic."""


class UpdateNotFoundError(AionError):
    """The workflow type has no handler for that update name: the update is refused (nothing
    is recorded)."""


class TooManyUpdatesError(AionError):
    """The run has as many updates in flight as it may (``aion.runtime.MAX_UPDATES_IN_FLIGHT``),
    or has recorded as many as one run may (``MAX_UPDATES_PER_RUN``): the update is refused
    (nothing is recorded). Wait for updates in flight to finish, or continue the workflow as new."""


class WorkflowUpdateFailedError(AionError):
    """Client side: an update did not produce a result: its validator rejected it (nothing was
    recorded), its handler raised (``WorkflowUpdateCompleted`` holds the failure), or the run
    closed before its handler finished. ``__cause__`` (and ``cause``) is what was raised."""

    def __init__(self, message: str = "", *, update_id: str = "", update_name: str = "",
                 cause: BaseException | None = None) -> None:
        super().__init__(message or f"update {update_name!r} ({update_id}) failed")
        self.update_id = update_id
        self.update_name = update_name
        if cause is not None:
            self.__cause__ = cause

    @property
    def cause(self) -> BaseException | None:
        return self.__cause__


# ---------------------------------------------------------------------------- conversions

#: Classes rebuilt by name from a Failure (everything else becomes an ApplicationError).
_BY_NAME: dict[str, type[BaseException]] = {}


def _register(*classes: type[BaseException]) -> None:
    for c in classes:
        _BY_NAME[c.__name__] = c


_register(
    ApplicationError, TimeoutError, TerminatedError, ActivityError, ChildWorkflowError,
    NondeterminismError, DeadlockError, WorkflowFailureError, WorkflowAlreadyStartedError,
    WorkflowNotFoundError, WorkflowTypeNotFoundError, SignalNotFoundError, SignalArgumentsError, QueryError,
    PayloadTooLargeError, InvalidArgumentError, CommandIdReusedError, TooManyWaitersError, WorkflowStateError,
    UpdateNotFoundError, TooManyUpdatesError, WorkflowUpdateFailedError,
)

_META_CT = "application/json"


def _meta_payload(meta: dict[str, Any]) -> Payload:
    return Payload(_META_CT, json.dumps(meta, separators=(",", ":"), default=repr).encode())


def _meta(p: Payload | None) -> dict[str, Any]:
    if p is None:
        return {}
    try:
        v = json.loads(p.data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return v if isinstance(v, dict) else {}


def _stack_of(exc: BaseException) -> str:
    remote = getattr(exc, "remote_stack", "")
    if remote:
        return remote
    if exc.__traceback__ is None:
        return ""
    return "".join(traceback.format_tb(exc.__traceback__))


def exception_to_failure(exc: BaseException, converter: Any = None) -> Failure:
    """Turn an exception (and its ``__cause__`` chain) into a :class:`~aion.model.Failure`.

    ``converter`` encodes ``ApplicationError.details`` (default: the module default converter).
    """
    cause_exc = exc.__cause__
    cause = exception_to_failure(cause_exc, converter) if cause_exc is not None else None
    stack = _stack_of(exc)
    if isinstance(exc, ApplicationError):
        details = None
        if exc.details:
            from .converter import default_converter

            conv = converter or default_converter()
            details = conv.to_payload(list(exc.details))
        return Failure(
            type=exc.type or "ApplicationError",
            message=exc.message,
            details=details,
            non_retryable=exc.non_retryable,
            stack=stack,
            cause=cause,
        )
    if isinstance(exc, asyncio.CancelledError):
        return Failure(type="CancelledError", message=str(exc) or "cancelled", stack=stack, cause=cause)
    meta: dict[str, Any] = {}
    if isinstance(exc, ActivityError):
        meta = {"activity_id": exc.activity_id, "activity_type": exc.activity_type,
                "attempt": exc.attempt, "retry_state": exc.retry_state}
    elif isinstance(exc, ChildWorkflowError):
        meta = {"workflow_id": exc.workflow_id, "workflow_type": exc.workflow_type, "status": exc.status}
    elif isinstance(exc, TimeoutError):
        meta = {"timeout_type": exc.timeout_type}
    elif isinstance(exc, NondeterminismError):
        meta = {"workflow_id": exc.workflow_id, "run_id": exc.run_id, "seq": exc.seq,
                "expected": exc.expected, "found": exc.found}
    elif isinstance(exc, WorkflowFailureError):
        meta = {"workflow_id": exc.workflow_id, "run_id": exc.run_id, "status": exc.status}
    elif isinstance(exc, DeadlockError) and exc.code_id:
        meta = {"code_id": exc.code_id}
    message = exc.message if isinstance(exc, AionError) else str(exc)
    return Failure(
        type=type(exc).__name__,
        message=message,
        details=_meta_payload(meta) if meta else None,
        non_retryable=False,
        stack=stack,
        cause=cause,
    )


def failure_to_exception(f: Failure, converter: Any = None) -> BaseException:
    """Rebuild an exception chain from a :class:`~aion.model.Failure` (inverse of
    :func:`exception_to_failure`): aion classes by name, :data:`CancelledError`, and
    :class:`ApplicationError` (``type`` = the failure's type) for everything else."""
    cause = failure_to_exception(f.cause, converter) if f.cause is not None else None
    exc: BaseException
    cls = _BY_NAME.get(f.type)
    meta = _meta(f.details) if cls is not None and cls is not ApplicationError else {}
    if f.type == "CancelledError":
        exc = CancelledError(f.message) if f.message and f.message != "cancelled" else CancelledError()
    elif cls is ActivityError:
        exc = ActivityError(f.message, activity_id=meta.get("activity_id", ""),
                            activity_type=meta.get("activity_type", ""),
                            attempt=int(meta.get("attempt", 0) or 0),
                            retry_state=meta.get("retry_state", ""))
    elif cls is ChildWorkflowError:
        exc = ChildWorkflowError(f.message, workflow_id=meta.get("workflow_id", ""),
                                 workflow_type=meta.get("workflow_type", ""),
                                 status=meta.get("status", ""))
    elif cls is TimeoutError:
        exc = TimeoutError(f.message, timeout_type=meta.get("timeout_type", ""))
    elif cls is NondeterminismError:
        exc = NondeterminismError(f.message, workflow_id=meta.get("workflow_id", ""),
                                  run_id=meta.get("run_id", ""), seq=int(meta.get("seq", 0) or 0),
                                  expected=meta.get("expected", ""), found=meta.get("found", ""))
    elif cls is WorkflowFailureError:
        exc = WorkflowFailureError(f.message, workflow_id=meta.get("workflow_id", ""),
                                   run_id=meta.get("run_id"), status=meta.get("status", "FAILED"))
    elif cls is DeadlockError:
        exc = DeadlockError(f.message, code_id=str(meta.get("code_id", "")))
    elif cls is not None and cls is not ApplicationError:
        exc = cls(f.message)
    else:
        details: Sequence[Any] = ()
        if f.details is not None:
            from .converter import default_converter

            conv = converter or default_converter()
            try:
                decoded = conv.from_payload(f.details)
                details = decoded if isinstance(decoded, list) else [decoded]
            except Exception:  # undecodable details must not hide the failure itself
                details = ()
        exc = ApplicationError(
            f.message,
            *details,
            type=None if f.type == "ApplicationError" else f.type,
            non_retryable=f.non_retryable,
        )
    if isinstance(exc, FailureError) and f.stack:
        exc.remote_stack = f.stack
        # Printed after the message by Python's traceback, so a remote error shows where it
        # was raised (str(exc) stays the message).
        exc.add_note(f"remote stack of {f.type} ({f.message[:200]}):\n{f.stack.rstrip()}")
    if cause is not None:
        exc.__cause__ = cause
    return exc


# Versioned deploys (aion.deploy): kept apart from the list above.
__all__ += ["VersionNotLoadedError", "BuildNotFoundError", "BuildInUseError"]
_register(VersionNotLoadedError, BuildNotFoundError, BuildInUseError)
