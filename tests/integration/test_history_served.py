"""A workflow's history served by the engine that owns it (``__aion.history``, page by page),
the same as the events topic holds it; the log is the fallback when no engine answers."""

from __future__ import annotations

import time

from aion.client._handle import WorkflowHandle
from aion.model import QueryWorkflow
from aion.runtime._history_pages import HISTORY_QUERY, page_request, read_page


async def test_the_engine_serves_the_history_in_pages_equal_to_the_log(cluster, client, monkeypatch):  # type: ignore[no-untyped-def]
    engine = cluster.engine()
    cluster.activities()
    h = await client.start_workflow("Steps", 12, id="served-1")
    await h.result(timeout=90)

    served = await h._history_from_engine()
    assert served is not None and len(served) > 30
    monkeypatch.setattr(WorkflowHandle, "HISTORY_ASK_TIMEOUT_S", 0.001)  # force the log read
    logged = await h.history()
    assert served == logged
    monkeypatch.setattr(WorkflowHandle, "HISTORY_ASK_TIMEOUT_S", 5.0)

    # small pages: every event once, in order
    args = page_request(1, max_bytes=200)
    reply, _ = await client._ask(client._command("served-1", QueryWorkflow(HISTORY_QUERY, args)), args, 10)
    first, next_seq = read_page(reply.result)
    assert len(first) == 1 and next_seq == 2  # at least one event per page, however small

    # unknown workflow: the engine says so (no log scan needed)
    assert await client.get_workflow_handle("never-started")._history_from_engine() == []

    # no engine: the log answers, after the short wait
    engine.stop()
    monkeypatch.setattr(WorkflowHandle, "HISTORY_ASK_TIMEOUT_S", 1.0)
    t0 = time.monotonic()
    assert await h.history() == served
    assert time.monotonic() - t0 >= 1.0
    assert (await h.describe()).status == "COMPLETED"
