"""Running activity attempts in-process for the test environment.

The environment plays the activity worker: for each ``DispatchActivity`` effect it reports the
attempt started, runs the function (``async`` ones as tasks on the environment's loop, sync ones
in a thread pool) with an :class:`~aion.activity.ActivityContext` current, and reports the
outcome as the same commands a worker sends (``ActivityTaskCompleted`` / ``Failed`` /
``Cancelled``, plus ``ActivityHeartbeat`` while it runs). Retries, backoff and timeouts stay the
runtime's business, decided with durable timers on the environment's clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from ..activity._context import ActivityContext, CompleteAsyncError, current, make_info
from ..converter import DataConverter, hints_of
from ..exceptions import exception_to_failure
from ..model import (
    ActivityHeartbeat,
    ActivityTask,
    ActivityTaskCancelled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskStarted,
    CommandBody,
    Failure,
    Payload,
)
from ..runtime import Registry

#: The worker identity recorded on ``ActivityStarted`` events of the environment's attempts.
WORKER_IDENTITY = "aion-testing"

AttemptKey = tuple[str, str, str, int]  # workflow id, run id, activity id, attempt

#: Heartbeats of one attempt closer together than this are sent as one (the latest details).
HEARTBEAT_COALESCE_S = 0.02


def attempt_key(task: Any) -> AttemptKey:
    return (task.workflow_id, task.run_id, task.activity_id, task.attempt)


@dataclass(eq=False)
class Attempt:
    """One running attempt."""

    task: ActivityTask
    ctx: ActivityContext
    runner: asyncio.Task[None] | None = None
    #: The task running an ``async`` activity function (cancelled on a cancel request).
    fn_task: asyncio.Future[Any] | None = None
    #: Set when the runtime no longer wants this attempt's outcome (it timed out, the run closed).
    abandoned: bool = False
    #: The function called ``activity.raise_complete_async()``: the outcome comes through
    #: ``env.client.get_async_activity_handle`` (until then the attempt counts as running).
    completing_async: bool = False
    pending_heartbeat: tuple[Any, ...] | None = None
    heartbeat_handle: asyncio.TimerHandle | None = None


class ActivityRunner:
    """Runs attempts and hands their outcome commands to ``report(workflow_id, body)``."""

    def __init__(
        self,
        registry: Registry,
        converter: DataConverter,
        report: Callable[[str, CommandBody], None],
        now_ms: Callable[[], int],
        max_threads: int = 16,
    ) -> None:
        self.registry = registry
        self.converter = converter
        self._report = report
        self._now_ms = now_ms
        self._pool = concurrent.futures.ThreadPoolExecutor(max_threads, thread_name_prefix="aion-testing-activity")
        self.running: dict[AttemptKey, Attempt] = {}
        #: Every attempt started, in order (tests inspect it).
        self.started: list[ActivityTask] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self, task: ActivityTask) -> None:
        key = attempt_key(task)
        if key in self.running:
            return  # a re-dispatch of the attempt that runs: it will report
        loop = asyncio.get_running_loop()
        details: tuple[Any, ...] = ()
        if task.heartbeat_details is not None:
            try:
                decoded = self.converter.from_payload(task.heartbeat_details)
                details = tuple(decoded) if isinstance(decoded, (list, tuple)) else (decoded,)
            except Exception:
                details = ()
        info = make_info(
            workflow_id=task.workflow_id,
            run_id=task.run_id,
            activity_id=task.activity_id,
            activity_type=task.activity_type,
            attempt=task.attempt,
            workflow_type=task.workflow_type,
            task_queue=task.task_queue,
            scheduled_at_ms=task.scheduled_at_ms,
            started_at_ms=self._now_ms(),
            start_to_close_ms=task.start_to_close_ms,
            schedule_to_close_deadline_ms=task.schedule_to_close_deadline_ms,
            heartbeat_timeout_ms=task.heartbeat_ms,
            heartbeat_details=details,
        )

        def on_heartbeat(d: tuple[Any, ...]) -> None:
            # May be called from a pool thread (sync activities): hop to the loop.
            try:
                loop.call_soon_threadsafe(self._heartbeat, key, d)
            except RuntimeError:  # loop closed: the environment is gone
                pass

        attempt = Attempt(task, ActivityContext(info, on_heartbeat))
        self.running[key] = attempt
        self.started.append(task)
        self._report(task.workflow_id, ActivityTaskStarted(task.run_id, task.activity_id, task.attempt,
                                                           WORKER_IDENTITY))
        attempt.runner = loop.create_task(self._run(attempt), name=f"aion-testing-activity-{task.activity_type}")

    def cancel(self, key: AttemptKey, reason: str = "CANCEL_REQUESTED") -> None:
        """The workflow asked to cancel the attempt: tell the activity (it reports ``Cancelled``)."""
        attempt = self.running.get(key)
        if attempt is None:
            return
        if attempt.ctx.request_cancel(reason) and attempt.fn_task is not None and not attempt.fn_task.done():
            attempt.fn_task.cancel()

    def settle_async(self, key: AttemptKey) -> None:
        """An outcome for ``key`` came through a task token: the attempt no longer runs."""
        attempt = self.running.get(key)
        if attempt is not None and attempt.completing_async:
            del self.running[key]

    def abandon(self, key: AttemptKey, reason: str = "TIMED_OUT") -> None:
        """The runtime no longer wants the outcome (timed out, run closed): stop it, report nothing."""
        attempt = self.running.pop(key, None)
        if attempt is None:
            return
        attempt.abandoned = True
        attempt.ctx.request_cancel(reason)
        if attempt.fn_task is not None and not attempt.fn_task.done():
            attempt.fn_task.cancel()

    def abandon_run(self, workflow_id: str, run_id: str) -> None:
        for key in [k for k in self.running if k[0] == workflow_id and k[1] == run_id]:
            self.abandon(key, "RUN_CLOSED")

    async def close(self) -> None:
        for key in list(self.running):
            self.abandon(key, "WORKER_SHUTDOWN")
        runners = [a.runner for a in list(self.running.values()) if a.runner is not None]
        if runners:
            await asyncio.wait(runners, timeout=1.0)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ one attempt
    async def _run(self, attempt: Attempt) -> None:
        task = attempt.task
        try:
            body = await self._execute(attempt)
        except CompleteAsyncError:
            attempt.completing_async = True
            if attempt.heartbeat_handle is not None:
                attempt.heartbeat_handle.cancel()
                attempt.heartbeat_handle = None
            self._flush_heartbeat(attempt_key(task))
            return  # stays in ``running`` until settle_async()
        except BaseException as exc:  # a bug of the runner: report rather than hang the test
            if attempt.abandoned:
                return
            body = ActivityTaskFailed(task.run_id, task.activity_id, task.attempt, Failure(
                type=type(exc).__name__, message=str(exc) or repr(exc),
                stack="".join(traceback.format_exception(type(exc), exc, exc.__traceback__))),
                WORKER_IDENTITY)
        if attempt.heartbeat_handle is not None:
            attempt.heartbeat_handle.cancel()
            attempt.heartbeat_handle = None
        if attempt.abandoned or self.running.get(attempt_key(task)) is not attempt:
            return
        if attempt.pending_heartbeat is not None:
            self._flush_heartbeat(attempt_key(task))  # its details may matter to the runtime
        del self.running[attempt_key(task)]
        self._report(task.workflow_id, body)

    async def _execute(self, attempt: Attempt) -> CommandBody:
        task, ctx = attempt.task, attempt.ctx
        defn = self.registry.activity(task.activity_type)
        if defn is None:
            names = ", ".join(sorted(self.registry.activities)) or "(none)"
            return ActivityTaskFailed(task.run_id, task.activity_id, task.attempt, Failure(
                type="ActivityNotRegisteredError",
                message=(f"activity type {task.activity_type!r} (workflow {task.workflow_id!r}, activity "
                         f"{task.activity_id}) is not registered with the test environment; registered: "
                         f"{names}. Pass it in WorkflowEnvironment.start_time_skipping(activities=[...])"),
                non_retryable=True), WORKER_IDENTITY)
        try:
            args = self.converter.from_payloads(task.input, hints_of(defn.fn))
        except Exception as exc:
            return ActivityTaskFailed(task.run_id, task.activity_id, task.attempt, Failure(
                type=type(exc).__name__,
                message=(f"cannot decode the input of activity {task.activity_type!r} (workflow "
                         f"{task.workflow_id!r}, activity {task.activity_id}): {exc}"),
                non_retryable=True, stack=traceback.format_exc()), WORKER_IDENTITY)
        loop = asyncio.get_running_loop()
        try:
            if defn.is_async:
                async def in_context() -> Any:
                    current.set(ctx)
                    return await defn.fn(*args)

                fn_task = loop.create_task(in_context(), context=contextvars.copy_context())
                attempt.fn_task = fn_task
                result = await asyncio.shield(fn_task)
            else:
                ctx.heartbeat_raises_cancel = True

                def in_thread() -> Any:
                    token = current.set(ctx)
                    try:
                        return defn.fn(*args)
                    finally:
                        current.reset(token)

                result = await loop.run_in_executor(self._pool, contextvars.copy_context().run, in_thread)
        except asyncio.CancelledError:
            if attempt.abandoned:
                raise
            return self._cancelled(attempt)
        except Exception as exc:
            if ctx.is_cancelled() and ctx.cancel_reason == "CANCEL_REQUESTED":
                return self._cancelled(attempt)
            return ActivityTaskFailed(task.run_id, task.activity_id, task.attempt,
                                      exception_to_failure(exc, self.converter), WORKER_IDENTITY)
        try:
            payload = self.converter.to_payload(result)
        except Exception as exc:
            return ActivityTaskFailed(task.run_id, task.activity_id, task.attempt, Failure(
                type=type(exc).__name__,
                message=(f"cannot encode the result of activity {task.activity_type!r} (workflow "
                         f"{task.workflow_id!r}, activity {task.activity_id}): {exc}"),
                non_retryable=True, stack=traceback.format_exc()), WORKER_IDENTITY)
        return ActivityTaskCompleted(task.run_id, task.activity_id, task.attempt, payload, WORKER_IDENTITY)

    def _cancelled(self, attempt: Attempt) -> ActivityTaskCancelled:
        task = attempt.task
        details: Payload | None = None
        if attempt.ctx.last_heartbeat_details is not None:
            try:
                details = self.converter.to_payload(list(attempt.ctx.last_heartbeat_details))
            except Exception:
                details = None
        return ActivityTaskCancelled(task.run_id, task.activity_id, task.attempt, details)

    def _heartbeat(self, key: AttemptKey, details: tuple[Any, ...]) -> None:
        """Coalesce: heartbeats of one attempt within ``HEARTBEAT_COALESCE_S`` travel as one
        command carrying the latest details (an activity may heartbeat in a tight loop)."""
        attempt = self.running.get(key)
        if attempt is None:
            return
        attempt.pending_heartbeat = details
        if attempt.heartbeat_handle is None:
            loop = asyncio.get_running_loop()
            attempt.heartbeat_handle = loop.call_later(HEARTBEAT_COALESCE_S, self._flush_heartbeat, key)

    def _flush_heartbeat(self, key: AttemptKey) -> None:
        attempt = self.running.get(key)
        if attempt is None or attempt.pending_heartbeat is None:
            return
        details, attempt.pending_heartbeat, attempt.heartbeat_handle = attempt.pending_heartbeat, None, None
        payload: Payload | None = None
        if details:
            try:
                payload = self.converter.to_payload(list(details))
            except Exception:
                payload = None
        task = attempt.task
        self._report(task.workflow_id, ActivityHeartbeat(task.run_id, task.activity_id, task.attempt, payload))
