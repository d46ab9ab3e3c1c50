"""List filters and counts over the visibility index, through an engine on the real broker and
the installed CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from aion.client import ListFilterError


async def test_list_and_count_with_a_filter_from_python_and_the_cli(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    cluster.activities()
    for i in range(3):
        h = await client.start_workflow("Hello", f"n{i}", id=f"lq-hello-{i}", search_attributes={"region": "eu" if i else "us"})
        await h.result(timeout=90)
    await client.start_workflow("Approval", 1, id="lq-approval-1")

    async def wait_rows(query: str, n: int) -> list:  # type: ignore[type-arg]
        for _ in range(100):  # the rows follow the engine's commits
            rows = await client.list_workflows(query)
            if len(rows) == n:
                return rows
            await asyncio.sleep(0.2)
        raise AssertionError(f"{query!r}: {rows}")

    done = await wait_rows("WorkflowType = 'Hello' AND ExecutionStatus = 'Completed'", 3)
    assert [r.workflow_id for r in done] == ["lq-hello-0", "lq-hello-1", "lq-hello-2"]
    assert [r.workflow_id for r in await client.list_workflows("region = 'eu' AND WorkflowId STARTS_WITH 'lq-'")] \
        == ["lq-hello-1", "lq-hello-2"]
    assert [r.workflow_id for r in await wait_rows("ExecutionStatus IN ('Running') OR region = 'us'", 2)] \
        == ["lq-hello-0", "lq-approval-1"]
    assert await client.count_workflows("WorkflowType != 'Hello'") == 1
    assert len(await client.list_workflows(limit=2)) == 2
    with pytest.raises(ListFilterError, match="expected a value at the end"):
        await client.list_workflows("WorkflowType =")

    def aion(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "aion.cli", "workflow", *args], env=cluster.env,
                              capture_output=True, text=True, timeout=120)

    res = await asyncio.to_thread(aion, "list", "--query", "WorkflowType = 'Hello' AND region = 'eu'", "--json")
    assert res.returncode == 0, res.stderr
    assert [r["workflow_id"] for r in json.loads(res.stdout)] == ["lq-hello-1", "lq-hello-2"]
    res = await asyncio.to_thread(aion, "count", "--query", "WorkflowType = 'Hello'")
    assert res.returncode == 0 and res.stdout.strip() == "3", res
    res = await asyncio.to_thread(aion, "list", "--query", "StartTime > 'yesterday'")
    assert res.returncode != 0 and "'yesterday' is not a time" in res.stderr, res


async def test_typed_search_attributes_are_listed_and_compared_by_type(cluster, client):  # type: ignore[no-untyped-def]
    """Typed attributes (aion.common) travel through the engine's visibility rows with their types:
    an Int compares as a number, a Datetime as an instant, a KeywordList holds a value."""
    from datetime import datetime, timezone

    from aion.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

    cluster.engine()
    prio, due, tags = (SearchAttributeKey.for_int("Priority"), SearchAttributeKey.for_datetime("Due"),
                       SearchAttributeKey.for_keyword_list("Tags"))
    for i, p in enumerate([2, 10]):
        await client.start_workflow("Approval", 1, id=f"typed-{i}", search_attributes=TypedSearchAttributes([
            SearchAttributePair(prio, p), SearchAttributePair(due, datetime(2026, 12, 1 + 20 * i, tzinfo=timezone.utc)),
            SearchAttributePair(tags, ["a"] if i == 0 else ["b", "c"])]))

    async def ids(query: str, n: int) -> list[str]:
        for _ in range(100):  # the rows follow the engine's commits
            rows = await client.list_workflows(query)
            if len(rows) == n:
                return [r.workflow_id for r in rows]
            await asyncio.sleep(0.2)
        raise AssertionError(f"{query!r}: {rows}")

    assert await ids("WorkflowId STARTS_WITH 'typed-' AND Priority > 5", 1) == ["typed-1"]  # as text "10" < "5"
    assert await ids("Due < '2026-12-10T00:00:00Z'", 1) == ["typed-0"]
    assert await ids("Tags = 'c' OR Tags = 'a'", 2) == ["typed-0", "typed-1"]
    row = (await client.list_workflows("Tags = 'b'"))[0]
    assert row.search_attributes["Priority"] == 10 and row.typed_search_attributes[prio] == 10
    assert row.search_attribute_types == {"Priority": "Int", "Due": "Datetime", "Tags": "KeywordList"}
    assert (await client.get_workflow_handle("typed-1").describe()).search_attributes["Tags"] == ["b", "c"]


async def test_lists_are_answered_by_the_engines_and_read_from_the_log_without_them(cluster, client):  # type: ignore[no-untyped-def]
    """A list and a count are answered by the engine that owns each partition (``__aion.list``,
    from its index) with exactly what the changelog holds; with no engine running, the client
    reads the changelog instead and answers the same."""
    from aion.client._visibility import read_workflow_rows
    from aion.common.visibility import ListRequest

    engine = cluster.engine()
    cluster.activities()
    handles = [await client.start_workflow("Hello", f"n{i}", id=f"served-{i:02d}",
                                           search_attributes={"shard": str(i % 3)}) for i in range(12)]
    for h in handles[:8]:
        await h.result(timeout=90)
    for i in range(3):
        await client.start_workflow("Approval", i + 1, id=f"served-wait-{i}")
    requests = [
        ListRequest.of("WorkflowType = 'Hello' AND ExecutionStatus = 'Completed'"),
        ListRequest.of("ExecutionStatus = 'Running' AND WorkflowType = 'Approval'"),
        ListRequest.of("shard = '1' OR WorkflowType = 'Approval'"),
        ListRequest.of("WorkflowId STARTS_WITH 'served-'"),
    ]

    async def from_log(req: ListRequest) -> list[str]:
        rows = await asyncio.to_thread(read_workflow_rows, client.settings, 30.0)
        return [r.workflow_id for r in req.select(rows)]

    for _ in range(150):  # every row committed: the log and the engines agree
        if len(await from_log(requests[3])) == 15 and len(await from_log(requests[0])) >= 8:
            break
        await asyncio.sleep(0.2)
    for req in requests:
        served = await client._visibility.list(req, None, 30.0)
        assert served is not None, f"no engine answered {req}"
        assert [r.workflow_id for r in served] == await from_log(req), req
        first = await client._visibility.list(req, 2, 30.0)
        assert first is not None and [r.workflow_id for r in first] == [r.workflow_id for r in served[:2]]
        assert await client._visibility.count(req, 30.0) == len(served)
    approvals = await client.list_workflows(type="Approval", status="Running")
    assert [r.workflow_id for r in approvals] == ["served-wait-0", "served-wait-1", "served-wait-2"]
    assert approvals[0].workflow_type == "Approval" and approvals[0].started_at_ms
    newest = await client.list_workflows(type="Approval", status="Running", newest_first=True, limit=2)
    assert [r.workflow_id for r in newest] == ["served-wait-2", "served-wait-1"]
    assert await client.count_workflows(type="Hello", search_attributes={"shard": "1"}) == 4

    engine.stop()
    client.LIST_ASK_TIMEOUT_S = 1.0
    assert await client._visibility.list(requests[1], None, 5.0) is None  # nobody answers
    assert [r.workflow_id for r in await client.list_workflows(requests[1].query)] == \
        ["served-wait-0", "served-wait-1", "served-wait-2"]
    assert await client.count_workflows("WorkflowType = 'Hello'") == 12
    assert [r.workflow_id for r in await client.list_workflows(type="Approval", newest_first=True, limit=1)] == \
        ["served-wait-2"]
