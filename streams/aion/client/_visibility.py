"""``client.list_workflows``: the visibility index, asked of the engines or read from the log.

The engine keeps one row per workflow (status, type, run, times, search attributes) in its
``workflows`` table, whose changelog topic ``<prefix>-engine-workflows-changelog`` is compacted
to the latest row per workflow id. A list is asked of the engine workers that own the
partitions (:class:`ServedLists`: one ``__aion.list`` query per partition, answered from their
index, pages merged here by start time); when one does not answer, the changelog is read whole
(:func:`read_workflow_rows`: every owning worker's rows at once, so it also works while they
are down or rebalancing) and the filters are applied here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from ..common.settings import Settings
from ..common.visibility import (
    LIST_QUERY, MAX_LIMIT, ListRequest, WorkflowSummary, partition_address, summary_from_row,
)
from ..model import Payload, QueryWorkflow

log = logging.getLogger("aion.client")

#: Rows asked of each partition per page when a list has no limit.
PAGE_ROWS = 2000


def workflows_changelog(prefix: str) -> str:
    return f"{prefix}-engine-workflows-changelog"


def read_workflow_rows(settings: Settings, timeout: float = 10.0) -> dict[str, WorkflowSummary]:
    """The latest row of every workflow (blocking; run it in a thread). Raises
    :class:`~aion.client.VisibilityTimeoutError` when the index cannot be read to its end within
    ``timeout`` seconds: never a part of it."""
    topic = workflows_changelog(settings.topic_prefix)
    consumer = Consumer({**settings.confluent_config(), "group.id": f"{settings.topic_prefix}.visibility.{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": False,
                         "isolation.level": "read_committed"})
    rows: dict[str, WorkflowSummary] = {}
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None:
            return rows  # no engine worker has recorded anything yet
        ends: dict[int, int] = {}
        for p in tmd.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        if not ends:
            return rows
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        remaining = set(ends)
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            # consume() waits for its whole batch or the timeout: keep the timeout short.
            msgs = consumer.consume(1000, 0.05)
            for m in msgs:
                if m.error():
                    continue
                key = (m.key() or b"").decode()
                if m.value() is None:
                    rows.pop(key, None)
                else:
                    rows[key] = summary_from_row(json.loads(m.value()), key)
                if m.offset() + 1 >= ends[m.partition()]:
                    remaining.discard(m.partition())
            if remaining:
                # The engine writes rows in transactions: a partition ends with a transaction
                # marker (and maybe aborted rows), never delivered; the position passes them.
                for tp in consumer.position([TopicPartition(topic, p) for p in remaining]):
                    if tp.offset >= ends[tp.partition]:
                        remaining.discard(tp.partition)
        if remaining:
            from ._errors import VisibilityTimeoutError

            raise VisibilityTimeoutError(
                f"the visibility index ({topic}) was read only in part within {timeout:.0f}s: partition(s) "
                f"{sorted(remaining)} not to their end ({len(rows)} rows read); nothing is returned rather than "
                f"a part. Pass a larger timeout, or check the broker")
    finally:
        consumer.close()
    return rows


class ServedLists:
    """Lists and counts asked of the engine workers that own the partitions (module docs).

    Each answer's pages are merged in list order; a partition that answers that its index is
    still being built is asked again (every 50 ms). Every method returns None when some
    partition could not be asked (no answer to its first page within ``ask_timeout``, none to
    a later one before the caller's deadline, or an engine that predates ``__aion.list``): the
    caller reads the changelog instead."""

    def __init__(self, client: Any, partitions: int, ask_timeout: float) -> None:
        self.client = client
        self.partitions = partitions
        self.ask_timeout = ask_timeout

    async def _page(self, partition: int, req: ListRequest, deadline: float, *, limit: int,
                    after: Any = None, count: bool = False, reverse: bool = False) -> dict[str, Any] | None:
        c = self.client
        args = [Payload("application/json", json.dumps(
            {**req.to_json(), "limit": limit, "after": after, "count": count, "reverse": reverse}).encode())]
        loop = asyncio.get_running_loop()
        # The first page says whether an engine answers at all; a partition whose engine
        # answered is waited for until the deadline (a busy engine is not a missing one).
        first = after is None
        while True:
            left = min(self.ask_timeout, deadline - loop.time()) if first else deadline - loop.time()
            if left <= 0:
                return None
            cmd = c._command(partition_address(partition, self.partitions), QueryWorkflow(LIST_QUERY, args))
            try:
                reply, _ = await c._ask(cmd, args, left)
            except asyncio.TimeoutError:
                log.info("list: no engine answered for partition %d within %.1fs; reading the changelog",
                         partition, left)
                return None
            finally:
                c._forget(cmd.command_id)
            if reply.kind == "QUERY" and reply.result is not None:
                page: dict[str, Any] = json.loads(reply.result.data)
                return page
            if reply.failure is not None and reply.failure.type == "VisibilityIndexNotReady":
                await asyncio.sleep(0.05)
                continue
            if reply.failure is not None and reply.failure.type == "InvalidArgumentError":
                raise ValueError(reply.failure.message)  # this client's request: a bug, not a reason to read the log
            return None  # e.g. an engine that predates the list query: read the changelog

    async def list(self, req: ListRequest, limit: int | None, timeout: float,
                   newest_first: bool = False) -> list[WorkflowSummary] | None:
        """The rows ``req`` selects, by start time (the first ``limit``), or None (class docs)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        per_page = min(limit, MAX_LIMIT) if limit is not None else PAGE_ROWS
        parts = range(self.partitions)
        buffered: dict[int, deque[WorkflowSummary]] = {p: deque() for p in parts}
        nxt: dict[int, Any] = {}
        started = False
        out: list[WorkflowSummary] = []

        async def fill(p: int) -> bool:
            page = await self._page(p, req, deadline, limit=per_page, after=nxt.get(p), reverse=newest_first)
            if page is None:
                return False
            buffered[p].extend(summary_from_row(row) for row in page.get("rows") or [])
            nxt[p] = page.get("next")
            return True

        while limit is None or len(out) < limit:
            need = [p for p in parts if not buffered[p] and (not started or nxt.get(p) is not None)]
            started = True
            if need:
                if not all(await asyncio.gather(*(fill(p) for p in need))):
                    return None
                continue
            live = [p for p in parts if buffered[p]]
            if not live:
                break
            pick = max if newest_first else min
            p = pick(live, key=lambda q: buffered[q][0].order)
            out.append(buffered[p].popleft())
        return out

    async def count(self, req: ListRequest, timeout: float) -> int | None:
        """How many rows ``req`` selects, or None (class docs)."""
        deadline = asyncio.get_running_loop().time() + timeout

        async def one(p: int) -> int | None:
            total, after = 0, None
            while True:
                page = await self._page(p, req, deadline, limit=1, after=after, count=True)
                if page is None:
                    return None
                total += int(page.get("count") or 0)
                after = page.get("next")
                if after is None:
                    return total
        counts = await asyncio.gather(*(one(p) for p in range(self.partitions)))
        return None if any(n is None for n in counts) else sum(n for n in counts if n is not None)
