"""Handles returned by ``start_activity``, ``start_timer`` and ``start_child_workflow``.

Each handle is an :class:`asyncio.Future` of the workflow's deterministic loop: ``await handle``
gives the result (or raises), ``handle.cancel()`` records the cancellation command. The runtime
creates them and supplies the ``_request_cancel`` hook; this module imports nothing of it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Generic, TypeVar

__all__ = ["ActivityHandle", "TimerHandle", "ChildWorkflowHandle", "ExternalWorkflowHandle"]

T = TypeVar("T")


class _CancellableHandle(asyncio.Future, Generic[T]):
    """A future whose ``cancel()`` asks the runtime to record a cancellation first.

    The hook returns ``True`` when the future should be cancelled right away (the caller then
    sees ``CancelledError``), ``False`` when the handle resolves later (when the cancellation
    is confirmed by the other side).
    """

    _request_cancel: Callable[[Any], bool] | None = None
    _cancel_requested: bool = False

    def cancel(self, msg: Any = None) -> bool:
        if self.done():
            return False
        hook = self._request_cancel
        if self._cancel_requested:
            return True
        self._cancel_requested = True
        if hook is None or hook(self):
            return super().cancel(msg)
        return True  # resolves (as cancelled) once the other side confirms

    def _force_cancel(self, msg: Any = None) -> bool:
        """Runtime side: resolve as cancelled without recording anything more."""
        return super().cancel(msg)


class ActivityHandle(_CancellableHandle[T]):
    """A started activity: await it for the result; ``cancel()`` to request cancellation."""

    activity_id: str = ""
    activity_type: str = ""


class TimerHandle(_CancellableHandle[None]):
    """A started durable timer: await it to wait; ``cancel()`` records ``TimerCancelled``."""

    timer_id: str = ""
    name: str = ""
    fire_at_ms: int = 0


class ChildWorkflowHandle(_CancellableHandle[T]):
    """A started child workflow: ``await handle`` for its result (``handle.result()`` once it is
    done, as for any future), ``await handle.signal(name, *args)``, ``handle.cancel()`` to request
    its cancellation (the handle then resolves when the child has ended)."""

    id: str = ""
    workflow_type: str = ""
    _signal_hook: Callable[[str, tuple[Any, ...]], Any] | None = None

    async def signal(self, signal: Any, *args: Any) -> None:
        """Send a signal to the child (recorded as ``SignalSent``)."""
        assert self._signal_hook is not None
        await self._signal_hook(signal, args)


class ExternalWorkflowHandle:
    """Another workflow, by id (``workflow.get_external_workflow_handle``): ``signal`` and
    ``cancel`` it from workflow code. Each call is recorded in this workflow's history and
    delivered asynchronously; it does not learn whether the target exists."""

    def __init__(self, workflow_id: str, run_id: str | None, runtime: Any) -> None:
        self.id = workflow_id
        self.run_id = run_id
        self._rt = runtime

    def __repr__(self) -> str:
        return f"ExternalWorkflowHandle(id={self.id!r}, run_id={self.run_id!r})"

    async def signal(self, signal: Any, *args: Any, **kw: Any) -> None:
        """Send ``signal`` with ``args`` (recorded as ``SignalSent``); Temporal's ``args=[...]``
        keyword is accepted too. Goes to the target's current run."""
        extra = kw.pop("args", ())
        if kw:
            raise TypeError(f"signal() got unexpected keyword arguments {sorted(kw)}")
        self._rt.signal_external(self.id, signal, (*args, *extra))

    async def cancel(self) -> None:
        """Request the target's cancellation (its code gets ``CancelledError``), as a client's
        ``handle.cancel()`` does; with a ``run_id``, only that run."""
        self._rt.cancel_external(self.id, self.run_id)
