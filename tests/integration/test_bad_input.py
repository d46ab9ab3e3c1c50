"""Bad input: each gets a typed error back or a dead-letter record with the reason, and the
engine keeps serving everything else."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from confluent_kafka import Consumer, Producer

from aion.codec import Codec
from aion.engine.topics import TopicNames
from aion.exceptions import (
    InvalidArgumentError,
    PayloadTooLargeError,
    QueryError,
    SignalNotFoundError,
    WorkflowAlreadyStartedError,
    WorkflowNotFoundError,
    WorkflowTypeNotFoundError,
)
from aion.model import (
    ActivityTaskCompleted, Command, FireTimer, Payload, Reply, SignalWorkflow, StartWorkflow, now_ms,
)



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


# ---------------------------------------------------------------------------- fields outside their limits


async def test_the_client_refuses_invalid_arguments_before_sending(cluster, client):  # type: ignore[no-untyped-def]
    cases = [
        (dict(id=""), "workflow id is empty"),
        (dict(id="a\x00b"), "control character U+0000"),
        (dict(id="x" * 1001), "over the limit of 1000"),
        (dict(id="ok-1", task_queue="no spaces"), "task queue 'no spaces'"),
        (dict(id="ok-2", execution_timeout=timedelta(days=365 * 200)), "over the limit of 100 years"),
    ]
    for kwargs, words in cases:
        with pytest.raises(InvalidArgumentError) as info:
            await client.start_workflow("Approval", 1, **kwargs)
        assert words in str(info.value), (kwargs, str(info.value))
    with pytest.raises(InvalidArgumentError, match="signal name .* over the limit"):
        await client.get_workflow_handle("ok-3").signal("s" * 2000)
    # Nothing was sent: the ids are unknown to the engine.
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("ok-1").signal("decide", "x")


async def _answer(client, cmd: Command) -> Reply:  # type: ignore[no-untyped-def]
    """Send ``cmd`` as a foreign producer would (none of the client's own checks) and return the
    engine's first answer."""
    waiter = client.new_waiter()
    await client.send(cmd, waiter)
    try:
        return await asyncio.wait_for(asyncio.shield(waiter.ack), 30)
    finally:
        client.forget(cmd.command_id)


async def test_commands_outside_their_limits_are_refused_and_nothing_else_is_touched(cluster, client, settings):  # type: ignore[no-untyped-def]
    names = TopicNames(settings.topic_prefix)
    codec = Codec()
    waiting = await client.start_workflow("Approval", 1, id="limits-bystander")

    def start(wid: str, **kw) -> Command:  # type: ignore[no-untyped-def]
        body = StartWorkflow("Approval", [Payload("application/json", b"1")], **kw)
        return Command(f"c-{uuid.uuid4().hex}", wid, now_ms(), body, reply_to=client.reply_to)

    # The sender waits on the replies topic: it gets InvalidArgumentError naming the field.
    answered = [
        (start("limits-q", task_queue="bad queue!"), "task queue 'bad queue!'"),
        (start("limits-q2", task_queue="q" * 240), "is not 1 to 200 characters"),
        (start("limits-t", execution_timeout_ms=2**62), "execution timeout is 4611686018427387904 ms"),
        (start("limits-t2", run_timeout_ms=-5), "run timeout must be more than 0 ms"),
        (start("limits-nul\x00"), "control character U+0000"),
        (start("w" * 10_000), "10000 UTF-8 bytes long"),
        (Command("c-sig", "limits-bystander", now_ms(), SignalWorkflow("s" * 2000, []), reply_to=client.reply_to),
         "signal name is 2000 UTF-8 bytes long"),
    ]
    for cmd, words in answered:
        reply = await _answer(client, cmd)
        assert (reply.kind, reply.failure.type) == ("ERROR", "InvalidArgumentError"), reply
        assert words in reply.failure.message, (words, reply.failure.message)

    # No reply_to the engine answers on: dead-lettered with the reason, and nothing is written
    # where the reply_to pointed (a reply there would be a record with a key the sender chose).
    silent = [
        (Command("c-empty", "", now_ms(), SignalWorkflow("decide", [])), "workflow id is empty"),
        (Command("c-neg", "limits-neg", -1, SignalWorkflow("decide", [])), "sent_at_ms is negative"),
        (Command("c-fire", "limits-fire", now_ms(), FireTimer("r", "t", 2**62)), "past the year 2200"),
        (Command("c-events", "limits-ev", now_ms(), SignalWorkflow("decide", []), reply_to=f"{names.events}:0"),
         f"reply_to names topic '{names.events}'"),
        (Command("c-other", "limits-other", now_ms(), SignalWorkflow("decide", []), reply_to="other-team.replies:0"),
         "reply_to names topic 'other-team.replies'"),
        (Command("c-changelog", "limits-cl", now_ms(), SignalWorkflow("decide", []),
                 reply_to=f"{settings.topic_prefix}-engine-timer_terminal-changelog:0"), "the engine answers only on"),
        (Command("c-part", "limits-part", now_ms(), SignalWorkflow("decide", []), reply_to=f"{names.replies}:999"),
         "partition 999"),
        (Command("c-shape", "limits-shape", now_ms(), SignalWorkflow("decide", []), reply_to="no-partition"),
         "is not '<topic>:<partition>'"),
    ]
    for cmd, _ in silent:
        produce_raw(settings, (cmd.workflow_id or "k").encode(), codec.encode_command(cmd))
    # Records that are no command at all, through the running engine too.
    valid = codec.encode_command(Command("c-trunc", "limits-trunc", now_ms(), SignalWorkflow("decide", [])))
    produce_raw(settings, b"limits-trunc", valid[:-3])
    produce_raw(settings, b"limits-fp", valid[:2] + bytes(8) + valid[10:])
    p = Producer({**settings.confluent_config(), "partitioner": "murmur2_random"})
    p.produce(names.commands, key=b"limits-tomb", value=None)
    assert p.flush(10) == 0

    letters = dead_letters(settings, len(answered) + len(silent) + 3, timeout=60)
    reasons = [h["aion.reason"].decode() for _, _, h in letters]
    for cmd, words in [*answered, *silent]:
        assert any(words in r for r in reasons), (words, reasons)
    assert sum("undecodable command" in r for r in reasons) == 2
    assert sum("tombstone" in r for r in reasons) == 1
    assert len(letters) == len(answered) + len(silent) + 3

    # Nothing of them ran: no history, no topic for the bad queue, nothing in the events topic
    # but the bystander's; and the bystander goes on.
    for wid in ("limits-q", "limits-t", "limits-ev", "limits-part"):
        assert await client.get_workflow_handle(wid).history() == []
    await waiting.signal("decide", "yes")
    assert await waiting.result(timeout=60) == ["yes"]
    assert await client.execute_workflow("Hello", "after", id="limits-after") == "Hello, after!"
