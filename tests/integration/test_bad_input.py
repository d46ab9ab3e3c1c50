"""Bad input: each gets a typed error back or a dead-letter record with the reason, and the
engine keeps serving everything else."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer

from aion.codec import Codec
from aion.engine.topics import TopicNames
from aion.exceptions import (
    PayloadTooLargeError,
    QueryError,
    SignalNotFoundError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
    WorkflowTypeNotFoundError,
)
from aion.model import ActivityTaskCompleted, Command, Payload, StartWorkflow



@pytest.fixture
def cluster(make_cluster):  # type: ignore[no-untyped-def]
    c = make_cluster()
    c.engine()
    c.activities()
    return c


def produce_raw(settings, key: bytes | None, value: bytes) -> None:  # type: ignore[no-untyped-def]
    p = Producer({**settings.confluent_config(), "partitioner": "murmur2_random"})
    p.produce(TopicNames(settings.topic_prefix).commands, key=key, value=value)
    assert p.flush(10) == 0


def dead_letters(settings, expect: int, timeout: float = 30.0) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:  # type: ignore[no-untyped-def]
    topic = TopicNames(settings.topic_prefix).dlq
    c = Consumer({**settings.confluent_config(), "group.id": f"t-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    out = []
    import time

    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append((m.key(), m.value(), {k: v for k, v in (m.headers() or [])}))
    finally:
        c.close()
    return out


async def test_poison_records_are_dead_lettered_and_the_partition_keeps_flowing(cluster, client, settings):  # type: ignore[no-untyped-def]
    produce_raw(settings, b"poison-1", b"\x00\x01garbage that is not avro")
    produce_raw(settings, b"poison-2", b'{"json": "is not a command"}')
    # Everything after the poison on the same partitions still runs.
    assert await client.execute_workflow("Hello", "after poison", id="poison-1") == "Hello, after poison!"
    letters = dead_letters(settings, 2)
    assert sorted(k for k, _, _ in letters) == [b"poison-1", b"poison-2"]
    for key, value, headers in letters:
        assert b"undecodable command" in headers["aion.reason"]
        assert headers["aion.source.topic"] == TopicNames(settings.topic_prefix).commands.encode()
        assert int(headers["aion.source.offset"]) >= 0 and int(headers["aion.source.partition"]) >= 0
        assert value in (b"\x00\x01garbage that is not avro", b'{"json": "is not a command"}')


async def test_unknown_workflow_type(cluster, client):  # type: ignore[no-untyped-def]
    with pytest.raises(WorkflowTypeNotFoundError) as info:
        await client.start_workflow("NoSuchWorkflow", id="nope-1")
    assert "NoSuchWorkflow" in str(info.value)


async def test_signal_query_cancel_for_unknown_and_finished_workflows(cluster, client):  # type: ignore[no-untyped-def]
    ghost = client.get_workflow_handle("ghost-1")
    with pytest.raises(WorkflowNotFoundError):
        await ghost.signal("decide", "yes")
    with pytest.raises((WorkflowNotFoundError, QueryError)):
        await ghost.query("status")
    with pytest.raises(WorkflowNotFoundError):
        await ghost.cancel()
    done = await client.start_workflow("Hello", "x", id="finished-1")
    await done.result(timeout=60)
    with pytest.raises(WorkflowNotFoundError):
        await done.signal("decide", "late")
    with pytest.raises(WorkflowNotFoundError):
        await done.cancel()


async def test_unknown_query_and_signal_names(cluster, client):  # type: ignore[no-untyped-def]
    h = await client.start_workflow("Approval", 1, id="names-1")
    with pytest.raises(QueryError) as info:
        await h.query("no_such_query")
    assert "no_such_query" in str(info.value)
    with pytest.raises(SignalNotFoundError):
        await h.signal("no_such_signal")
    await h.signal("decide", "ok")
    assert await h.result(timeout=60) == ["ok"]


async def test_duplicate_start(cluster, client):  # type: ignore[no-untyped-def]
    await client.start_workflow("Approval", 1, id="dup-2")
    with pytest.raises(WorkflowAlreadyStartedError):
        await client.start_workflow("Approval", 1, id="dup-2", id_reuse_policy="REJECT_DUPLICATE")


async def test_oversized_payload_refused_by_client_and_engine(cluster, client, settings):  # type: ignore[no-untyped-def]
    big = "x" * (settings.max_payload_bytes + 10)
    with pytest.raises(PayloadTooLargeError) as info:
        await client.start_workflow("Hello", big, id="big-1")
    assert "big-1" in str(info.value)
    # A foreign producer that ignores the limit: the engine refuses and dead-letters it.
    codec = Codec()
    cmd = Command(command_id="big-cmd", workflow_id="big-2", sent_at_ms=0,
                  body=StartWorkflow("Hello", [Payload("application/json", b'"' + b"y" * (settings.max_payload_bytes + 10) + b'"')]))
    p = Producer({**settings.confluent_config(), "partitioner": "murmur2_random", "message.max.bytes": 10_000_000})
    p.produce(TopicNames(settings.topic_prefix).commands, key=b"big-2", value=codec.encode_command(cmd))
    assert p.flush(10) == 0
    letters = dead_letters(settings, 1)
    assert letters and b"over the limit" in letters[0][2]["aion.reason"]
    assert await client.execute_workflow("Hello", "small", id="after-big") == "Hello, small!"


async def test_activity_result_for_unknown_activity_or_stale_attempt_records_nothing(cluster, client, settings):  # type: ignore[no-untyped-def]
    h = await client.start_workflow("Hello", "stale", id="stale-1")
    await h.result(timeout=60)
    before = await h.history()
    codec = Codec()
    for activity_id, attempt in (("1", 1), ("1", 7), ("99", 1)):
        cmd = Command(command_id=f"stale-{activity_id}-{attempt}", workflow_id="stale-1", sent_at_ms=0,
                      body=ActivityTaskCompleted(run_id=before[0].run_id, activity_id=activity_id, attempt=attempt,
                                                 result=Payload("application/json", b'"late"')))
        produce_raw(settings, b"stale-1", codec.encode_command(cmd))
    # A later command on the same workflow is processed after them (same partition, in order).
    with pytest.raises(WorkflowNotFoundError):
        await h.signal("decide", "x")
    assert [e.seq for e in await h.history()] == [e.seq for e in before]
    # A report for an activity a running workflow never scheduled is dead-lettered with the
    # reason; late reports for a closed run (above) are expected re-deliveries, dropped quietly.
    waiting = await client.start_workflow("Approval", 1, id="stale-2")
    run_id = (await waiting.history())[0].run_id
    cmd = Command(command_id="stale-99", workflow_id="stale-2", sent_at_ms=0,
                  body=ActivityTaskCompleted(run_id=run_id, activity_id="99", attempt=1,
                                             result=Payload("application/json", b'"late"')))
    produce_raw(settings, b"stale-2", codec.encode_command(cmd))
    letters = [l for l in dead_letters(settings, 1) if l[0] == b"stale-2"]
    assert len(letters) == 1
    assert b"ActivityNotFoundError" in letters[0][2]["aion.reason"]
    assert [l for l in dead_letters(settings, 1, timeout=3) if l[0] == b"stale-1"] == []
