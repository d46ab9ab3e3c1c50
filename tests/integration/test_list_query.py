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
