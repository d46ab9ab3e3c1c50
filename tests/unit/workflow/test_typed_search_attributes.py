"""Typed search attributes as in Temporal (``aion.common``): typed keys at the start and in
``upsert_search_attributes`` (set and unset), the plain dict form with lists and numbers,
``info()`` / ``describe()`` / the history, and clear refusals for values that fit no type."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from aion import workflow
from aion.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from aion.exceptions import InvalidArgumentError
from aion.runtime import Registry, replay_history
from aion.testing import WorkflowEnvironment

PRIORITY = SearchAttributeKey.for_int("Priority")
SCORE = SearchAttributeKey.for_float("Score")
VIP = SearchAttributeKey.for_bool("Vip")
DUE = SearchAttributeKey.for_datetime("Due")
TAGS = SearchAttributeKey.for_keyword_list("Tags")
CUSTOMER = SearchAttributeKey.for_keyword("Customer")
NOTE = SearchAttributeKey.for_text("Note")
DUE_AT = datetime(2026, 12, 24, 18, 0, tzinfo=timezone.utc)


@workflow.defn
class Ticket:
    @workflow.run
    async def run(self, step: str) -> dict:
        before = workflow.info().typed_search_attributes
        if step == "typed":
            workflow.upsert_search_attributes([PRIORITY.value_set(before[PRIORITY] + 1), TAGS.value_set(["a", "b"]),
                                               VIP.value_unset(), SCORE.value_set(0.5)])
        elif step == "dict":
            workflow.upsert_search_attributes({"CustomKeywordField": ["new-value"], "Count": 3, "Note": "plain"})
        elif step == "bad-key":
            try:
                workflow.upsert_search_attributes([PRIORITY.value_set("high")])  # type: ignore[arg-type]
            except InvalidArgumentError as err:
                return {"error": str(err)}
        elif step == "bad-dict":
            try:
                workflow.upsert_search_attributes({"Blob": {"a": 1}})
            except InvalidArgumentError as err:
                return {"error": str(err)}
        info = workflow.info()
        return {"values": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in info.search_attributes.items()},
                "priority": info.typed_search_attributes.get(PRIORITY), "vip": VIP in info.typed_search_attributes}


START = TypedSearchAttributes([
    SearchAttributePair(PRIORITY, 2), SearchAttributePair(VIP, True), SearchAttributePair(DUE, DUE_AT),
    SearchAttributePair(CUSTOMER, "c-1"), SearchAttributePair(NOTE, "first"),
])


async def test_typed_keys_at_the_start_and_in_an_upsert() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Ticket]) as env:
        out = await env.client.execute_workflow(Ticket.run, "typed", id="t-1", search_attributes=START)
        assert out["priority"] == 3 and out["vip"] is False
        assert out["values"] == {"Priority": 3, "Due": "2026-12-24T18:00:00+00:00", "Customer": "c-1", "Note": "first",
                                 "Tags": ["a", "b"], "Score": 0.5}
        h = env.client.get_workflow_handle("t-1")
        d = await h.describe()
        assert d.search_attributes == {"Priority": 3, "Due": DUE_AT, "Customer": "c-1", "Note": "first",
                                       "Tags": ["a", "b"], "Score": 0.5}
        assert d.typed_search_attributes[PRIORITY] == 3 and d.typed_search_attributes[TAGS] == ["a", "b"]
        assert d.typed_search_attributes.get(VIP) is None
        history = await h.history()
        started = history[0].body
        assert started.search_attributes["Due"] == "2026-12-24T18:00:00Z"
        assert started.search_attribute_types == {"Priority": "Int", "Vip": "Bool", "Due": "Datetime",
                                                  "Customer": "Keyword", "Note": "Text"}
        upsert = next(e.body for e in history if e.type == "SearchAttributesUpserted")
        assert upsert.types == {"Priority": "Int", "Tags": "KeywordList", "Score": "Double"} and upsert.unset == ["Vip"]
        assert replay_history(Registry([Ticket]), env.history("t-1"), strict=True).ok


async def test_the_plain_dict_form_gives_lists_and_numbers_their_types() -> None:
    """Temporal's older spelling (its hello_search_attributes sample): a list of str is a keyword
    list, an int an Int; a str stays text as it always was."""
    async with WorkflowEnvironment.start_time_skipping(workflows=[Ticket]) as env:
        h = await env.client.start_workflow(Ticket.run, "dict", id="t-2",
                                            search_attributes={"CustomKeywordField": ["old-value"]})
        await h.result()
        started = (await h.history())[0].body
        assert started.search_attribute_types == {"CustomKeywordField": "KeywordList"}
        d = await h.describe()
        assert d.search_attributes == {"CustomKeywordField": ["new-value"], "Count": 3, "Note": "plain"}
        upsert = next(e.body for e in await h.history() if e.type == "SearchAttributesUpserted")
        assert upsert.types == {"CustomKeywordField": "KeywordList", "Count": "Int"}


@pytest.mark.parametrize("step, words", [("bad-key", ["'Priority'", "Int", "str"]),
                                         ("bad-dict", ["'Blob'", "dict"])])
async def test_a_value_that_fits_no_type_is_refused_in_workflow_code(step: str, words: list[str]) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Ticket]) as env:
        out = await env.client.execute_workflow(Ticket.run, step, id=f"t-{step}")
        assert all(w in out["error"] for w in words), out
        types = [e.type for e in await env.client.get_workflow_handle(f"t-{step}").history()]
        assert "SearchAttributesUpserted" not in types


async def test_a_value_that_fits_no_type_is_refused_at_the_start() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Ticket]) as env:
        with pytest.raises(InvalidArgumentError, match="search attribute 'Tags' = \\[1, 'a'\\]"):
            await env.client.start_workflow(Ticket.run, "none", id="t-3", search_attributes={"Tags": [1, "a"]})
        with pytest.raises(InvalidArgumentError, match="'Priority' is a Int attribute"):
            TypedSearchAttributes([SearchAttributePair(PRIORITY, "high")])  # type: ignore[arg-type]
        assert env.history("t-3") == []


def test_typed_search_attributes_behave_like_temporals() -> None:
    ts = TypedSearchAttributes([SearchAttributePair(PRIORITY, 1)])
    assert len(ts) == 1 and PRIORITY in ts and ts[PRIORITY] == 1 and ts.get(SCORE, 9.0) == 9.0
    up = ts.updated(SearchAttributePair(PRIORITY, 5), SearchAttributePair(TAGS, ["x"]))
    assert up[PRIORITY] == 5 and up[TAGS] == ["x"] and ts[PRIORITY] == 1
    assert [p.key.name for p in up] == ["Priority", "Tags"] and TypedSearchAttributes.empty == TypedSearchAttributes()
    assert PRIORITY.value_type is int and TAGS.value_type is list
    with pytest.raises(InvalidArgumentError, match="given twice"):
        TypedSearchAttributes([SearchAttributePair(PRIORITY, 1), SearchAttributePair(PRIORITY, 2)])
