"""The list filter (``common/list_filter.py``): Temporal's List Filter subset over visibility rows."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from aion.common.list_filter import ListFilterError, compile_filter
from aion.client._visibility import WorkflowSummary

T0 = 1_764_756_000_000  # 2025-12-03T10:00:00Z


def row(wid: str, wtype: str, status: str, started: int, closed: int | None = None, **attrs: str) -> WorkflowSummary:
    return WorkflowSummary(wid, wtype, f"run-{wid}", status, 7, started, closed, "default", dict(attrs))


ROWS = [
    row("order-1", "Order", "RUNNING", T0, region="eu"),
    row("order-2", "Order", "COMPLETED", T0 + 60_000, T0 + 120_000, region="us"),
    row("order-3", "Order", "FAILED", T0 + 120_000, T0 + 130_000),
    row("refund-1", "Refund", "RUNNING", T0 + 180_000, region="eu"),
]


def ids(text: str) -> list[str]:
    pred = compile_filter(text)
    return [r.workflow_id for r in ROWS if pred(r)]


@pytest.mark.parametrize("text, expected", [
    ("", ["order-1", "order-2", "order-3", "refund-1"]),
    ("WorkflowType = 'Order'", ["order-1", "order-2", "order-3"]),
    ("WorkflowType != 'Order'", ["refund-1"]),
    ("ExecutionStatus = 'Running'", ["order-1", "refund-1"]),
    ("executionstatus in ('completed', 'FAILED')", ["order-2", "order-3"]),
    ("WorkflowType = 'Order' AND ExecutionStatus = 'Running' OR WorkflowId = 'refund-1'", ["order-1", "refund-1"]),
    ("WorkflowType = 'Order' AND (ExecutionStatus = 'Running' OR WorkflowId = 'refund-1')", ["order-1"]),
    ("WorkflowId STARTS_WITH 'order-'", ["order-1", "order-2", "order-3"]),
    ("StartTime > '2025-12-03T10:01:30Z'", ["order-3", "refund-1"]),
    (f"StartTime BETWEEN {T0 + 60_000} AND {T0 + 120_000}", ["order-2", "order-3"]),
    ("CloseTime < '2025-12-03T10:02:05Z'", ["order-2"]),  # a running row has no close time: no match
    ("region = 'eu'", ["order-1", "refund-1"]),
    ("region != 'eu'", ["order-2"]),  # a row without the attribute matches no condition on it
    ("`region` IN ('us')", ["order-2"]),
    ("HistoryLength >= 7 and WorkflowType = \"Refund\"", ["refund-1"]),
])
def test_filters_select_the_rows_they_say(text: str, expected: list[str]) -> None:
    assert ids(text) == expected


@pytest.mark.parametrize("text, where", [
    ("WorkflowType = ", "expected a value at the end"),
    ("WorkflowType 'Order'", "expected =, !=, <, >, <=, >=, IN, BETWEEN or STARTS_WITH at character 14"),
    ("(WorkflowType = 'Order'", "expected ')' at the end"),
    ("WorkflowType = 'Order' Status", "expected AND, OR or the end at character 24"),
    ("StartTime > 'yesterday'", "'yesterday' is not a time"),
    ("WorkflowType = 'Order' & x", "cannot read '& x' at character 24"),
])
def test_a_bad_filter_says_where_and_what_was_expected(text: str, where: str) -> None:
    with pytest.raises(ListFilterError) as e:
        compile_filter(text)
    assert where in str(e.value), str(e.value)
    assert isinstance(e.value, ValueError)  # an InvalidArgumentError: also a ValueError


# ---------------------------------------------------------------- typed search attributes
def typed_row(wid: str, values: dict[str, object], types: dict[str, str]) -> WorkflowSummary:
    return WorkflowSummary(wid, "Ticket", f"run-{wid}", "RUNNING", 3, T0, None, "default", dict(values),
                           search_attribute_types=types)


TYPES = {"Priority": "Int", "Score": "Double", "Vip": "Bool", "Due": "Datetime", "Tags": "KeywordList"}
TYPED = [
    typed_row("t-1", {"Priority": 2, "Score": 0.5, "Vip": True, "Tags": ["a", "b"],
                      "Due": datetime(2026, 12, 24, 18, tzinfo=timezone.utc)}, TYPES),
    typed_row("t-2", {"Priority": 10, "Score": 2.25, "Vip": False, "Tags": ["c"],
                      "Due": datetime(2026, 12, 1, tzinfo=timezone.utc)}, TYPES),
    typed_row("t-3", {"Priority": "9"}, {}),  # an untyped (text) attribute: compared as text
]


@pytest.mark.parametrize("text, expected", [
    ("Priority > 5", ["t-2", "t-3"]),  # 10 > 5 as numbers (as text "10" < "5"); t-3's text "9" > "5"
    ("Priority = 2", ["t-1"]),
    ("Priority = '2'", ["t-1"]),
    ("Priority BETWEEN 2 AND 9", ["t-1", "t-3"]),
    ("Priority BETWEEN 3 AND 10", ["t-2"]),  # t-3's text "9" is not between "3" and "10"
    ("Priority IN (10, 11)", ["t-2"]),
    ("Score >= 1", ["t-2"]),
    ("Score < 1.5", ["t-1"]),
    ("Vip = true", ["t-1"]),
    ("Vip = 'false'", ["t-2"]),
    ("Due > '2026-12-10T00:00:00Z'", ["t-1"]),
    ("Due < 1796500000000", ["t-2"]),  # epoch ms: 2026-12-05
    ("Tags = 'a'", ["t-1"]),
    ("Tags IN ('c', 'z')", ["t-2"]),
    ("Tags != 'a'", ["t-2"]),
    ("Tags STARTS_WITH 'b'", ["t-1"]),
    ("Tags > 'a'", []),
    ("Priority = 'high'", []),
])
def test_typed_attributes_compare_by_their_type(text: str, expected: list[str]) -> None:
    pred = compile_filter(text)
    assert [r.workflow_id for r in TYPED if pred(r)] == expected


def test_a_summary_gives_typed_search_attributes() -> None:
    from aion.common import SearchAttributeKey

    ts = TYPED[0].typed_search_attributes
    assert ts[SearchAttributeKey.for_int("Priority")] == 2
    assert ts[SearchAttributeKey.for_keyword_list("Tags")] == ["a", "b"]
    assert ts[SearchAttributeKey.for_datetime("Due")] == datetime(2026, 12, 24, 18, tzinfo=timezone.utc)
