"""Unit-testing one activity function without a workflow: ``ActivityEnvironment``."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from typing import Any, Callable

from ..activity._context import ActivityContext, ActivityInfo, current, make_info


class ActivityEnvironment:
    """Runs an activity function with an :class:`~aion.activity.ActivityContext` current, so
    ``activity.info()``, ``activity.heartbeat()`` and the cancellation helpers work.

    ```python
    env = ActivityEnvironment()
    assert await env.run(charge, "order-1", 1999) == "ch-order-1"
    assert env.heartbeats == [...]
    ```

    ``cancel()`` requests cancellation of the running attempt (and cancels an ``async`` one's
    task, as the worker does).
    """

    def __init__(self, info: ActivityInfo | None = None, **info_fields: Any) -> None:
        if info is None:
            fields: dict[str, Any] = {"workflow_id": "test-workflow", "run_id": "test-run",
                                      "activity_id": "1", "activity_type": "test-activity", "attempt": 1}
            fields.update(info_fields)
            info = make_info(**fields)
        self.info = info
        #: The details of every ``activity.heartbeat(...)`` call, in order.
        self.heartbeats: list[tuple[Any, ...]] = []
        self._ctx: ActivityContext | None = None
        self._task: asyncio.Task[Any] | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` (``async`` on this loop, sync in a thread) as one attempt."""
        ctx = ActivityContext(self.info, self.heartbeats.append)
        self._ctx = ctx
        try:
            if inspect.iscoroutinefunction(fn):
                async def in_context() -> Any:
                    current.set(ctx)
                    return await fn(*args)

                self._task = asyncio.get_running_loop().create_task(
                    in_context(), context=contextvars.copy_context())
                return await self._task

            ctx.heartbeat_raises_cancel = True

            def in_thread() -> Any:
                current.set(ctx)
                return fn(*args)

            return await asyncio.get_running_loop().run_in_executor(
                None, contextvars.copy_context().run, in_thread)
        finally:
            self._task = None

    def cancel(self, reason: str = "CANCEL_REQUESTED") -> None:
        """Request cancellation of the running attempt."""
        if self._ctx is not None:
            self._ctx.request_cancel(reason)
        if self._task is not None and not self._task.done():
            self._task.cancel()
