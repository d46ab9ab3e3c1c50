"""A handle to one workflow: result, signal, query, cancel, terminate, describe, history, events."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, AsyncGenerator, AsyncIterator, TypeVar

from ..model import Command, Event, GetResult, QueryWorkflow, Reply
from ..runtime._history_pages import HISTORY_QUERY, page_request, read_page
from ._base import WorkflowHandleBase
from ._history import (
    EventPartitionReader,
    KeyFilter,
    closes_workflow,
    read_history,
)
from ..common.kafka import consume_available, fatal_or_log
from ._replies import ReplyWaiter

if TYPE_CHECKING:
    from ._client import Client

log = logging.getLogger(__name__)

FAILED_STATUSES = ("FAILED", "CANCELLED", "TERMINATED", "TIMED_OUT")

R = TypeVar("R")  # the workflow's result type


class WorkflowHandle(WorkflowHandleBase["Client", R]):
    """Talks to one workflow id.

    ``run_id``: the run this handle knows of (the one it started, or the one asked for). Commands
    go to the latest run unless the handle was made for a specific run
    (``client.get_workflow_handle(id, run_id=...)``). The API (result, signal, query, cancel,
    terminate, describe) lives in :class:`~aion.client._base.WorkflowHandleBase`; this class
    waits over Kafka and reads the events topic.
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
        super().__init__(client, workflow_id, run_id=run_id, result_type=result_type,
                         follow_latest=follow_latest)
        self._result_waiter = result_waiter

    # ------------------------------------------------------------------ result
    async def _result_replies(self, deadline: float | None, timeout: float | None) -> AsyncGenerator[Reply, None]:
        loop = asyncio.get_running_loop()
        client = self.client
        waiter = self._result_waiter
        # A handle from start_workflow already waits for the RESULT the engine sends to the
        # start's reply_to; GetResult only backs it up (an engine restart forgets waiters).
        # One GetResult per run waited for, re-sent with the same command id: the engine keeps
        # one waiter per (command id, reply_to), so a re-send adds nothing there, and after a
        # hand-over (waiters are in memory only) it registers the waiter again.
        get_result: Command | None = None
        if waiter is None:
            waiter = client.new_waiter()
        sent_ids: list[str] = []
        try:
            while True:
                first_wait = client.result_resend_interval
                if get_result is None and self._result_waiter is None:
                    get_result = self._get_result_command(sent_ids)
                    await client.send(get_result, waiter)
                while True:
                    remaining = None if deadline is None else deadline - loop.time()
                    if remaining is not None and remaining <= 0:
                        raise self._result_timeout(timeout)
                    wait = first_wait if remaining is None else min(first_wait, remaining)
                    done, _ = await asyncio.wait({waiter.result}, timeout=wait)
                    if done:
                        break
                    if get_result is None:
                        get_result = self._get_result_command(sent_ids)
                    await client.send(get_result, waiter)
                # The start's waiter answers once: asked again, this handle sends GetResult, so
                # that a run reopened since (by anyone) is waited for, not its first close.
                self._result_waiter = None
                yield waiter.result.result()
                # Asked again: that run continued as new; wait for the next one (a new GetResult:
                # the engine answered the last one's id).
                waiter = client.new_waiter()
                self._result_waiter = None
                get_result = None
        finally:
            for cid in sent_ids:
                client.forget(cid)

    def _get_result_command(self, sent_ids: list[str]) -> Command:
        cmd = self.client._command(self.id, GetResult(run_id=self._target_run))
        sent_ids.append(cmd.command_id)
        return cmd

    # ------------------------------------------------------------------ history
    def _reader(self) -> EventPartitionReader:
        c = self.client
        return EventPartitionReader(c._base_config, c.names.events, c.partition_of(self.id), c.settings.topic_prefix)

    async def history(self) -> list[Event]:
        """The events recorded so far (every run of this workflow id), in seq order.

        Asked of the engine that owns the workflow, page by page (``runtime/_history_pages.py``):
        the cost grows with this workflow's history. When no engine answers within
        :attr:`HISTORY_ASK_TIMEOUT_S` (none running, or one that predates the query), the
        workflow's partition of the events topic is read from the beginning instead: that
        costs the whole partition.
        """
        served = await self._history_from_engine()
        if served is not None:
            return served
        c = self.client
        return await asyncio.get_running_loop().run_in_executor(
            c._readers, read_history, self._reader(), c.codec, self.id)

    #: How long :meth:`history` waits for the engine's answer to each page before it reads the log.
    HISTORY_ASK_TIMEOUT_S = 3.0

    async def _history_from_engine(self) -> list[Event] | None:
        c = self.client
        events: list[Event] = []
        next_seq: int | None = 1
        while next_seq is not None:
            args = page_request(next_seq)
            cmd = c._command(self.id, QueryWorkflow(HISTORY_QUERY, args))
            try:
                reply, _ = await c._ask(cmd, args, self.HISTORY_ASK_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.info("workflow %r: no engine served its history within %.1fs; reading the events topic",
                         self.id, self.HISTORY_ASK_TIMEOUT_S)
                return None
            finally:
                c._forget(cmd.command_id)
            if reply.kind == "ERROR":
                if reply.failure is not None and reply.failure.type == "WorkflowNotFoundError":
                    return []  # the owner has no such workflow: authoritative (its tables are caught up)
                return None  # e.g. an engine that predates the query: read the log
            if reply.result is None:
                return None
            asked = next_seq
            page, next_seq = read_page(reply.result)
            if events and page and page[0].seq != asked:
                return None  # the history changed under the pages (retired meanwhile): read the log
            events.extend(page)
        return events

    def _no_history(self) -> str:
        return (
            f"workflow {self.id!r} has no history on {self.client.names.events!r}: it was never "
            f"started under topic prefix {self.client.settings.topic_prefix!r} (or its history "
            f"was retired)"
        )

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
                while buffered:
                    if next_seq not in buffered:
                        # A workflow's events are on the log in seq order: a later seq read while
                        # ``next_seq`` was not means ``next_seq`` is gone (a continue-as-new
                        # chain's earlier runs, retired and compacted away: _retention.py).
                        next_seq = min(buffered)
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
