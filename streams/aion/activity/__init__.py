"""The activity authoring API.

```python
from aion import activity

@activity.defn                   # sync or async; optional name=
async def charge(order_id: str, cents: int) -> str:
    activity.heartbeat("progress")
    if activity.is_cancelled(): ...
```

Inside a running activity, ``info()``, ``heartbeat()``, ``is_cancelled()`` and
``wait_for_cancel()`` read the attempt's context (set by the worker or the test environment);
``logger`` adds the attempt's ids to every record. ``raise_complete_async()`` ends the
function without an outcome: another process reports it later with the attempt's
``info().task_token`` (``client.get_async_activity_handle``).
"""

from __future__ import annotations

from typing import Any, NoReturn

from . import _context
from ._context import ActivityContext, ActivityInfo, CompleteAsyncError, NotInActivityError
from ._definition import ActivityDefinition, defn
from ._logger import ActivityLoggerAdapter, logger

__all__ = [
    "defn",
    "ActivityDefinition",
    "ActivityInfo",
    "ActivityContext",
    "NotInActivityError",
    "CompleteAsyncError",
    "info",
    "heartbeat",
    "is_cancelled",
    "wait_for_cancel",
    "wait_for_cancel_sync",
    "wait_for_cancelled",
    "wait_for_cancelled_sync",
    "in_activity",
    "raise_complete_async",
    "logger",
    "ActivityLoggerAdapter",
]


def info() -> ActivityInfo:
    """The running attempt's ids, attempt number and deadlines."""
    return _context.get_context().info


def heartbeat(*details: Any) -> None:
    """Report progress; ``details`` are handed to the next attempt if this one fails.

    In a sync activity whose cancellation was requested, raises ``CancelledError``: a loop
    that heartbeats stops there (an ``async`` activity's task is cancelled instead)."""
    _context.get_context().heartbeat(*details)


def is_cancelled() -> bool:
    """Whether cancellation of this attempt was requested."""
    return _context.get_context().is_cancelled()


async def wait_for_cancel() -> None:
    """Wait until cancellation of this attempt is requested."""
    await _context.get_context().wait_for_cancelled()


def wait_for_cancel_sync(timeout: float | None = None) -> bool:
    """Block (sync activities) until cancellation is requested; False on timeout."""
    return _context.get_context().wait_for_cancelled_sync(timeout)


#: Temporal's spelling of :func:`wait_for_cancel`.
wait_for_cancelled = wait_for_cancel
#: Temporal's spelling of :func:`wait_for_cancel_sync`.
wait_for_cancelled_sync = wait_for_cancel_sync


def raise_complete_async() -> NoReturn:
    """End the activity function without an outcome: the attempt stays open (its timeouts
    still run) until ``client.get_async_activity_handle(task_token=info().task_token)``
    reports ``complete``, ``fail`` or ``report_cancellation``, from any process."""
    ctx = _context.get_context()
    raise CompleteAsyncError(
        f"activity {ctx.info.activity_type!r} (workflow {ctx.info.workflow_id!r}, activity "
        f"{ctx.info.activity_id}) completes asynchronously")


def in_activity() -> bool:
    """Whether the caller runs inside an activity attempt."""
    return _context.in_activity()
