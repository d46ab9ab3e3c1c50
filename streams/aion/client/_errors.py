"""Client-side errors that have no wire form, and the mapping of ERROR replies to exceptions.

Every error the client raises itself lives here (the modules that raise them re-export the
public ones from their old place). All derive from :class:`~aion.exceptions.AionError`; the ones
that used to be builtin errors keep that builtin as a second base, so ``except TimeoutError``,
``except RuntimeError`` and ``except TypeError`` still catch them.
"""

from __future__ import annotations

import builtins

from ..exceptions import AionError, ApplicationError, InvalidArgumentError, QueryError, failure_to_exception
from ..common.kafka import DeliveryError  # noqa: F401  (re-exported: raised by the Kafka adapters every part shares)
from ..common.list_filter import ListFilterError  # noqa: F401  (re-exported: raised where a filter is read)
from ..model import Failure, Reply


class RPCTimeoutError(AionError, builtins.TimeoutError):
    """The engine did not answer in time (is an engine worker running for this topic prefix?).

    Also a builtin :class:`TimeoutError`, so ``except TimeoutError`` catches it.
    """


class QueryTimeoutError(QueryError, builtins.TimeoutError):
    """A query got no answer in time: the workflow's engine worker is busy, down or rebalancing."""


class VisibilityTimeoutError(RPCTimeoutError):
    """``list_workflows`` / ``count_workflows`` could not read the whole visibility index in time:
    nothing is returned rather than a part of it."""


class WorkflowResultTimeoutError(RPCTimeoutError):
    """``handle.result(timeout=...)``: the workflow did not close within the timeout (it still runs)."""


class TopicMissingError(AionError, RuntimeError):
    """A topic aion needs does not exist."""


class ConsumerGroupActiveError(AionError):
    """A consumer group's offsets cannot be reset while members of the group are running."""


class NotAWorkflowError(AionError, TypeError):
    """What was passed as a workflow is neither a type name nor a ``@workflow.defn`` class/run method."""


class ScheduleAlreadyExistsError(AionError):
    """A schedule with this id exists (and is not deleted)."""


class ScheduleNotFoundError(AionError):
    """No schedule with this id (never created, or deleted)."""


class CommandRejectedError(AionError):
    """The engine refused a command for a reason that has no dedicated class (``failure`` says why)."""

    def __init__(self, message: str, failure: Failure | None = None) -> None:
        super().__init__(message)
        self.failure = failure


def error_from_reply(reply: Reply, what: str) -> BaseException:
    """The exception an ERROR reply stands for: the aion class named by ``failure.type`` when
    there is one (WorkflowAlreadyStartedError, WorkflowNotFoundError, QueryError, ...), else a
    :class:`CommandRejectedError` carrying the failure."""
    f = reply.failure or Failure(type="UnknownError", message="the engine refused the command without a reason")
    exc = failure_to_exception(f)
    if isinstance(exc, AionError) and not isinstance(exc, ApplicationError):
        if not exc.message:
            exc.message = f"{what} for workflow {reply.workflow_id!r} was refused ({f.type})"
        return exc
    return CommandRejectedError(
        f"{what} for workflow {reply.workflow_id!r} was refused: {f.type}: {f.message}", f
    )
