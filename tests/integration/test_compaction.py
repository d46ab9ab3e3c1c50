"""Compaction of the events topic keeps every (workflow_id, seq) and collapses re-writes.

The events key is {workflow_id, seq}, never the workflow id alone: compaction must keep a
workflow's whole history and only replace an event that was written twice (e.g. re-appended
after a crash). This test lets the broker's log cleaner actually run and reads the result back.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from aion.codec import Codec
from aion.model import Event, MarkerRecorded, Payload

# Small segments and an eager cleaner for this topic only (the broker checks every 500 ms).
FAST_COMPACTION = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "100",
    "min.compaction.lag.ms": "0",
}


def _event(codec: Codec, workflow_id: str, seq: int, value: str) -> tuple[bytes, bytes]:
    ev = Event(workflow_id=workflow_id, seq=seq, run_id=f"run-{workflow_id}", recorded_at_ms=1_000 + seq,
               body=MarkerRecorded("side_effect", f"m{seq}", Payload("text/plain", value.encode())),
               command_id=f"cmd-{workflow_id}-{seq}")
    return codec.encode_event_key(ev.key), codec.encode_event(ev)


def _read_all(bootstrap: str, topic: str) -> tuple[list[tuple[int, bytes, bytes]], int]:
    """Every record of partition 0 from offset 0 as (offset, key, value), and the end offset."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "compaction-reader",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        out: list[tuple[int, bytes, bytes]] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                break
            assert err is None, f"consumer error: {err}"
            out.append((msg.offset(), msg.key(), msg.value()))
        else:
            raise AssertionError(f"could not read {topic} to its end ({high}) within 15 s")
        return out, high
    finally:
        consumer.close()


def test_compaction_keeps_every_seq_and_collapses_a_rewritten_event(kafka_bootstrap: str, topic_prefix: str) -> None:
    codec = Codec()
    topic = f"{topic_prefix}.events"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, 1, config=FAST_COMPACTION)]).values():
        fut.result(timeout=10)

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0, "enable.idempotence": True})

    def produce(workflow_id: str, seq: int, value: str) -> None:
        key, data = _event(codec, workflow_id, seq, value)
        producer.produce(topic, data, key=key, partition=0)
        assert producer.flush(10) == 0

    expected: dict[tuple[str, int], str] = {}
    for wf, n in (("wf-1", 5), ("wf-2", 3)):
        for seq in range(1, n + 1):
            produce(wf, seq, f"{wf}/{seq}/first")
            expected[(wf, seq)] = f"{wf}/{seq}/first"
    time.sleep(0.2)  # past segment.ms: the re-write lands in a newer segment than the original
    produce("wf-1", 3, "wf-1/3/rewritten")
    expected[("wf-1", 3)] = "wf-1/3/rewritten"

    # Keep appending (as a third workflow would) so segments roll and the one holding the
    # re-write stops being the active segment; wait until the cleaner dropped the old copy.
    deadline = time.monotonic() + 30
    seq = 0
    while True:
        time.sleep(0.2)
        seq += 1
        produce("wf-3", seq, f"wf-3/{seq}/first")
        expected[("wf-3", seq)] = f"wf-3/{seq}/first"
        records, end = _read_all(kafka_bootstrap, topic)
        keys = [codec.decode_event_key(k) for _, k, _ in records]
        duplicates = len(keys) - len(set(keys))
        if duplicates == 0:
            break
        assert time.monotonic() < deadline, (
            f"the log cleaner did not compact {topic} within 30 s ({len(records)} records, "
            f"{duplicates} duplicate keys); check the broker's log.cleaner.* settings")

    # The cleaner really ran: one offset (the first copy of wf-1/3) is gone from the log.
    assert len(records) == end - 1

    found: dict[tuple[str, int], str] = {}
    for _, key, value in records:
        k, ev = codec.decode_event_key(key), codec.decode_event(value)
        assert (k.workflow_id, k.seq) == (ev.workflow_id, ev.seq)
        assert (k.workflow_id, k.seq) not in found, f"{k} is present twice after compaction"
        assert isinstance(ev.body, MarkerRecorded) and ev.body.value is not None
        found[(k.workflow_id, k.seq)] = ev.body.value.data.decode()
    # Every (workflow_id, seq) exactly once, the re-written one with its latest value.
    assert found == expected
    assert found[("wf-1", 3)] == "wf-1/3/rewritten"

    # Log order per workflow: untouched histories stay in seq order; the re-write sits where it
    # was appended (a reader orders a history by seq, not by offset).
    order = {wf: [k.seq for k in keys if k.workflow_id == wf] for wf in ("wf-1", "wf-2", "wf-3")}
    assert order["wf-1"] == [1, 2, 4, 5, 3]
    assert order["wf-2"] == [1, 2, 3]
    assert order["wf-3"] == list(range(1, seq + 1))
