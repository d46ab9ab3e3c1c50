"""The list filter (``client/_list_filter.py``): Temporal's List Filter subset over visibility rows."""

from __future__ import annotations

import pytest

from aion.client._list_filter import ListFilterError, compile_filter
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
