"""A handle to one workflow: result, signal, query, cancel, terminate, describe, history, events."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, AsyncIterator

from ..exceptions import WorkflowFailureError, WorkflowNotFoundError
from ..model import (
    CancelWorkflow,
    Event,
    GetResult,
    QueryWorkflow,
    Reply,
    TerminateWorkflow,
)
from ._errors import QueryTimeoutError, WorkflowResultTimeoutError, error_from_reply
from ._history import (
    EventPartitionReader,
    KeyFilter,
    WorkflowDescription,
    closes_workflow,
    describe,
    read_history,
)
from ._kafka import consume_available, fatal_or_log
from ._names import handler_name
from ._replies import ReplyWaiter

if TYPE_CHECKING:
    from ._client import Client

log = logging.getLogger(__name__)

FAILED_STATUSES = ("FAILED", "CANCELLED", "TERMINATED", "TIMED_OUT")


class WorkflowHandle:
    """Talks to one workflow id.

    ``run_id``: the run this handle knows of (the one it started, or the one asked for). Commands
    go to the latest run unless the handle was made for a specific run
    (``client.get_workflow_handle(id, run_id=...)``).
    """

    def __init__(
        self,
        client: "Client",
        workflow_id: str,
        *,
        run_id: str | None = None,
        result_type: Any = None,
        result_waiter: ReplyWaiter | None = None,
        follow_latest: bool = True,
    ) -> None:
        self.client = client
        self.id = workflow_id
        self.run_id = run_id
        self.result_type = result_type
        self._result_waiter = result_waiter
        self._target_run = None if follow_latest else run_id

    def __repr__(self) -> str:
        return f"WorkflowHandle(id={self.id!r}, run_id={self.run_id!r})"

    # ------------------------------------------------------------------ result
    async def result(self, timeout: float | None = None, *, follow_runs: bool = True) -> Any:
        """Wait for the workflow to close and return its result.

        Raises :class:`~aion.exceptions.WorkflowFailureError` (``status`` FAILED, CANCELLED,
        TERMINATED or TIMED_OUT, ``cause`` the rebuilt failure chain) when it did not complete,
        :class:`~aion.client.WorkflowResultTimeoutError` when ``timeout`` seconds pass first,
        :class:`~aion.exceptions.WorkflowNotFoundError` for an unknown id. With ``follow_runs``
        a continue-as-new is followed to the final run.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        client = self.client
        waiter = self._result_waiter
        # A handle from start_workflow already waits for the RESULT the engine sends to the
        # start's reply_to; GetResult only backs it up (an engine restart forgets waiters).
        sent_get_result = False
        if waiter is None:
            waiter = client.new_waiter()
        sent_ids: list[str] = []
        try:
            while True:
                first_wait = client.result_resend_interval
                if not sent_get_result and self._result_waiter is None:
                    await self._send_get_result(waiter, sent_ids)
                    sent_get_result = True
                while True:
                    remaining = None if deadline is None else deadline - loop.time()
                    if remaining is not None and remaining <= 0:
                        raise WorkflowResultTimeoutError(
                            f"workflow {self.id!r} did not close within {timeout:.1f}s; it may "
                            f"still be running (handle.describe() tells)"
                        )
                    wait = first_wait if remaining is None else min(first_wait, remaining)
                    done, _ = await asyncio.wait({waiter.result}, timeout=wait)
                    if done:
                        break
                    await self._send_get_result(waiter, sent_ids)
                reply = waiter.result.result()
                if reply.kind == "ERROR":
                    raise error_from_reply(reply, "result")
                if reply.status == "CONTINUED_AS_NEW" and follow_runs and self._target_run is None:
                    # The engine answered for a run that continued: wait for the next one.
                    waiter = client.new_waiter()
                    self._result_waiter = None
                    sent_get_result = False
                    continue
                return self._decode_result(reply)
        finally:
            for cid in sent_ids:
                client.forget(cid)

    async def _send_get_result(self, waiter: ReplyWaiter, sent_ids: list[str]) -> None:
        cmd = self.client._command(self.id, GetResult(run_id=self._target_run))
        sent_ids.append(cmd.command_id)
        await self.client.send(cmd, waiter)

    def _decode_result(self, reply: Reply) -> Any:
        if reply.run_id:
            self.run_id = reply.run_id
        status = reply.status or "COMPLETED"
        if status == "COMPLETED":
            if reply.result is None:
                return None
            return self.client.converter.from_payload(reply.result, self.result_type)
        failure = reply.failure
        message = f"workflow {self.id!r} (run {reply.run_id}) ended {status}"
        if failure is not None and failure.message:
            message += f": {failure.message}"
        raise WorkflowFailureError(message, workflow_id=self.id, run_id=reply.run_id, status=status, failure=failure)

    # ------------------------------------------------------------------ commands
    async def signal(self, signal: Any, *args: Any) -> None:
        """Send a signal (``Order.decide`` or ``"decide"``); returns once it is recorded."""
        await self.client.signal_workflow(self.id, signal, *args, run_id=self._target_run)

    async def query(self, query: Any, *args: Any, timeout: float = 5.0, result_type: Any = None) -> Any:
        """Ask the workflow's live state (answered by its engine worker, never recorded).

        Raises :class:`~aion.exceptions.QueryError` (unknown query, handler failed, workflow
        not running), :class:`~aion.exceptions.WorkflowNotFoundError`, or
        :class:`~aion.client.QueryTimeoutError` after ``timeout`` seconds.
        """
        name, hint = handler_name(query, "query")
        client = self.client
        payloads = client.converter.to_payloads(list(args))
        cmd = client._command(self.id, QueryWorkflow(name, payloads))
        waiter = client.new_waiter()
        await client.send(cmd, waiter, payloads)
        try:
            reply = await asyncio.wait_for(asyncio.shield(waiter.ack), timeout)
        except asyncio.TimeoutError:
            raise QueryTimeoutError(
                f"query {name!r} of workflow {self.id!r}: no answer within {timeout:.1f}s (its "
                f"engine worker may be down or rebalancing; try again)"
            ) from None
        finally:
            client.forget(cmd.command_id)
        if reply.kind == "ERROR":
            raise error_from_reply(reply, f"query {name!r}")
        if reply.result is None:
            return None
        return client.converter.from_payload(reply.result, result_type if result_type is not None else hint)

    async def cancel(self, reason: str = "") -> None:
        """Request cancellation: the workflow sees CancelledError and may compensate."""
        cmd = self.client._command(self.id, CancelWorkflow(reason=reason, run_id=self._target_run))
        await self.client.request(cmd, what="cancel")

    async def terminate(self, reason: str = "") -> None:
        """End the workflow at once; no workflow code runs after it."""
        cmd = self.client._command(self.id, TerminateWorkflow(reason=reason, run_id=self._target_run))
        await self.client.request(cmd, what="terminate")

    # ------------------------------------------------------------------ history
    def _reader(self) -> EventPartitionReader:
        c = self.client
        return EventPartitionReader(c._base_config, c.names.events, c.partition_of(self.id), c.settings.topic_prefix)

    async def history(self) -> list[Event]:
        """The events recorded so far (every run of this workflow id), in seq order.

        Reads the workflow's partition of the events topic from the beginning up to its
        current end: the cost grows with the partition, not with the workflow.
        """
        c = self.client
        return await asyncio.get_running_loop().run_in_executor(
            c._readers, read_history, self._reader(), c.codec, self.id)

    async def describe(self) -> WorkflowDescription:
        """Status, type, run id, start/close time and history length, from the events."""
        events = await self.history()
        if not events:
            raise WorkflowNotFoundError(
                f"workflow {self.id!r} has no history on {self.client.names.events!r}: it was never "
                f"started under topic prefix {self.client.settings.topic_prefix!r} (or its history "
                f"was retired)"
            )
        return describe(self.id, events)

    async def events(self, from_seq: int = 1, *, follow: bool = True, poll_timeout: float = 0.2) -> AsyncIterator[Event]:
        """The workflow's events from ``from_seq`` on, in seq order.

        ``follow=True`` (default): live — keeps yielding new events as they are recorded, and
        ends after the event that closes the workflow (a continue-as-new is followed into the
        new run). ``follow=False``: only what is recorded now.
        """
        c = self.client
        loop = asyncio.get_running_loop()
        reader = self._reader()
        consumer, _low, high = await loop.run_in_executor(c._readers, reader.open)
        keys = KeyFilter(c.codec, self.id)
        buffered: dict[int, Event] = {}
        next_seq = max(1, from_seq)
        latest_seen: Event | None = None

        def batch() -> tuple[list[tuple[int, bytes | None]], int]:
            msgs = fatal_or_log(consume_available(consumer, 1000, poll_timeout), "events follower")
            out = []
            for m in msgs:
                seq = keys.seq_of(m.key())
                if seq is not None:
                    out.append((seq, m.value()))
            return out, EventPartitionReader.position(consumer, reader.topic, reader.partition)

        try:
            while True:
                records, position = await loop.run_in_executor(c._readers, batch)
                for seq, value in records:
                    if value is None:
                        buffered.pop(seq, None)
                        continue
                    ev = c.codec.decode_event(value)
                    if latest_seen is None or ev.seq >= latest_seen.seq:
                        latest_seen = ev
                    if seq >= next_seq:
                        buffered[seq] = ev  # last write per seq wins
                while next_seq in buffered:
                    ev = buffered.pop(next_seq)
                    next_seq += 1
                    yield ev
                    if follow and closes_workflow(ev):
                        return
                caught_up = position >= high
                if caught_up and not follow:
                    return
                if caught_up and latest_seen is not None and closes_workflow(latest_seen) and next_seq > latest_seen.seq:
                    return  # closed before from_seq: nothing more will come
        finally:
            await loop.run_in_executor(c._readers, consumer.close)
