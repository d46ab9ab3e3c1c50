"""Temporal options with no equivalent here are refused with an error that says what to do,
never silently dropped or stored as something else: typed (non-text) search attributes. (Cron
workflows, workflow retry policies and memos are supported: ``test_retry_cron_memo.py``.)"""

from __future__ import annotations

import pytest

from aion import workflow
from aion.exceptions import InvalidArgumentError
from aion.testing import WorkflowEnvironment


@workflow.defn
class Leaf:
    @workflow.run
    async def run(self) -> str:
        return "leaf"


@workflow.defn
class Tagger:
    @workflow.run
    async def run(self, value_kind: str) -> str:
        value = {"list": ["new-value"], "int": 3, "text": "new-value"}[value_kind]
        try:
            workflow.upsert_search_attributes({"Tag": value})
        except InvalidArgumentError as err:
            return str(err)
        return workflow.info().search_attributes.get("Tag", "")


@pytest.mark.parametrize("kind", ["list", "int"])
async def test_a_non_text_search_attribute_is_refused_on_upsert(kind: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Tagger]) as env:
        out = await env.client.execute_workflow(Tagger.run, kind, id=f"tag-{kind}")
        assert "search attribute 'Tag'" in out and "text" in out, out
        types = [e.type for e in await env.client.get_workflow_handle(f"tag-{kind}").history()]
        assert "SearchAttributesUpserted" not in types


async def test_a_text_search_attribute_is_kept() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Tagger]) as env:
        assert await env.client.execute_workflow(Tagger.run, "text", id="tag-text") == "new-value"


async def test_a_non_text_search_attribute_is_refused_at_start() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Leaf]) as env:
        with pytest.raises(InvalidArgumentError, match="search attribute 'Tags' must be a string, got list"):
            await env.client.start_workflow(Leaf.run, id="leaf-sa", search_attributes={"Tags": ["a"]})  # type: ignore[dict-item]
        assert env.history("leaf-sa") == []
