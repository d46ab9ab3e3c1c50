"""The web console's pure parts (no broker): what the forms accept and refuse, how an event and
a timeline are drawn, which actions a run offers, and that what a user typed is escaped."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aion.client._history import describe
from aion.console import PageError
from aion.console._format import event_details, failure_text
from aion.console._html import esc, url
from aion.console._timeline import gantt, spans_of
from aion.console._workflow_actions import json_args
from aion.console._workflow_page import applicable
from aion.console._workflows import _attrs, _when, filters_of
from aion.converter import default_converter
from aion.model import (
    ActivityCompleted, ActivityFailed, ActivityScheduled, Event, Failure, Payload, TimerFired, TimerStarted,
    WorkflowFailed, WorkflowStarted,
)


def _events(*bodies: object, start: int = 1_000) -> list[Event]:
    return [Event("wf-1", i, "run-1", start + 100 * i, b) for i, b in enumerate(bodies, 1)]  # type: ignore[arg-type]


def test_signal_and_query_arguments_are_a_json_array() -> None:
    assert json_args("", "signal 'x'") == []
    assert json_args(' ["yes", {"n": 1}] ', "signal 'x'") == ["yes", {"n": 1}]
    with pytest.raises(PageError, match=r"are not JSON: .* at column 2 .* write a JSON array"):
        json_args("[yes", "signal 'decide'")
    with pytest.raises(PageError, match=r"must be a JSON array .*not a str"):
        json_args('"yes"', "signal 'decide'")


def test_list_filters_from_the_query_string() -> None:
    f = filters_of({"status": "running", "type": " Order ", "page": "2", "size": "5000"})
    assert (f.status, f.type, f.page, f.size) == ("RUNNING", "Order", 2, 1000)
    with pytest.raises(PageError, match="status 'DONE' is not one of RUNNING"):
        filters_of({"status": "done"})
    with pytest.raises(PageError, match="page 'x' is not a number"):
        filters_of({"page": "x"})
    with pytest.raises(PageError, match="page must be 1 or more"):
        filters_of({"page": "0"})
    assert _attrs("Customer=acme, Region = eu,") == {"Customer": "acme", "Region": "eu"}
    with pytest.raises(PageError, match="'Customer' is not KEY=VALUE"):
        _attrs("Customer")
    t = _when("2026-12-03T10:00", "started after")
    assert t is not None and t.isoformat() == "2026-12-03T10:00:00+00:00"  # no zone: UTC
    assert _when("", "x") is None
    with pytest.raises(PageError, match="'yesterday' is not a time"):
        _when("yesterday", "started after")


def test_event_details_decode_payloads_and_leave_out_defaults() -> None:
    conv = default_converter()
    started = _events(WorkflowStarted("Order", [conv.to_payload({"id": "o-1"})], request_id="r-1"))[0]
    assert event_details(conv, started) == '{"workflow_type": "Order", "input": [{"id": "o-1"}]}'
    long = _events(WorkflowStarted("Order", [conv.to_payload("x" * 1000)]))[0]
    assert len(event_details(conv, long, limit=100)) == 100


def test_a_failure_chain_reads_as_python_prints_it() -> None:
    f = Failure("ApplicationError", "card declined", non_retryable=True, stack="  File x, line 1",
                cause=Failure("KeyError", "'cents'"))
    assert failure_text(f) == "ApplicationError: card declined\n(non-retryable)\n  File x, line 1\n\ncaused by:\nKeyError: 'cents'"


def test_timeline_spans_of_activities_and_timers() -> None:
    events = _events(
        WorkflowStarted("Order", []),
        ActivityScheduled("1", "charge", []),
        ActivityFailed("1", 1, Failure("E", "boom"), will_retry=True, retry_at_ms=2_000),
        ActivityCompleted("1", 2, Payload("application/json", b"1")),
        TimerStarted("t1", fire_at_ms=9_000, duration_ms=5_000, name="sleep"),
        ActivityScheduled("2", "ship", []),
        ActivityFailed("2", 1, Failure("E", "gone")),
    )
    spans = spans_of(events)
    assert [(s.kind, s.label, s.state) for s in spans] == [
        ("activity", "charge #1", "done"), ("timer", "sleep 5s", "wait"), ("activity", "ship #2", "fail")]
    assert spans[0].end_ms == 1_400  # the retry is one span, from its schedule to its completion
    html = gantt(events, spans)
    assert html.count('class="tl"') == 3 and "(open)" in html
    spans_after = spans_of([*events, Event("wf-1", 8, "run-1", 9_000, TimerFired("t1"))])
    assert spans_after[1].state == "done"


def test_the_actions_a_run_offers() -> None:
    running = describe("wf-1", _events(WorkflowStarted("Order", [])))
    assert applicable(running, held=False) == ["cancel", "terminate", "pause"]
    assert applicable(running, held=True) == ["cancel", "terminate", "resume"]
    failed = describe("wf-1", _events(WorkflowStarted("Order", []), WorkflowFailed(Failure("E", "x"))))
    assert applicable(failed, held=False) == ["reopen"]


def test_what_a_user_typed_is_escaped() -> None:
    assert esc('<script>alert("x")</script>') == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    assert esc(None) == ""
    assert url("/workflow", id="a b&c", notice="", error=None) == "/workflow?id=a+b%26c"


def test_importing_the_console_loads_no_engine_stack() -> None:
    code = ("import aion.console, aion.console._workflow_page, aion.console._operations, sys; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'faust', 'mode', 'aiokafka', 'rocksdict'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_api_writes_typed_search_attributes_and_datetimes() -> None:
    """describe() carries TypedSearchAttributes (issue 22): the JSON API writes them as {name: value}."""
    import json
    from datetime import datetime, timezone

    from aion.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
    from aion.console._format import jsonable

    typed = TypedSearchAttributes([SearchAttributePair(SearchAttributeKey.for_int("Priority"), 3),
                                   SearchAttributePair(SearchAttributeKey.for_keyword_list("Tags"), ["a", "b"])])
    at = datetime(2026, 12, 4, tzinfo=timezone.utc)
    out = json.loads(json.dumps({"typed": typed, "at": at}, default=jsonable))
    assert out == {"typed": {"Priority": 3, "Tags": ["a", "b"]}, "at": "2026-12-04T00:00:00+00:00"}
