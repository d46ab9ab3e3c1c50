"""Completing an activity from outside the attempt that ran it (Temporal's async completion).

An activity function calls ``activity.raise_complete_async()`` and hands its
``activity.info().task_token`` to whatever finishes the work (a person, a webhook, another
service). That party, in any process, reports the outcome::

    handle = client.get_async_activity_handle(task_token=token)
    await handle.heartbeat("half way")      # keeps a heartbeat timeout from firing
    await handle.complete("result")         # or fail(error), report_cancellation()

Each call sends the command an activity worker would send for that attempt
(``ActivityTaskCompleted`` / ``Failed`` / ``Cancelled`` / ``ActivityHeartbeat``), so the engine
records, retries and times the attempt out exactly as for one that returned in its worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..activity._token import TaskToken, decode_task_token
from ..exceptions import exception_to_failure
from ..model import (
    ActivityHeartbeat,
    ActivityTaskCancelled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    CommandBody,
    Payload,
)

if TYPE_CHECKING:
    from ._base import ClientBase

#: The worker identity recorded for an outcome reported through a task token.
ASYNC_COMPLETER = "async-completion"


class AsyncActivityHandle:
    """Reports the outcome of one activity attempt that completes asynchronously.

    Each method returns once the command is durably queued for the engine (the Kafka client:
    the broker's ack). An outcome for an attempt that is already over (completed, timed out,
    retried, its run closed) is ignored by the engine, as a late worker's outcome is.
    """

    def __init__(self, client: "ClientBase[Any]", task_token: bytes) -> None:
        self._client = client
        self.task_token = bytes(task_token) if not isinstance(task_token, bytes) else task_token
        self.attempt: TaskToken = decode_task_token(task_token)

    def __repr__(self) -> str:
        a = self.attempt
        return (f"AsyncActivityHandle(workflow_id={a.workflow_id!r}, run_id={a.run_id!r}, "
                f"activity_id={a.activity_id!r}, attempt={a.attempt})")

    async def _send(self, body: CommandBody, payloads: list[Payload], what: str) -> None:
        await self._client._tell(self._client._command(self.attempt.workflow_id, body, reply=False),
                                 payloads, what=what)

    def _details(self, details: tuple[Any, ...]) -> Payload | None:
        return self._client.converter.to_payload(list(details)) if details else None

    async def complete(self, result: Any = None, **_rpc: Any) -> None:
        """The activity succeeded with ``result``: the workflow's ``execute_activity`` returns it."""
        a = self.attempt
        payload = self._client.converter.to_payload(result)
        await self._send(ActivityTaskCompleted(a.run_id, a.activity_id, a.attempt, payload, ASYNC_COMPLETER),
                         [payload], "complete an activity")

    async def fail(self, error: BaseException, *, last_heartbeat_details: Any = (), **_rpc: Any) -> None:
        """The attempt failed with ``error``: retried by the activity's retry policy (an
        ``ApplicationError(non_retryable=True)`` is not), as if the function had raised it."""
        if not isinstance(error, BaseException):
            raise TypeError(f"fail() takes the exception the activity failed with, not {type(error).__name__}")
        a = self.attempt
        failure = exception_to_failure(error, self._client.converter)
        await self._send(ActivityTaskFailed(a.run_id, a.activity_id, a.attempt, failure, ASYNC_COMPLETER),
                         [], "fail an activity")

    async def heartbeat(self, *details: Any, **_rpc: Any) -> None:
        """The work goes on: resets the heartbeat timeout; ``details`` reach a next attempt."""
        a = self.attempt
        payload = self._details(details)
        await self._send(ActivityHeartbeat(a.run_id, a.activity_id, a.attempt, payload),
                         [payload] if payload else [], "heartbeat an activity")

    async def report_cancellation(self, *details: Any, **_rpc: Any) -> None:
        """The attempt stopped because its cancellation was requested: the workflow's activity
        ends cancelled. Without a cancel request the engine counts it as a failed attempt."""
        a = self.attempt
        payload = self._details(details)
        await self._send(ActivityTaskCancelled(a.run_id, a.activity_id, a.attempt, payload),
                         [payload] if payload else [], "report an activity's cancellation")
