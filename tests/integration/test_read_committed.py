"""Readers of engine output see committed records only (``isolation.level=read_committed``).

The engine writes each batch of its output in a Kafka transaction. An aborted transaction's
records stay in the log, followed by an abort marker; a consumer with
``isolation.level=read_uncommitted`` would deliver them. Here a transactional producer writes
well-formed events the way the engine does (Avro key ``{workflow_id, seq}``, the workflow's
partition) in committed and in aborted transactions, so no engine runs. Every public reader of
the events topic must then see exactly the committed history:

- ``order-ok``: seq 1-2 committed; seq 3 (WorkflowFailed) and 4 aborted; seq 3 written again
  (WorkflowCompleted) and committed; seq 4 aborted again at the tail of the partition (the
  partition ends with an abort marker, which readers that stop at the end offset must pass);
- a ghost workflow on the same partition, written only in the aborted transactions;
- a lost workflow alone on another partition, written only in the aborted transactions (that
  partition holds aborted records and markers only).

Each assertion below fails when the reader's consumer uses read_uncommitted (checked by
switching ``READ_COMMITTED`` in aion/client/_kafka.py, the rebuild consumer, the projection
and the visibility reader to read_uncommitted).
"""

from __future__ import annotations

import ast
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from aion.cli._main import cli
from aion.client import Client, EventConsumer
from aion.common.kafka import consumer_config
from aion.client._visibility import read_workflow_rows, workflows_changelog
from aion.codec import Codec, partition_for
from aion.engine._rebuild import read_histories, scan_events
from aion.engine.settings import Settings
from aion.engine.topics import TopicNames, ensure_topics
from aion.examples.projection import OrderStatusProjection
from aion.model import (
    Event,
    Failure,
    Payload,
    SignalReceived,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
)

CODEC = Codec()
OK = "order-ok"
STREAMS = Path(__file__).resolve().parents[2] / "streams" / "aion"


def _payload(value: object) -> Payload:
    return Payload("application/json", json.dumps(value).encode())


def _first_id(stem: str, partitions: int, want: Any) -> str:
    return next(f"{stem}-{i}" for i in range(10_000) if want(partition_for(f"{stem}-{i}", partitions)))


class TxLog:
    """Writes records to one topic in Kafka transactions, committed or aborted."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.producer = Producer({**settings.confluent_config(), "linger.ms": 1,
                                  "transactional.id": f"{settings.topic_prefix}.test-tx.{uuid.uuid4().hex}"})
        self.producer.init_transactions(30)

    def transaction(self, records: Iterable[tuple[bytes, bytes | None, int]], *, commit: bool) -> None:
        self.producer.begin_transaction()
        for key, value, partition in records:
            self.producer.produce(self.topic, value, key=key, partition=partition)
        # Sent before the abort: abort_transaction() drops what is still queued locally, and
        # the point is aborted records that are in the log.
        assert self.producer.flush(30) == 0
        if commit:
            self.producer.commit_transaction(30)
        else:
            self.producer.abort_transaction(30)


def _event(workflow_id: str, seq: int, body: object) -> Event:
    return Event(workflow_id, seq, f"run-{workflow_id}", 1_700_000_000_000 + seq, body, f"cmd-{workflow_id}-{seq}")


class Histories:
    """The scenario of the module docstring, written to ``<prefix>.events``."""

    def __init__(self, settings: Settings) -> None:
        n = settings.partitions
        self.settings = settings
        self.partition = partition_for(OK, n)
        self.ghost = _first_id("order-ghost", n, lambda p: p == self.partition)
        self.lost = _first_id("order-lost", n, lambda p: p != self.partition)
        self.log = TxLog(settings, TopicNames(settings.topic_prefix).events)
        started = WorkflowStarted("OrderSaga", [_payload({"order_id": OK})])
        self.committed = [
            _event(OK, 1, started),
            _event(OK, 2, SignalReceived("note", [_payload("committed")])),
            _event(OK, 3, WorkflowCompleted(_payload("shipped"))),
        ]
        self.write([self.committed[0], self.committed[1]], commit=True)
        self.write([
            _event(OK, 3, WorkflowFailed(Failure("Aborted", "this transaction was aborted"))),
            _event(OK, 4, SignalReceived("note", [_payload("aborted")])),
            _event(self.ghost, 1, WorkflowStarted("OrderSaga", [_payload({"order_id": self.ghost})])),
            _event(self.ghost, 2, WorkflowCompleted(_payload("ghost"))),
            _event(self.lost, 1, WorkflowStarted("OrderSaga", [_payload({"order_id": self.lost})])),
            _event(self.lost, 2, WorkflowFailed(Failure("Aborted", "lost"))),
        ], commit=False)
        self.write([self.committed[2]], commit=True)
        self.write([  # the tail of both partitions: an aborted transaction, then its marker
            _event(OK, 4, SignalReceived("note", [_payload("aborted-tail")])),
            _event(self.ghost, 3, SignalReceived("note", [_payload("ghost")])),
            _event(self.lost, 3, SignalReceived("note", [_payload("lost")])),
        ], commit=False)

    def write(self, events: list[Event], *, commit: bool) -> None:
        n = self.settings.partitions
        self.log.transaction([(CODEC.encode_event_key(e.key), CODEC.encode_event(e), partition_for(e.workflow_id, n))
                              for e in events], commit=commit)

    @property
    def committed_keys(self) -> list[tuple[str, int]]:
        return [(e.workflow_id, e.seq) for e in self.committed]


@pytest.fixture
def histories(settings: Settings) -> Histories:
    ensure_topics(settings)
    return Histories(settings)


def _summary(events: Iterable[Event | None]) -> list[tuple[str, int, str]]:
    return [(e.workflow_id, e.seq, e.type) for e in events if e is not None]


EXPECTED = [(OK, 1, "WorkflowStarted"), (OK, 2, "SignalReceived"), (OK, 3, "WorkflowCompleted")]


def _read_to_end(consumer: EventConsumer, timeout: float = 30.0) -> list:
    """Everything up to the end offsets (as the consumer's isolation level sees them)."""
    out: list = []
    deadline = time.monotonic() + timeout
    ends = consumer.watermarks()
    while not consumer.caught_up(ends):
        assert time.monotonic() < deadline, f"not caught up with {ends}: read {[(r.workflow_id, r.seq) for r in out]}"
        out.extend(consumer.poll(0.2))
    out.extend(consumer.poll(0.2))
    return out


# ------------------------------------------------------------------ the configs


def test_consumers_of_engine_output_say_read_committed() -> None:
    cfg = consumer_config({"bootstrap.servers": "x"}, group_id="g", client_id="c")
    assert cfg["isolation.level"] == "read_committed"
    # Every consumer built in the client, the CLI, the benchmarks, the example projection and
    # the rebuild either comes from consumer_config or sets the isolation level itself.
    files = [*sorted((STREAMS / "client").glob("*.py")), *sorted((STREAMS / "cli").glob("*.py")),
             *sorted((STREAMS / "bench").glob("*.py")), STREAMS / "examples" / "projection.py",
             STREAMS / "engine" / "_rebuild.py"]
    bad = []
    for f in files:
        text = f.read_text()
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            src = ast.get_source_segment(text, fn) or ""
            for call in ast.walk(fn):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Consumer"
                        and "consumer_config(" not in src and "isolation.level" not in src):
                    bad.append(f"{f.relative_to(STREAMS)}:{call.lineno}")
    assert not bad, f"consumers without an explicit isolation.level: {bad}"


# ------------------------------------------------------------------ the readers


def test_event_consumer_skips_aborted_transactions(settings: Settings, histories: Histories) -> None:
    # A group (subscribe), every partition: no ghost, no lost workflow, no aborted seq.
    with EventConsumer(f"{settings.topic_prefix}-rc", settings=settings, from_beginning=True) as c:
        recs = _read_to_end(c)
        assert _summary(r.event for r in recs) == EXPECTED
        assert c.stats["read"] == 3
        # What the group commits: past the last committed record it delivered (the aborted
        # records after it are skipped again by the next member).
        positions = c.positions()
    assert positions == {histories.partition: max(r.offset for r in recs) + 1}

    # One workflow (assign to its partition, no group).
    with EventConsumer(None, settings=settings, from_beginning=True, workflow_id=OK) as c:
        assert _summary(r.event for r in _read_to_end(c)) == EXPECTED
    with EventConsumer(None, settings=settings, from_beginning=True, workflow_id=histories.ghost) as c:
        assert _read_to_end(c) == []


def test_projection_counts_committed_orders_only(settings: Settings, histories: Histories, tmp_path: Path) -> None:
    with OrderStatusProjection(tmp_path / "p.sqlite", settings=settings, group_id=f"{settings.topic_prefix}-proj") as proj:
        proj.catch_up(timeout=30)
        assert proj.counts() == {"COMPLETED": 1}
        assert proj.status_of(OK) == "COMPLETED"
        assert proj.status_of(histories.ghost) is None and proj.status_of(histories.lost) is None


async def test_client_history_events_and_describe_skip_aborted_transactions(settings: Settings, histories: Histories) -> None:
    async with Client.connect(settings=settings) as client:
        t0 = time.monotonic()
        h = client.get_workflow_handle(OK)
        history = await h.history()
        assert _summary(history) == EXPECTED
        assert history[-1].body == WorkflowCompleted(_payload("shipped"))
        assert _summary([e async for e in h.events(follow=False)]) == EXPECTED
        d = await h.describe()
        assert (d.status, d.history_length, d.last_seq) == ("COMPLETED", 3, 3)
        assert await client.get_workflow_handle(histories.ghost).history() == []
        assert await client.get_workflow_handle(histories.lost).history() == []
        # Reading up to an end offset that lies behind an abort marker does not wait out a timeout.
        assert time.monotonic() - t0 < 20


async def test_client_follower_waits_out_an_aborted_transaction(settings: Settings, histories: Histories) -> None:
    live = "order-live"
    write = histories.write
    write([_event(live, 1, WorkflowStarted("OrderSaga", []))], commit=True)
    async with Client.connect(settings=settings) as client:
        seen: list[Event] = []

        async def follow() -> None:
            async for e in client.get_workflow_handle(live).events(follow=True):
                seen.append(e)

        task = asyncio.create_task(follow())
        try:
            await _until(lambda: len(seen) >= 1)
            # An aborted close: a read_uncommitted follower would yield it and stop.
            write([_event(live, 2, WorkflowFailed(Failure("Aborted", "never happened")))], commit=False)
            await asyncio.sleep(1.5)
            assert _summary(seen) == [(live, 1, "WorkflowStarted")] and not task.done()
            # The engine writes the seq again, committed this time: that one is followed.
            write([_event(live, 2, WorkflowCompleted(_payload("done")))], commit=True)
            await asyncio.wait_for(task, 15)
        finally:
            task.cancel()
        assert _summary(seen) == [(live, 1, "WorkflowStarted"), (live, 2, "WorkflowCompleted")]


async def _until(pred: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_rebuild_scan_skips_aborted_transactions(settings: Settings, histories: Histories) -> None:
    t0 = time.monotonic()
    records = list(scan_events(settings, timeout_s=20))
    decoded = [CODEC.decode_event(v) for _, _, _, v in records]
    assert sorted(_summary(decoded)) == EXPECTED
    assert {p for p, _, _, _ in records} == {histories.partition}
    assert dict(read_histories(settings)) == {OK: histories.committed}
    assert dict(read_histories(settings, workflow_id=histories.lost)) == {}
    assert time.monotonic() - t0 < 20


def test_events_tail_cli_skips_aborted_transactions(settings: Settings, histories: Histories) -> None:
    base = ["--bootstrap", settings.bootstrap_servers, "--prefix", settings.topic_prefix,
            "--partitions", str(settings.partitions), "events", "tail", "--from-beginning", "--json"]
    runner = CliRunner()
    for extra in (["--idle-timeout", "1.5"], ["--workflow", OK, "--idle-timeout", "1"]):
        out = runner.invoke(cli, [*base, *extra], obj={})
        assert out.exit_code == 0, out.output
        rows = [json.loads(line) for line in out.output.splitlines()]
        assert [(r["workflow_id"], r["seq"], r["type"]) for r in rows] == EXPECTED, extra


def test_visibility_rows_skip_aborted_transactions(settings: Settings) -> None:
    topic = workflows_changelog(settings.topic_prefix)
    admin = AdminClient(settings.confluent_config())
    admin.create_topics([NewTopic(topic, settings.partitions, 1, config={"cleanup.policy": "compact"})])[topic].result()
    log = TxLog(settings, topic)

    def row(wid: str, status: str) -> tuple[bytes, bytes, int]:
        return wid.encode(), json.dumps({"workflow_id": wid, "workflow_type": "OrderSaga", "status": status,
                                         "history_length": 3}).encode(), partition_for(wid, settings.partitions)

    log.transaction([row(OK, "RUNNING")], commit=True)
    log.transaction([row(OK, "FAILED"), row("order-ghost", "RUNNING")], commit=False)
    log.transaction([row(OK, "COMPLETED")], commit=True)
    log.transaction([row(OK, "TERMINATED"), row("order-ghost", "COMPLETED")], commit=False)
    t0 = time.monotonic()
    rows = read_workflow_rows(settings, timeout=10)
    assert {w: r.status for w, r in rows.items()} == {OK: "COMPLETED"}
    # The partition ends with a transaction marker: the reader must not wait out its timeout.
    assert time.monotonic() - t0 < 5
