"""The invariant checker catches each kind of broken history (no broker: hand-made logs).

A checker that never fails proves nothing: every invariant of :mod:`aion.testing._checker`
gets a history that breaks it, and the clean history next to it passes.
"""

from __future__ import annotations

import dataclasses

import pytest

from aion.codec import Codec, partition_for
from aion.converter import default_converter
from aion.model import (
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    ActivityStarted,
    ChildWorkflowCompleted,
    ChildWorkflowStarted,
    Event,
    Failure,
    SignalReceived,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowTaskFailed,
)
from aion.testing._checker import (
    EventLog,
    Expectation,
    InvariantViolationError,
    LogRecord,
    check_event_log,
)

conv = default_converter()
P = conv.to_payload


def ev(seq: int, body: object, *, wid: str = "wf", run: str = "r1", cmd: str | None = None, at: int = 1000) -> Event:
    return Event(wid, seq, run, at + seq, body, cmd if cmd is not None else f"{wid}-c{seq}")  # type: ignore[arg-type]


def activity_flow(wid: str = "wf", result: str = "done") -> list[Event]:
    """Start, an activity that fails once and is retried, a timer, completion."""
    return [
        ev(1, WorkflowStarted("ActivityFlow", [P("k")]), wid=wid),
        ev(2, ActivityScheduled("1", "work", [P("k")]), wid=wid, cmd=f"{wid}-c1"),
        ev(3, ActivityStarted("1", 1), wid=wid),
        ev(4, ActivityFailed("1", 1, Failure("Flaky", "no"), will_retry=True, retry_at_ms=2000), wid=wid),
        ev(5, ActivityStarted("1", 2), wid=wid),
        ev(6, ActivityCompleted("1", 2, P(result)), wid=wid),
        ev(7, TimerStarted("1", 1008, 1), wid=wid, cmd=f"{wid}-c6"),
        ev(8, TimerFired("1"), wid=wid),
        ev(9, WorkflowCompleted(P(result)), wid=wid, cmd=f"{wid}-c8"),
    ]


def check(events: list[Event], **kw: object):  # type: ignore[no-untyped-def]
    return check_event_log(EventLog.from_events(events, partitions=kw.pop("partitions", 1)), **kw)  # type: ignore[arg-type]


def invariants(report) -> list[str]:  # type: ignore[no-untyped-def]
    return [v.invariant for v in report.violations]


def test_a_clean_history_passes() -> None:
    report = check(activity_flow(), expected={"wf": Expectation("COMPLETED", "done", runs=1)}, only_expected=True)
    assert report.ok, report.violations
    assert (report.workflows, report.runs, report.events, report.timers, report.activities) == (1, 1, 9, 1, 1)
    assert report.activity_retries == 1


def test_a_gap_in_the_seqs() -> None:
    events = [e for e in activity_flow() if e.seq != 5]
    assert invariants(check(events)) == ["gapless"]


def test_a_rewrite_with_another_event() -> None:
    events = activity_flow()
    events.append(dataclasses.replace(events[5], body=ActivityCompleted("1", 2, P("other"))))
    report = check(events)
    assert invariants(report) == ["rewrite"] and report.violations[0].seq == 6
    assert report.rewritten_keys == 1


def test_a_rewrite_that_differs_only_in_recorded_at() -> None:
    events = activity_flow()
    events.append(dataclasses.replace(events[5], recorded_at_ms=events[5].recorded_at_ms + 7))
    strict = check(events)
    assert invariants(strict) == ["rewrite"]
    lenient = check(events, strict_recorded_at=False)
    assert lenient.ok and len(lenient.recorded_at_drifts) == 1
    assert lenient.recorded_at_drifts[0].other_ms - lenient.recorded_at_drifts[0].first_ms == 7


def test_an_identical_rewrite_is_fine() -> None:
    events = activity_flow()
    events.append(events[3])
    report = check(events)
    assert report.ok and report.rewrite_records == 1


def test_two_closing_events_in_one_run() -> None:
    events = activity_flow()
    events.append(ev(10, WorkflowFailed(Failure("X", "y"))))
    assert "run" in invariants(check(events))


def test_a_run_that_never_closed() -> None:
    events = activity_flow()[:-1]
    assert invariants(check(events)) == ["run"]
    assert check(events, require_closed=False).ok


def test_continue_as_new_must_name_the_next_run() -> None:
    events = [
        ev(1, WorkflowStarted("Loop", [])),
        ev(2, WorkflowContinuedAsNew("r2", "Loop", [])),
        ev(3, WorkflowStarted("Loop", [], previous_run_id="r1"), run="r2", cmd="wf-c2"),
        ev(4, WorkflowCompleted(P(1)), run="r2"),
    ]
    assert check(events, expected={"wf": Expectation("COMPLETED", 1, runs=2)}).ok
    broken = list(events)
    broken[2] = dataclasses.replace(events[2], run_id="r9")
    broken[3] = dataclasses.replace(events[3], run_id="r9")
    assert "run" in invariants(check(broken))


@pytest.mark.parametrize("extra,why", [
    (TimerFired("1"), "fired twice"),
    (TimerCancelled("1"), "fired, then cancelled"),
    (TimerFired("9"), "never started"),
])
def test_timers_end_exactly_once(extra: object, why: str) -> None:
    events = activity_flow()[:-1]
    events.append(ev(9, extra))
    events.append(ev(10, WorkflowCompleted(P("done"))))
    assert invariants(check(events)) == ["timer"], why


def test_a_timer_that_fired_before_its_due_time() -> None:
    events = activity_flow()
    events[6] = ev(7, TimerStarted("1", 1009, 2), cmd="wf-c6")  # due 1009, fired at 1008
    report = check(events)
    assert invariants(report) == ["timer"] and "fired 1 ms early" in report.violations[0].message


def test_a_pending_timer_of_a_closed_run_needs_no_event() -> None:
    events = activity_flow()[:-1]
    events.append(ev(9, TimerStarted("2", 9000, 5000), cmd="wf-c8"))
    events.append(ev(10, WorkflowCompleted(P("done")), cmd="wf-c8"))
    assert check(events).ok


def test_an_activity_attempt_completed_twice() -> None:
    events = activity_flow()[:-3]
    events.append(ev(7, ActivityCompleted("1", 2, P("done"))))
    events.append(ev(8, WorkflowCompleted(P("done"))))
    assert "activity" in invariants(check(events))


def test_an_outcome_of_a_stale_attempt() -> None:
    events = activity_flow()[:4]
    events.append(ev(5, ActivityCompleted("1", 1, P("late"))))  # attempt 1 already failed (retry)
    events.append(ev(6, WorkflowCompleted(P("late"))))
    assert invariants(check(events)) == ["activity"]


def test_a_command_processed_twice() -> None:
    events = activity_flow()
    events[7] = dataclasses.replace(events[7], command_id="wf-c3")  # the command of seq 3 again, later
    assert "command" in invariants(check(events))


def test_a_signal_delivered_twice() -> None:
    events = [
        ev(1, WorkflowStarted("S", [])),
        ev(2, SignalReceived("add", [P(1)], signal_id="s1")),
        ev(3, SignalReceived("add", [P(1)], signal_id="s1")),
        ev(4, WorkflowCompleted(P(2))),
    ]
    assert invariants(check(events)) == ["signal"]


def test_a_workflow_task_failure_is_reported_unless_allowed() -> None:
    events = activity_flow()[:-1]
    events.append(ev(9, WorkflowTaskFailed(Failure("NondeterminismError", "diverged"), 1, 5000)))
    events.append(ev(10, WorkflowCompleted(P("done"))))
    assert invariants(check(events)) == ["task"]
    assert check(events, allow_task_failures=True).ok


def test_expectations_status_result_and_runs() -> None:
    events = activity_flow(result="done")
    assert invariants(check(events, expected={"wf": Expectation("COMPLETED", "other")})) == ["expected"]
    assert invariants(check(events, expected={"wf": Expectation("FAILED")})) == ["expected"]
    assert invariants(check(events, expected={"wf": Expectation("COMPLETED", "done", runs=2)})) == ["expected"]
    assert invariants(check(events, expected={"nobody": Expectation()})) == ["expected"]
    assert invariants(check(events, expected={}, only_expected=True)) == ["expected"]


def test_a_failure_type_among_the_causes() -> None:
    failure = Failure("ActivityError", "activity failed", cause=Failure("Declined", "no"))
    events = [ev(1, WorkflowStarted("D", [])), ev(2, WorkflowFailed(failure))]
    assert check(events, expected={"wf": Expectation("FAILED", failure_type="Declined")}).ok
    assert not check(events, expected={"wf": Expectation("FAILED", failure_type="Other")}).ok


def test_the_parent_must_record_what_the_child_returned() -> None:
    child = [ev(1, WorkflowStarted("C", [], parent_workflow_id="p", parent_run_id="r1"), wid="p-child"),
             ev(2, WorkflowCompleted(P(40)), wid="p-child")]
    parent = [ev(1, WorkflowStarted("P", []), wid="p"),
              ev(2, ChildWorkflowStarted("p-child", "C", []), wid="p", cmd="p-c1"),
              ev(3, ChildWorkflowCompleted("p-child", P(40)), wid="p"),
              ev(4, WorkflowCompleted(P(41)), wid="p", cmd="p-c3")]
    assert check(child + parent).ok
    wrong = parent[:2] + [ev(3, ChildWorkflowCompleted("p-child", P(7)), wid="p"), parent[3]]
    assert invariants(check(child + wrong)) == ["child"]


def test_a_record_on_the_wrong_partition_or_with_the_wrong_key() -> None:
    codec = Codec()
    events = activity_flow()
    log = EventLog.from_events(events, partitions=4)
    right = partition_for("wf", 4)
    r = log.records[0]
    log.records[0] = LogRecord((right + 1) % 4, r.offset, r.key, r.value, r.event)
    assert "record" in invariants(check_event_log(log))
    log = EventLog.from_events(events, partitions=4)
    r = log.records[1]
    log.records[1] = LogRecord(r.partition, r.offset, codec.encode_event_key(events[2].key), r.value, r.event)
    assert "record" in invariants(check_event_log(log))


def test_raise_for_violations_names_the_first_invariant_and_workflow() -> None:
    events = [e for e in activity_flow(wid="order-7") if e.seq != 5]
    with pytest.raises(InvariantViolationError, match=r"\[gapless\] workflow 'order-7'"):
        check(events).raise_for_violations()
