"""Commands from another platform: a start and a signal as plain Avro records, no aion client.

What a service written in another language does, with only a generic Avro library (fastavro)
and a generic Kafka client (confluent-kafka): read the ``.avsc`` files, compute the Avro
single-object header (``C3 01`` + the CRC-64-AVRO fingerprint of the schema's Parsing
Canonical Form, little-endian), produce ``aion.commands.Command`` records keyed by the workflow
id with Kafka's default (murmur2) partitioner, and read the outcome from the events topic with
a plain consumer. Nothing here encodes or decodes with aion's code; only the engine process
(the system under test) is aion.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import load_schema, to_parsing_canonical_form



SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


# ---------------------------------------------------------------- what a foreign platform writes

_EMPTY = 0xC15D213AA4D7A795  # the Avro specification's CRC-64-AVRO


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_FP_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    fp = _EMPTY
    for b in data:
        fp = (fp >> 8) ^ _FP_TABLE[(fp ^ b) & 0xFF]
    return fp


class AvroSchema:
    """One top-level schema from the .avsc files, with its single-object header."""

    def __init__(self, name: str) -> None:
        self.schema = load_schema(str(SCHEMAS / f"{name}.avsc"))
        canonical = to_parsing_canonical_form(self.schema)
        self.header = b"\xc3\x01" + crc64_avro(canonical.encode()).to_bytes(8, "little")

    def encode(self, record: dict) -> bytes:
        buf = io.BytesIO()
        schemaless_writer(buf, self.schema, record)
        return self.header + buf.getvalue()

    def decode(self, data: bytes) -> dict:
        assert data[:10] == self.header, f"written with another schema: {data[:10].hex()} != {self.header.hex()}"
        # Union branches of records come back as (full name, record), e.g. the event body.
        return schemaless_reader(io.BytesIO(data[10:]), self.schema, return_record_name=True,
                                 return_record_name_override=True)


def json_payload(value: object) -> dict:
    return {"content_type": "application/json", "data": json.dumps(value).encode()}


# ---------------------------------------------------------------- the test


def test_start_and_signal_as_plain_avro_records_and_read_the_result(cluster, settings) -> None:  # type: ignore[no-untyped-def]
    cluster.engine()
    command = AvroSchema("aion.commands.Command")
    event_key = AvroSchema("aion.events.EventKey")
    event = AvroSchema("aion.events.Event")
    commands_topic, events_topic = f"{settings.topic_prefix}.commands", f"{settings.topic_prefix}.events"
    workflow_id = f"foreign-{uuid.uuid4().hex[:8]}"

    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "acks": "all",
                         "enable.idempotence": True, "partitioner": "murmur2_random"})

    def send(body: tuple[str, dict]) -> None:
        producer.produce(commands_topic, key=workflow_id.encode(), value=command.encode({
            "command_id": str(uuid.uuid4()),
            "workflow_id": workflow_id,
            "sent_at_ms": int(time.time() * 1000),
            "body": body,
            "reply_to": None,
        }))
        assert producer.flush(10) == 0

    # Start: the optional fields are left to their schema defaults.
    send(("aion.commands.StartWorkflow", {"workflow_type": "Approval", "input": [json_payload(2)],
                                          "request_id": "order-service:42"}))
    send(("aion.commands.SignalWorkflow", {"signal_name": "decide", "args": [json_payload("yes")]}))
    send(("aion.commands.SignalWorkflow", {"signal_name": "decide", "args": [json_payload("ship it")]}))

    # Read the workflow's events with a plain consumer until it completes.
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"foreign-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([events_topic])
    history: dict[int, dict] = {}
    try:
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, f"no WorkflowCompleted for {workflow_id}; saw {history}\n{cluster.logs()}"
            m = consumer.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                continue
            key = event_key.decode(m.key())
            if key["workflow_id"] != workflow_id or m.value() is None:
                continue
            history[key["seq"]] = event.decode(m.value())
            if any(_body_type(e) == "aion.events.WorkflowCompleted" for e in history.values()):
                break
    finally:
        consumer.close()

    types = [_body_type(history[s]) for s in sorted(history)]
    assert types == ["aion.events.WorkflowStarted", "aion.events.SignalReceived",
                     "aion.events.SignalReceived", "aion.events.WorkflowCompleted"]
    assert sorted(history) == [1, 2, 3, 4]
    started = history[1]["body"][1]
    assert started["workflow_type"] == "Approval" and started["request_id"] == "order-service:42"
    result = history[4]["body"][1]["result"]
    assert result["content_type"] == "application/json"
    assert json.loads(result["data"]) == ["yes", "ship it"]


def _body_type(ev: dict) -> str:
    """The union branch of an event's body: ``(full record name, fields)``."""
    return ev["body"][0]


def test_a_command_on_a_partition_that_does_not_own_its_workflow_is_forwarded(cluster, settings) -> None:  # type: ignore[no-untyped-def]
    """A producer that does not partition by murmur2(workflow id) — librdkafka's default
    partitioner (kcat, confluent-kafka's default), a null key, another key — puts a command on
    any partition. The engine runs it on the owning partition only: the workflow's history is
    on the owner's events partition, the activity's result (sent to the owner) finds the
    workflow, and the same command sent twice starts it once. Before the engine forwarded such
    commands, this workflow ran on the partition it landed on and hung forever: its activity
    result was dead-lettered on the owner as "workflow does not exist"."""
    from confluent_kafka import TopicPartition

    from aion.codec import partition_for  # Kafka's murmur2, checked against Java's in tests/unit/codec

    cluster.engine()
    cluster.activities()
    command = AvroSchema("aion.commands.Command")
    event_key = AvroSchema("aion.events.EventKey")
    event = AvroSchema("aion.events.Event")
    prefix = settings.topic_prefix
    workflow_id = f"misrouted-{uuid.uuid4().hex[:8]}"
    owner = partition_for(workflow_id, settings.partitions)
    landed = (owner + 1) % settings.partitions

    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "acks": "all", "enable.idempotence": True})
    start = command.encode({
        "command_id": str(uuid.uuid4()),
        "workflow_id": workflow_id,
        "sent_at_ms": int(time.time() * 1000),
        "body": ("aion.commands.StartWorkflow", {"workflow_type": "Hello", "input": [json_payload("misrouted")]}),
        "reply_to": None,
    })
    for key in (workflow_id.encode(), None):  # the same command twice: once keyed, once with no key
        producer.produce(f"{prefix}.commands", key=key, value=start, partition=landed)
    assert producer.flush(10) == 0

    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"foreign-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.subscribe([f"{prefix}.events"])
    history: dict[int, tuple[int, dict]] = {}  # seq -> (events partition, event)
    try:
        deadline = time.monotonic() + 60
        while not any(_body_type(e) == "aion.events.WorkflowCompleted" for _, e in history.values()):
            assert time.monotonic() < deadline, f"no WorkflowCompleted for {workflow_id}; saw {history}\n{cluster.logs()}"
            m = consumer.poll(0.5)
            if m is None or m.error() is not None or m.value() is None:
                continue
            key = event_key.decode(m.key())
            if key["workflow_id"] == workflow_id:
                history[key["seq"]] = (m.partition(), event.decode(m.value()))
        time.sleep(1.0)  # anything the engine would still write for the duplicate
        dlq = f"{prefix}.dlq"
        written = {p: consumer.get_watermark_offsets(TopicPartition(dlq, p), timeout=10)[1]
                   for p in range(settings.partitions)}
    finally:
        consumer.close()

    types = [_body_type(history[s][1]) for s in sorted(history)]
    assert sorted(history) == list(range(1, len(history) + 1)), types
    assert types.count("aion.events.WorkflowStarted") == 1 and types[0] == "aion.events.WorkflowStarted", types
    assert "aion.events.ActivityCompleted" in types and types[-1] == "aion.events.WorkflowCompleted", types
    assert {p for p, _ in history.values()} == {owner}
    assert json.loads(history[max(history)][1]["body"][1]["result"]["data"]) == "Hello, misrouted!"
    assert written == {p: 0 for p in range(settings.partitions)}, f"dead letters were written: {written}"
