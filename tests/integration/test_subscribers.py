"""Subscribers of the events topic: EventConsumer, ``aion events tail`` and the SQLite projection.

The histories are written to the events topic exactly as the engine writes them (Avro key
``{workflow_id, seq}``, Avro event, the workflow's partition), so these tests need no engine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from aion.cli._main import cli
from aion.client import ConsumerGroupActiveError, EventConsumer
from aion.codec import Codec, partition_for
from aion.engine.settings import Settings
from aion.engine.topics import TopicNames, ensure_topics
from aion.examples.projection import OrderStatusProjection
from aion.model import (
    Event,
    EventKey,
    Failure,
    Payload,
    SignalReceived,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
)

CODEC = Codec()


def _payload(value: object) -> Payload:
    return Payload("application/json", json.dumps(value).encode())


class Log:
    """Writes workflow histories to the events topic the way the engine does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = TopicNames(settings.topic_prefix).events
        self.producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True,
                                  "linger.ms": 1})
        self.next_seq: dict[str, int] = {}
        self.records = 0

    def append(self, workflow_id: str, *bodies: object) -> None:
        for body in bodies:
            seq = self.next_seq.get(workflow_id, 1)
            self.next_seq[workflow_id] = seq + 1
            ev = Event(workflow_id, seq, f"run-{workflow_id}", 1_700_000_000_000 + seq, body, f"cmd-{workflow_id}-{seq}")
            self.producer.produce(self.topic, CODEC.encode_event(ev), key=CODEC.encode_event_key(ev.key),
                                  partition=partition_for(workflow_id, self.settings.partitions))
            self.records += 1
        assert self.producer.flush(10) == 0

    def tombstone(self, workflow_id: str, seq: int) -> None:
        self.producer.produce(self.topic, None, key=CODEC.encode_event_key(EventKey(workflow_id, seq)),
                              partition=partition_for(workflow_id, self.settings.partitions))
        self.records += 1
        assert self.producer.flush(10) == 0

    def order(self, workflow_id: str, outcome: str | None, workflow_type: str = "OrderSaga") -> None:
        self.append(workflow_id, WorkflowStarted(workflow_type, [_payload({"order_id": workflow_id})]))
        self.append(workflow_id, SignalReceived("note", [_payload("hi")]))
        if outcome == "COMPLETED":
            self.append(workflow_id, WorkflowCompleted(_payload("ok")))
        elif outcome == "FAILED":
            self.append(workflow_id, WorkflowFailed(Failure("OrderFailed", "card declined")))


@pytest.fixture
def log(settings: Settings) -> Log:
    ensure_topics(settings)
    return Log(settings)


def _drain(consumer: EventConsumer, want: int, timeout: float = 30.0) -> list:
    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < want:
        assert time.monotonic() < deadline, f"got {len(out)} of {want} records: {[(r.workflow_id, r.seq) for r in out]}"
        out.extend(consumer.poll(0.5))
    return out


def test_event_consumer_filters_and_resumes_from_committed_offsets(settings: Settings, log: Log) -> None:
    log.order("o-1", "COMPLETED")
    log.order("o-2", "FAILED")
    log.order("o-3", None)

    # Filter by type: the two closing events, decoded.
    with EventConsumer(f"{settings.topic_prefix}-closers", settings=settings, from_beginning=True,
                       event_types=["WorkflowCompleted", "WorkflowFailed"]) as c:
        recs = _drain(c, 2)
        assert sorted((r.workflow_id, r.type) for r in recs) == [("o-1", "WorkflowCompleted"), ("o-2", "WorkflowFailed")]
        assert all(r.event is not None and r.event.workflow_id == r.workflow_id for r in recs)
        c.poll(1.0)  # the rest of the topic is read (and filtered), then committed on close

    # The group resumes after what it committed: only the new closing event arrives.
    log.append("o-3", WorkflowCompleted(_payload("late")))
    with EventConsumer(f"{settings.topic_prefix}-closers", settings=settings, from_beginning=True,
                       event_types=["WorkflowCompleted", "WorkflowFailed"]) as c:
        recs = _drain(c, 1)
        assert [(r.workflow_id, r.seq, r.type) for r in recs] == [("o-3", 3, "WorkflowCompleted")]
        assert c.stats["read"] <= 2  # not the whole topic again

    # Filter by workflow: only that workflow's partition and keys, in seq order.
    with EventConsumer(None, settings=settings, from_beginning=True, workflow_id="o-2") as c:
        assert c.assignment() == [partition_for("o-2", settings.partitions)]
        recs = _drain(c, 3)
        assert [(r.workflow_id, r.seq) for r in recs] == [("o-2", 1), ("o-2", 2), ("o-2", 3)]

    # Tombstones (retention) only on request.
    log.tombstone("o-1", 1)
    with EventConsumer(None, settings=settings, from_beginning=True, workflow_id="o-1", include_tombstones=True) as c:
        recs = _drain(c, 4)
        assert [(r.seq, r.event is None) for r in recs] == [(1, False), (2, False), (3, False), (1, True)]


def test_unknown_event_type_and_missing_topic_are_clear_errors(settings: Settings, log: Log) -> None:
    with pytest.raises(ValueError, match="unknown event type.*WorkflowDone"):
        EventConsumer(None, settings=settings, event_types=["WorkflowDone"])
    with pytest.raises(ValueError, match="does not exist"):
        EventConsumer(None, settings=settings.replace(topic_prefix=settings.topic_prefix + "-nope"))


def test_reset_offsets_replays_the_topic_and_refuses_an_active_group(settings: Settings, log: Log) -> None:
    log.order("r-1", "COMPLETED")
    log.order("r-2", "COMPLETED")
    group = f"{settings.topic_prefix}-replayer"
    with EventConsumer(group, settings=settings, from_beginning=True) as c:
        assert len(_drain(c, 6)) == 6
        with pytest.raises(ConsumerGroupActiveError, match="stop every consumer"):
            EventConsumer.reset_offsets(group, settings=settings)
    offsets = EventConsumer.reset_offsets(group, settings=settings, to="beginning")
    assert set(offsets) == set(range(settings.partitions))
    with EventConsumer(group, settings=settings) as c:
        assert sorted((r.workflow_id, r.seq) for r in _drain(c, 6)) == [
            ("r-1", 1), ("r-1", 2), ("r-1", 3), ("r-2", 1), ("r-2", 2), ("r-2", 3)]


def test_events_tail_cli(settings: Settings, log: Log) -> None:
    log.order("t-1", "COMPLETED")
    log.order("t-2", None)
    runner = CliRunner()
    base = ["--bootstrap", settings.bootstrap_servers, "--prefix", settings.topic_prefix,
            "--partitions", str(settings.partitions), "events", "tail"]
    out = runner.invoke(cli, [*base, "--from-beginning", "--workflow", "t-1", "--json", "--max", "3"], obj={})
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines()]
    assert [(r["workflow_id"], r["seq"], r["type"]) for r in rows] == [
        ("t-1", 1, "WorkflowStarted"), ("t-1", 2, "SignalReceived"), ("t-1", 3, "WorkflowCompleted")]

    # A group resumes: the first run prints the starts, the second only a new one.
    group = ["--group", f"{settings.topic_prefix}-tailers", "--type", "WorkflowStarted", "--from-beginning", "--idle-timeout", "1.5"]
    out = runner.invoke(cli, [*base, *group], obj={})
    assert out.exit_code == 0, out.output
    assert sorted(line.split()[2] for line in out.output.splitlines()) == ["t-1", "t-2"]
    log.order("t-3", None)
    out = runner.invoke(cli, [*base, *group], obj={})
    assert out.exit_code == 0, out.output
    assert [line.split()[2] for line in out.output.splitlines()] == ["t-3"]

    out = runner.invoke(cli, [*base, "--type", "Nope", "--max", "1"], obj={})
    assert out.exit_code == 1 and "unknown event type" in out.output


def test_projection_counts_resumes_and_rebuilds_by_resetting_offsets(settings: Settings, log: Log, tmp_path: Path) -> None:
    for i in range(3):
        log.order(f"order-{i}", "COMPLETED")
    log.order("order-3", "FAILED")
    log.order("order-4", None)
    log.order("other-1", "COMPLETED", workflow_type="Newsletter")
    group = f"{settings.topic_prefix}-projection"

    with OrderStatusProjection(tmp_path / "a.sqlite", settings=settings, group_id=group) as proj:
        proj.catch_up()
        assert proj.counts() == {"COMPLETED": 3, "FAILED": 1, "RUNNING": 1}
        first_read = proj.records_read
        assert first_read == log.records

    # Later: a running order completes; a restarted projection resumes from its committed offsets.
    log.append("order-4", WorkflowCompleted(_payload("shipped")))
    with OrderStatusProjection(tmp_path / "a.sqlite", settings=settings, group_id=group) as proj:
        proj.catch_up()
        assert proj.counts() == {"COMPLETED": 4, "FAILED": 1}
        assert proj.records_read == 1  # only the new event was read

    # Rebuild from scratch (a fresh database, e.g. after changing the projection's code):
    # reset the group's offsets to the beginning and read the whole topic again.
    with OrderStatusProjection(tmp_path / "b.sqlite", settings=settings, group_id=group) as proj:
        proj.rebuild()
        assert proj.counts() == {"COMPLETED": 4, "FAILED": 1}
        assert proj.status_of("order-3") == "FAILED" and proj.status_of("other-1") is None
        assert proj.records_read == log.records

    # Idempotent: applying the same events twice changes nothing.
    with OrderStatusProjection(tmp_path / "b.sqlite", settings=settings, group_id=group) as proj:
        EventConsumer.reset_offsets(group, settings=settings)
        proj.catch_up()
        assert proj.counts() == {"COMPLETED": 4, "FAILED": 1}


async def test_event_consumer_stream_from_asyncio(settings: Settings, log: Log) -> None:
    log.order("a-1", "COMPLETED")
    consumer = EventConsumer(f"{settings.topic_prefix}-async", settings=settings, from_beginning=True)
    try:
        seen = [(r.workflow_id, r.seq, r.type) async for r in consumer.stream(idle_timeout=1.5)]
    finally:
        consumer.close()
    assert seen == [("a-1", 1, "WorkflowStarted"), ("a-1", 2, "SignalReceived"), ("a-1", 3, "WorkflowCompleted")]
