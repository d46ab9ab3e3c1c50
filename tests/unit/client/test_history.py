"""History folding (last write per seq wins, tombstones delete) and describe()."""

from dataclasses import dataclass

from aion.client._history import KeyFilter, closes_workflow, describe, fold
from aion.codec import Codec
from aion.model import (
    ActivityScheduled,
    Event,
    EventKey,
    Payload,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowStarted,
)

P = Payload("application/json", b'"x"')


@dataclass
class Msg:
    k: bytes | None
    v: bytes | None

    def key(self) -> bytes | None:
        return self.k

    def value(self) -> bytes | None:
        return self.v


def ev(wid: str, seq: int, body, run: str = "r1") -> Event:
    return Event(wid, seq, run, 1000 + seq, body)


def rec(codec: Codec, e: Event | None, wid: str = "", seq: int = 0) -> Msg:
    if e is None:
        return Msg(codec.encode_event_key(EventKey(wid, seq)), None)
    return Msg(codec.encode_event_key(e.key), codec.encode_event(e))


def test_key_filter_matches_only_its_workflow() -> None:
    codec = Codec()
    f = KeyFilter(codec, "order-1")
    assert f.seq_of(codec.encode_event_key(EventKey("order-1", 300))) == 300
    assert f.seq_of(codec.encode_event_key(EventKey("order-10", 1))) is None
    assert f.seq_of(codec.encode_event_key(EventKey("order-", 1))) is None
    assert f.seq_of(None) is None and f.seq_of(b"junk") is None


def test_fold_keeps_the_last_write_per_seq_and_applies_tombstones() -> None:
    codec = Codec()
    started = ev("wf", 1, WorkflowStarted("Hello", [P]))
    sched = ev("wf", 2, ActivityScheduled("1", "greet", [P]))
    sched_again = ev("wf", 2, ActivityScheduled("1", "greet", [P], task_queue="q2"))
    other = ev("other", 1, WorkflowStarted("Hello", [P]))
    stray = ev("wf", 3, WorkflowCompleted(P))
    out: dict[int, Event] = {}
    fold(iter([rec(codec, started), rec(codec, other), rec(codec, sched), rec(codec, stray),
               rec(codec, sched_again), rec(codec, None, "wf", 3)]),
         KeyFilter(codec, "wf"), codec.decode_event, out)
    assert [out[s] for s in sorted(out)] == [started, sched_again]


def test_describe_reports_the_latest_run() -> None:
    events = [
        ev("wf", 1, WorkflowStarted("Sub", [P], search_attributes={"a": "1"})),
        ev("wf", 2, WorkflowContinuedAsNew("r2", "Sub", [P]), run="r1"),
        ev("wf", 3, WorkflowStarted("Sub", [P], previous_run_id="r1"), run="r2"),
    ]
    d = describe("wf", events)
    assert (d.status, d.run_id, d.workflow_type, d.runs, d.history_length, d.run_history_length) == (
        "RUNNING", "r2", "Sub", 2, 3, 1)
    assert d.close_time_ms is None and d.start_time_ms == 1003
    events.append(ev("wf", 4, WorkflowCompleted(P), run="r2"))
    d = describe("wf", events)
    assert d.status == "COMPLETED" and d.close_time_ms == 1004 and d.last_seq == 4
    assert closes_workflow(events[-1]) and not closes_workflow(events[1])
