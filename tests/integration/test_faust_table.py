"""Avro events on the compacted events topic, read back per workflow, and materialized into a
Faust RocksDB (rocksdict) table that survives a worker restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from aion.codec import Codec, partition_for
from aion.engine.settings import Settings
from aion.engine.topics import TopicNames, ensure_topics
from aion.model import Event, MarkerRecorded, Payload, TimerFired, TimerStarted

HERE = Path(__file__).resolve().parent
WORKFLOWS = {f"order-{i}": 3 + i % 4 for i in range(8)}  # workflow id -> number of events


def _history(workflow_id: str, n: int) -> list[Event]:
    """A plausible history: n events, seq 1..n."""
    out = []
    for seq in range(1, n + 1):
        if seq % 3 == 1:
            body: Any = TimerStarted(timer_id=f"t{seq}", fire_at_ms=5_000 + seq, duration_ms=1_000)
        elif seq % 3 == 2:
            body = TimerFired(timer_id=f"t{seq - 1}")
        else:
            body = MarkerRecorded("side_effect", f"m{seq}", Payload("application/json", b'{"ok": true}'))
        out.append(Event(workflow_id=workflow_id, seq=seq, run_id=f"run-{workflow_id}",
                         recorded_at_ms=1_000 * seq, body=body, command_id=f"cmd-{workflow_id}-{seq}"))
    return out


def _produce(settings: Settings, codec: Codec, events: list[Event]) -> None:
    topic = TopicNames(settings.topic_prefix).events
    producer = Producer({**settings.confluent_config(), "enable.idempotence": True, "linger.ms": 2})
    for ev in events:
        producer.produce(topic, codec.encode_event(ev), key=codec.encode_event_key(ev.key),
                         partition=partition_for(ev.workflow_id, settings.partitions))
    assert producer.flush(15) == 0


def _consume_all(settings: Settings) -> list[tuple[int, bytes, bytes]]:
    topic = TopicNames(settings.topic_prefix).events
    consumer = Consumer({**settings.confluent_config(), "group.id": f"{settings.topic_prefix}-reader",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    out: list[tuple[int, bytes, bytes]] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + 20
    try:
        while len(at_end) < settings.partitions:
            assert time.monotonic() < deadline, "could not read the events topic to its end in 20 s"
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.partition())
                continue
            assert err is None, f"consumer error: {err}"
            out.append((msg.partition(), msg.key(), msg.value()))
    finally:
        consumer.close()
    return out


class FaustWorker:
    """One `faust worker` process running tests/integration/_faust_table_app.py."""

    def __init__(self, settings: Settings, tmp: Path, app_id: str) -> None:
        self.tmp = tmp
        self.dump = tmp / "table.json"
        self.log = tmp / "faust-worker.log"
        self.env = {
            **os.environ,
            "FT_BOOTSTRAP": settings.bootstrap_servers,
            "FT_TOPIC": TopicNames(settings.topic_prefix).events,
            "FT_PARTITIONS": str(settings.partitions),
            "FT_APP_ID": app_id,
            "FT_DATADIR": str(tmp / "faust-data"),
            "FT_DUMP": str(self.dump),
            "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.dump.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "faust", "-A", "_faust_table_app", "worker", "--without-web", "-l", "info"],
                cwd=self.tmp, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> int:
        """SIGTERM (Faust shuts down gracefully, committing offsets and closing RocksDB)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                pytest.fail(f"the Faust worker did not stop within 30 s of SIGTERM\n{self.tail()}")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait_for_table(self, expected: dict[str, list[int]], timeout: float = 45) -> dict[str, Any]:
        """The first dump whose table equals ``expected`` (the worker must stay alive)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"the Faust worker exited\n{self.tail()}"
            try:
                last = json.loads(self.dump.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                last = None
            if last is not None and last["table"] == expected:
                return last
            time.sleep(0.2)
        pytest.fail(f"the table did not reach the expected state in {timeout:.0f} s; last dump: {last}\n"
                    f"{self.tail()}")

    def tail(self, n: int = 40) -> str:
        try:
            return "--- faust worker log ---\n" + "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no worker log)"


@pytest.fixture
def faust_worker(settings: Settings, tmp_path: Path, topic_prefix: str):  # type: ignore[no-untyped-def]
    worker = FaustWorker(settings, tmp_path, app_id=f"{topic_prefix}-table")
    yield worker
    worker.kill()


def test_events_round_trip_per_workflow_and_a_faust_table_survives_a_restart(
        settings: Settings, faust_worker: FaustWorker, tmp_path: Path) -> None:
    codec = Codec()
    ensure_topics(settings)
    histories = {wf: _history(wf, n) for wf, n in WORKFLOWS.items()}
    # Interleave the workflows the way a busy engine would append them.
    interleaved = [h[i] for i in range(max(WORKFLOWS.values())) for h in histories.values() if i < len(h)]
    _produce(settings, codec, interleaved)

    # Read back: every workflow's events sit on its partition, in seq order, decoding to the same events.
    by_workflow: dict[str, list[Event]] = defaultdict(list)
    for partition, key, value in _consume_all(settings):
        k, ev = codec.decode_event_key(key), codec.decode_event(value)
        assert (k.workflow_id, k.seq) == (ev.workflow_id, ev.seq)
        assert partition == partition_for(ev.workflow_id, settings.partitions)
        by_workflow[ev.workflow_id].append(ev)
    assert dict(by_workflow) == histories
    assert len({partition_for(wf, settings.partitions) for wf in WORKFLOWS}) > 1  # really spread out

    # A Faust worker materializes the topic into a RocksDB table.
    expected = {wf: list(range(1, n + 1)) for wf, n in WORKFLOWS.items()}
    faust_worker.start()
    first = faust_worker.wait_for_table(expected)
    assert first["applied_this_run"] == len(interleaved)
    assert faust_worker.stop() == 0, faust_worker.tail()
    rocks_files = list((tmp_path / "faust-data").rglob("CURRENT"))
    assert rocks_files, "no RocksDB database was written under the Faust data dir"

    # Restarted on the same data dir: the same state, restored from RocksDB, with nothing re-applied
    # (offsets were committed at shutdown).
    faust_worker.start()
    second = faust_worker.wait_for_table(expected)
    assert second["pid"] != first["pid"]
    assert second["applied_this_run"] == 0

    # And it keeps going: one more event for one workflow lands in the table.
    extra = _history("order-0", WORKFLOWS["order-0"] + 1)[-1:]
    _produce(settings, codec, extra)
    expected["order-0"].append(extra[0].seq)
    faust_worker.wait_for_table(expected)
    assert faust_worker.stop() == 0, faust_worker.tail()

    # The RocksDB files are a cache: without them the worker rebuilds the same table from its
    # changelog topic, again without re-applying any event.
    shutil.rmtree(tmp_path / "faust-data")
    faust_worker.start()
    third = faust_worker.wait_for_table(expected)
    assert third["applied_this_run"] == 0
    assert faust_worker.stop() == 0, faust_worker.tail()
