"""The checker's strict re-write rule, its lost-timer rule and how it reads the topic (no broker).

Guarantee 4 ("single writer", ARCHITECTURE.md): a worker that stalled past its session timeout
and wakes up writes nothing more for the partitions it lost. When it does, it re-writes seqs
the new owner already wrote — usually the *same* event in meaning (the same command replayed
against the same history), only recorded at another time. Strict mode must catch exactly that:
a ``(workflow_id, seq)`` written again with any field different, ``recorded_at_ms`` included.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from aion.codec import Codec
from aion.converter import default_converter
from aion.engine.settings import Settings
from aion.model import (
    ActivityCompleted,
    ActivityScheduled,
    ActivityStarted,
    Event,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
    WorkflowStarted,
)
from aion.testing._checker import ISOLATION_LEVEL, EventLog, LogRecord, check_event_log, read_event_log

P = default_converter().to_payload
T0 = 1_700_000_000_000


def ev(seq: int, body: object, *, wid: str = "wf", run: str = "r1", cmd: str | None = None, at: int = T0) -> Event:
    return Event(wid, seq, run, at + seq, body, cmd if cmd is not None else f"{wid}-c{seq}")  # type: ignore[arg-type]


def one_activity(wid: str = "wf") -> list[Event]:
    return [
        ev(1, WorkflowStarted("ActivityFlow", [P("k")]), wid=wid),
        ev(2, ActivityScheduled("1", "work", [P("k")]), wid=wid, cmd=f"{wid}-c1"),
        ev(3, ActivityStarted("1", 1), wid=wid),
        ev(4, ActivityCompleted("1", 1, P("done")), wid=wid),
        ev(5, TimerStarted("1", T0 + 6, 1), wid=wid, cmd=f"{wid}-c4"),
        ev(6, TimerFired("1"), wid=wid),
        ev(7, WorkflowCompleted(P("done")), wid=wid, cmd=f"{wid}-c6"),
    ]


def check(events: list[Event], **kw: Any):  # type: ignore[no-untyped-def]
    return check_event_log(EventLog.from_events(events, partitions=kw.pop("partitions", 1)), **kw)


def invariants(report) -> list[str]:  # type: ignore[no-untyped-def]
    return [v.invariant for v in report.violations]


#: One way to change each field of an event that is not its key.
CHANGES: dict[str, Any] = {
    "run_id": lambda e: dataclasses.replace(e, run_id="r-other"),
    "recorded_at_ms": lambda e: dataclasses.replace(e, recorded_at_ms=e.recorded_at_ms + 6600),
    "body": lambda e: dataclasses.replace(e, body=ActivityScheduled("1", "work", [P("other")])),
    "command_id": lambda e: dataclasses.replace(e, command_id="wf-c-other"),
}


def test_every_field_of_an_event_is_covered() -> None:
    """A field added to Event must get a case here (and is compared by the checker anyway)."""
    key = {"workflow_id", "seq"}
    assert {f.name for f in dataclasses.fields(Event)} - key == set(CHANGES)


@pytest.mark.parametrize("field_name", sorted(CHANGES))
def test_strict_mode_flags_a_rewrite_with_any_field_different(field_name: str) -> None:
    events = one_activity()
    events.insert(4, CHANGES[field_name](events[1]))  # seq 2 again, right after seq 4
    report = check(events)
    rewrites = [v for v in report.violations if v.invariant == "rewrite"]
    assert len(rewrites) == 1, report.violations
    assert (rewrites[0].workflow_id, rewrites[0].seq) == ("wf", 2) and field_name in rewrites[0].message
    # another run id also breaks the history the compacted topic keeps; nothing else may be reported
    assert set(invariants(report)) <= {"rewrite", "run"} if field_name == "run_id" else invariants(report) == ["rewrite"]
    assert report.rewritten_keys == 1 and report.rewrite_records == 1


@pytest.mark.parametrize("field_name", sorted(CHANGES))
def test_lenient_mode_tolerates_only_another_recorded_at(field_name: str) -> None:
    events = one_activity()
    events.append(CHANGES[field_name](events[1]))
    report = check(events, strict_recorded_at=False)
    if field_name == "recorded_at_ms":
        assert report.ok, report.violations
        assert len(report.recorded_at_drifts) == 1 and report.recorded_at_drifts[0].seq == 2
    else:
        assert invariants(report)[0] == "rewrite"
        assert f"{field_name} differ" in report.violations[0].message


def test_the_measured_zombie_rewrite_of_seq_1_and_2_is_two_violations() -> None:
    """The issue's measurement: a stalled engine woke up and wrote seq 1 and 2 of a workflow the
    new owner had already written — same events, recorded 6.6 s later."""
    events = one_activity()
    zombie = [dataclasses.replace(e, recorded_at_ms=e.recorded_at_ms + 6600) for e in events[:2]]
    report = check(events + zombie)
    assert [(v.invariant, v.seq) for v in report.violations] == [("rewrite", 1), ("rewrite", 2)]
    assert "+6600 ms" in report.violations[0].message
    assert report.by_invariant() == {"rewrite": 2}
    assert "rewrite" in report.summary()


def test_a_rewrite_that_differs_from_the_first_is_caught_even_if_a_later_one_matches() -> None:
    events = one_activity()
    events += [CHANGES["recorded_at_ms"](events[2]), events[2]]
    report = check(events)
    assert invariants(report) == ["rewrite"] and report.rewrite_records == 2


def test_an_identical_rewrite_passes_strict_mode() -> None:
    events = one_activity()
    events += [events[0], events[1]]
    report = check(events)
    assert report.ok and report.rewrite_records == 2 and report.rewritten_keys == 2


def test_the_same_event_in_other_bytes_is_a_strict_violation() -> None:
    log = EventLog.from_events(one_activity())
    r = log.records[1]
    log.records.append(LogRecord(r.partition, len(log.records), r.key, r.value + b"\x00", r.event))  # type: ignore[operator]
    report = check_event_log(log)
    assert invariants(report) == ["rewrite"] and "other bytes" in report.violations[0].message
    assert check_event_log(log, strict_recorded_at=False).ok


# ------------------------------------------------------------------ lost timers


def stuck_at_timer(fire_at: int) -> list[Event]:
    return one_activity()[:4] + [ev(5, TimerStarted("1", fire_at, 1500), cmd="wf-c4")]


def test_a_timer_long_past_due_in_an_open_run_is_lost() -> None:
    events = stuck_at_timer(T0)
    log = EventLog.from_events(events)
    log.read_at_ms = T0 + 60_000
    report = check_event_log(log, lost_timer_grace_ms=30_000, require_closed=False)
    assert [(v.invariant, v.seq) for v in report.violations] == [("timer", 5)]
    assert "lost timer '1'" in report.violations[0].message
    # with require_closed (the default), the run that never closed is reported too
    assert sorted(invariants(check_event_log(log, lost_timer_grace_ms=30_000))) == ["run", "timer"]


def test_a_timer_within_its_grace_or_without_the_rule_is_not_lost() -> None:
    log = EventLog.from_events(stuck_at_timer(T0))
    log.read_at_ms = T0 + 10_000
    assert check_event_log(log, lost_timer_grace_ms=30_000, require_closed=False).ok
    log.read_at_ms = T0 + 600_000
    assert check_event_log(log, require_closed=False).ok  # the rule is opt-in


def test_without_a_read_time_the_newest_event_is_now() -> None:
    events = stuck_at_timer(T0) + [ev(1, WorkflowStarted("Other", []), wid="later", at=T0 + 90_000)]
    report = check(events, lost_timer_grace_ms=30_000, require_closed=False)
    assert invariants(report) == ["timer"]


def test_a_pending_timer_of_a_closed_run_is_not_lost() -> None:
    events = one_activity()[:4] + [ev(5, TimerStarted("1", T0, 1500), cmd="wf-c4"),
                                   ev(6, WorkflowCompleted(P("done")), cmd="wf-c4")]
    log = EventLog.from_events(events)
    log.read_at_ms = T0 + 600_000
    assert check_event_log(log, lost_timer_grace_ms=1000).ok


# ------------------------------------------------------------------ how the topic is read


class _Md:
    def __init__(self, topic: str, n: int) -> None:
        part = type("P", (), {"error": None})
        tmd = type("T", (), {"error": None, "partitions": {p: part() for p in range(n)}})()
        self.topics = {topic: tmd}


class _FakeConsumer:
    """Just enough of confluent_kafka.Consumer: a topic with ``high`` records on one partition,
    of which the first ``stable[i]`` are decided at the i-th watermark query (read_committed)."""

    made: list["_FakeConsumer"] = []
    stable: list[int] = []
    high = 3

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.assigned: list[Any] = []
        self.queries = 0
        self.pos = 0
        _FakeConsumer.made.append(self)

    def list_topics(self, topic: str, timeout: float = 0) -> _Md:
        self.topic = topic
        return _Md(topic, 1)

    def get_watermark_offsets(self, tp: Any, timeout: float = 0) -> tuple[int, int]:
        if self.conf.get("isolation.level") == "read_uncommitted":
            return 0, self.high
        i = min(self.queries, len(self.stable) - 1)
        self.queries += 1
        self.end = self.stable[i]
        return 0, self.end

    def assign(self, tps: list[Any]) -> None:
        self.assigned = tps

    def consume(self, n: int, timeout: float) -> list[Any]:
        codec = Codec()
        out = []
        while self.pos < self.end:
            e = one_activity()[self.pos]
            out.append(_Msg(self.pos, codec.encode_event_key(e.key), codec.encode_event(e)))
            self.pos += 1
        return out

    def close(self) -> None:
        pass


class _Msg:
    def __init__(self, offset: int, key: bytes, value: bytes) -> None:
        self._o, self._k, self._v = offset, key, value

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return self._k

    def value(self) -> bytes:
        return self._v


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> type[_FakeConsumer]:
    import confluent_kafka

    _FakeConsumer.made = []
    monkeypatch.setattr(confluent_kafka, "Consumer", _FakeConsumer)
    return _FakeConsumer


def _settings() -> Settings:
    return Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="chk", partitions=1)


def test_the_log_is_read_with_read_committed_explicitly(fake_kafka: type[_FakeConsumer]) -> None:
    assert ISOLATION_LEVEL == "read_committed"
    fake_kafka.stable = [3]
    log = read_event_log(_settings(), settle=0)
    readers = [c for c in fake_kafka.made if c.assigned]
    assert len(readers) == 1 and readers[0].conf["isolation.level"] == "read_committed"
    assert [r.event.seq for r in log.records if r.event] == [1, 2, 3]
    assert log.undecided == {} and log.read_at_ms is not None


def test_an_open_transaction_is_waited_for(fake_kafka: type[_FakeConsumer]) -> None:
    fake_kafka.stable = [1, 1, 3]  # the transaction holding offsets 1-2 commits a moment later
    log = read_event_log(_settings(), settle=5)
    assert [r.offset for r in log.records] == [0, 1, 2] and log.undecided == {}


def test_a_transaction_that_stays_open_is_reported_not_read(fake_kafka: type[_FakeConsumer]) -> None:
    fake_kafka.stable = [1]
    log = read_event_log(_settings(), settle=0.3)
    assert [r.offset for r in log.records] == [0]
    assert log.undecided == {0: (1, 3)}
