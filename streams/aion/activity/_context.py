"""The context of one running activity attempt.

The activity worker creates an :class:`ActivityContext` for every attempt it runs and makes it
current (the :data:`current` context variable) while the activity function executes: in the
thread-pool thread for a sync function, in the task for an ``async`` one. The public helpers in
``aion.activity`` (``info()``, ``heartbeat()``, ``is_cancelled()``, ...) read it from there, so
activity code needs no parameter for it and imports nothing of Kafka.

Cancellation is a :class:`threading.Event` (sync activities poll ``is_cancelled()``, block on
``wait_for_cancelled_sync()`` or get ``CancelledError`` from their next ``heartbeat()``) plus an asyncio-friendly ``await wait_for_cancelled()`` that works
from any event loop, because the worker may request cancellation from another thread than the
one the activity waits on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

from ..exceptions import AionError
from ._token import encode_task_token

__all__ = [
    "ActivityInfo",
    "CompleteAsyncError",
    "ActivityContext",
    "NotInActivityError",
    "current",
    "get_context",
    "in_activity",
]


@dataclass(frozen=True, slots=True)
class ActivityInfo:
    """What an attempt knows about itself. Times are epoch milliseconds; ``None`` = not set."""

    workflow_id: str
    run_id: str
    activity_id: str
    activity_type: str
    attempt: int
    workflow_type: str = ""
    task_queue: str = "default"
    scheduled_at_ms: int = 0
    started_at_ms: int = 0
    #: ``started_at_ms + start_to_close``: the engine times the attempt out after this.
    start_to_close_deadline_ms: int | None = None
    #: The engine gives up on the activity (all attempts) after this.
    schedule_to_close_deadline_ms: int | None = None
    #: The engine times the attempt out when no heartbeat arrives within this many ms.
    heartbeat_timeout_ms: int | None = None
    #: Details of the last heartbeat of a previous attempt (decoded), to resume from.
    heartbeat_details: tuple[Any, ...] = field(default_factory=tuple)

    @property
    def deadline_ms(self) -> int | None:
        """The earliest deadline that applies to this attempt, if any."""
        ds = [d for d in (self.start_to_close_deadline_ms, self.schedule_to_close_deadline_ms) if d]
        return min(ds) if ds else None

    # Temporal's spellings, so that activity code ported from it reads its info unchanged.
    @property
    def workflow_run_id(self) -> str:
        """The run id of the workflow that scheduled the activity (= :attr:`run_id`)."""
        return self.run_id

    @property
    def heartbeat_timeout(self) -> timedelta | None:
        """The heartbeat timeout (:attr:`heartbeat_timeout_ms`), None when not set."""
        return None if not self.heartbeat_timeout_ms else timedelta(milliseconds=self.heartbeat_timeout_ms)

    @property
    def start_to_close_timeout(self) -> timedelta | None:
        """The start-to-close timeout of this attempt, None when not set."""
        if self.start_to_close_deadline_ms is None:
            return None
        return timedelta(milliseconds=self.start_to_close_deadline_ms - self.started_at_ms)

    @property
    def scheduled_time(self) -> datetime:
        """When the activity was scheduled (UTC)."""
        return datetime.fromtimestamp(self.scheduled_at_ms / 1000, tz=timezone.utc)

    @property
    def started_time(self) -> datetime:
        """When this attempt started (UTC)."""
        return datetime.fromtimestamp(self.started_at_ms / 1000, tz=timezone.utc)

    @property
    def is_local(self) -> bool:
        """Always False: local activities run as ordinary activities here."""
        return False

    @property
    def task_token(self) -> bytes:
        """Names this attempt for ``client.get_async_activity_handle(task_token=...)``: hand it
        to whatever completes the activity after ``activity.raise_complete_async()``."""
        return encode_task_token(self.workflow_id, self.run_id, self.activity_id, self.attempt)


class CompleteAsyncError(BaseException):
    """Raised by ``activity.raise_complete_async()``: the function returns without an outcome,
    which someone reports later through ``client.get_async_activity_handle(task_token=...)``.
    A ``BaseException``, so that an ``except Exception`` in activity code does not swallow it."""


class NotInActivityError(AionError, RuntimeError):
    """An activity helper was called outside of a running activity."""


HeartbeatCallback = Callable[[tuple[Any, ...]], None]


class ActivityContext:
    """One running attempt: its info, its heartbeat channel and its cancellation state.

    Thread-safe: the worker cancels from its event loop while a sync activity runs in a pool
    thread; ``heartbeat`` may be called from any thread.
    """

    def __init__(
        self,
        info: ActivityInfo,
        heartbeat: HeartbeatCallback | None = None,
    ) -> None:
        self.info = info
        self._heartbeat_cb = heartbeat
        self._cancelled = threading.Event()
        self._cancel_reason = ""
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.last_heartbeat_details: tuple[Any, ...] | None = None
        #: Set by the runner for a sync activity: ``heartbeat()`` raises once cancelled. A
        #: thread cannot be interrupted from outside, so its next heartbeat is where the
        #: cancellation reaches it (as in Temporal); an ``async`` attempt's task is cancelled.
        self.heartbeat_raises_cancel = False

    # ------------------------------------------------------------------ heartbeat
    def heartbeat(self, *details: Any) -> None:
        """Tell the engine the attempt is alive; ``details`` reach the next attempt on retry.

        Cheap to call often: the worker throttles what it actually sends. In a sync activity
        whose cancellation was requested, raises :class:`asyncio.CancelledError` (= ``aion.
        exceptions.CancelledError``, a ``BaseException``: ``except Exception`` lets it through);
        the details are kept and reported with the cancellation.
        """
        self.last_heartbeat_details = tuple(details)
        if self.heartbeat_raises_cancel and self._cancelled.is_set():
            raise asyncio.CancelledError(
                f"activity {self.info.activity_type!r} (workflow {self.info.workflow_id!r}, activity "
                f"{self.info.activity_id}, attempt {self.info.attempt}) was cancelled: {self._cancel_reason}"
            )
        if self._heartbeat_cb is not None:
            self._heartbeat_cb(tuple(details))

    # ------------------------------------------------------------------ cancellation
    @property
    def cancelled_event(self) -> threading.Event:
        """The :class:`threading.Event` set once cancellation is requested."""
        return self._cancelled

    @property
    def cancel_reason(self) -> str:
        """Why cancellation was requested (``CANCEL_REQUESTED``, ``WORKER_SHUTDOWN``, ...)."""
        return self._cancel_reason

    def is_cancelled(self) -> bool:
        """Whether the engine (or the worker's shutdown) asked this attempt to stop."""
        return self._cancelled.is_set()

    def wait_for_cancelled_sync(self, timeout: float | None = None) -> bool:
        """Block the calling thread until cancellation is requested; False on timeout."""
        return self._cancelled.wait(timeout)

    async def wait_for_cancelled(self) -> None:
        """Wait on the current event loop until cancellation is requested."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._cancelled.is_set():
                return
            self._waiters.append((loop, fut))
        try:
            await fut
        finally:
            with self._lock:
                try:
                    self._waiters.remove((loop, fut))
                except ValueError:
                    pass

    def request_cancel(self, reason: str = "CANCEL_REQUESTED") -> bool:
        """Request cancellation (worker side). Returns False if it was already requested."""
        with self._lock:
            if self._cancelled.is_set():
                return False
            self._cancel_reason = reason
            self._cancelled.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass
        return True

    # ------------------------------------------------------------------ time
    def remaining_seconds(self, now_ms: int | None = None) -> float | None:
        """Seconds until the earliest deadline of this attempt (negative when passed)."""
        deadline = self.info.deadline_ms
        if deadline is None:
            return None
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return (deadline - now) / 1000.0


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


#: The context of the activity attempt running in this thread / task, if any.
current: ContextVar[ActivityContext | None] = ContextVar("aion_activity_context", default=None)


def in_activity() -> bool:
    """Whether the caller runs inside an activity attempt."""
    return current.get() is not None


def get_context() -> ActivityContext:
    """The running attempt's context; raises :class:`NotInActivityError` outside an activity."""
    ctx = current.get()
    if ctx is None:
        raise NotInActivityError(
            "not running inside an activity: aion.activity helpers (info, heartbeat, "
            "is_cancelled, ...) only work in a function executed by an activity worker "
            "or the testing environment"
        )
    return ctx


def make_info(
    *,
    workflow_id: str,
    run_id: str,
    activity_id: str,
    activity_type: str,
    attempt: int,
    workflow_type: str = "",
    task_queue: str = "default",
    scheduled_at_ms: int = 0,
    started_at_ms: int | None = None,
    start_to_close_ms: int | None = None,
    schedule_to_close_deadline_ms: int | None = None,
    heartbeat_timeout_ms: int | None = None,
    heartbeat_details: Sequence[Any] = (),
) -> ActivityInfo:
    """Build an :class:`ActivityInfo`, computing the start-to-close deadline from the start."""
    started = started_at_ms if started_at_ms is not None else int(time.time() * 1000)
    return ActivityInfo(
        workflow_id=workflow_id,
        run_id=run_id,
        activity_id=activity_id,
        activity_type=activity_type,
        attempt=attempt,
        workflow_type=workflow_type,
        task_queue=task_queue,
        scheduled_at_ms=scheduled_at_ms,
        started_at_ms=started,
        start_to_close_deadline_ms=(started + start_to_close_ms) if start_to_close_ms else None,
        schedule_to_close_deadline_ms=schedule_to_close_deadline_ms,
        heartbeat_timeout_ms=heartbeat_timeout_ms,
        heartbeat_details=tuple(heartbeat_details),
    )
