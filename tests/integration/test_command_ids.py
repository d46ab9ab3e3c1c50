"""Command ids through a running engine (issue 14): a command id re-used with another body is
refused with CommandIdReusedError (or dead-lettered with the reason when nobody waits for an
answer), a re-delivery of the same command is still accepted, and one waiting
``handle.result()`` is one waiter in the engine however often it re-sends its GetResult."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from aion.codec import Codec
from aion.engine.topics import TopicNames
from aion.model import Command, Payload, Reply, SignalWorkflow, StartWorkflow, now_ms

codec = Codec()


@pytest.fixture
def cluster(make_cluster):  # type: ignore[no-untyped-def]
    c = make_cluster()
    c.engine()
    return c


def produce_raw(settings: Any, cmd: Command) -> None:
    """As a foreign producer would (kcat, another team's service): no client checks."""
    p = Producer({**settings.confluent_config(), "partitioner": "murmur2_random"})
    p.produce(TopicNames(settings.topic_prefix).commands, key=cmd.workflow_id.encode(), value=codec.encode_command(cmd))
    assert p.flush(10) == 0


async def answer(client: Any, cmd: Command) -> Reply:
    """Send ``cmd`` through the client's transport only and return the engine's first answer."""
    waiter = client.new_waiter()
    await client.send(cmd, waiter)
    try:
        return await asyncio.wait_for(asyncio.shield(waiter.ack), 30)
    finally:
        client.forget(cmd.command_id)


def dead_letters(settings: Any, key: bytes, timeout: float = 30.0) -> list[dict[str, bytes]]:
    """The headers of the dead-letter records keyed ``key`` (waits for at least one)."""
    c = Consumer({**settings.confluent_config(), "group.id": f"t-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    c.subscribe([TopicNames(settings.topic_prefix).dlq])
    out: list[dict[str, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while not out and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error() or m.key() != key:
                continue
            out.append(dict(m.headers() or []))
    finally:
        c.close()
    return out


def decision(text: str) -> list[Payload]:
    return [Payload("application/json", f'"{text}"'.encode())]


async def test_a_signal_id_reused_with_another_body_is_refused_and_the_first_signal_stays(cluster, client, settings):  # type: ignore[no-untyped-def]
    wid = "cid-signal-1"
    h = await client.start_workflow("Approval", 2, id=wid)

    def signal(name: str, text: str, reply: bool = True) -> Command:
        return Command("fixed-signal-id", wid, now_ms(), SignalWorkflow(name, decision(text)),
                       reply_to=client.reply_to if reply else None)

    first = await answer(client, signal("decide", "yes"))
    assert first.kind == "ACCEPTED", first
    # The same id, other arguments; the same id, another (even unknown) signal name.
    for cmd in (signal("decide", "no"), signal("no_such_signal", "yes")):
        reply = await answer(client, cmd)
        assert (reply.kind, reply.failure.type if reply.failure else None) == ("ERROR", "CommandIdReusedError"), reply
        assert "'fixed-signal-id'" in reply.failure.message and repr(wid) in reply.failure.message
    # A re-delivery of the first signal is still accepted (and records nothing).
    again = await answer(client, signal("decide", "yes"))
    assert again.kind == "ACCEPTED", again
    # Nobody to answer: dead-lettered with the reason.
    produce_raw(settings, signal("decide", "sneaky", reply=False))
    letters = dead_letters(settings, wid.encode())
    assert letters, "no dead-letter record for the re-used id without reply_to"
    reason = letters[0]["aion.reason"].decode()
    assert "CommandIdReusedError" in reason and "'fixed-signal-id'" in reason, reason

    # The first signal's effect is intact: one decision, recorded once.
    assert await h.query("status") == "waiting:1"
    received = [e for e in await h.history() if e.type == "SignalReceived"]
    assert [(e.body.signal_name, e.body.args, e.command_id) for e in received] == [
        ("decide", decision("yes"), "fixed-signal-id")]
    await h.signal("decide", "second")
    assert await h.result(timeout=60) == ["yes", "second"]


async def test_one_waiting_result_is_one_waiter_in_the_engine_however_often_it_re_sends(cluster, client, settings):  # type: ignore[no-untyped-def]
    """The engine answers every waiter it holds at the close, one RESULT record each: a result()
    that re-sent its GetResult for a while and then stopped leaves one waiter, not one per re-send."""
    wid = "cid-wait-1"
    # Started without wait_result: the only RESULT records for it will be those of GetResult ids.
    started = await answer(client, Command("cid-wait-start", wid, now_ms(), StartWorkflow(
        "Approval", [Payload("application/json", b"1")]), reply_to=client.reply_to))
    assert started.kind == "ACCEPTED", started
    client.result_resend_interval = 0.2
    waiting = asyncio.create_task(client.get_workflow_handle(wid).result(timeout=60))
    await asyncio.sleep(3)  # ~15 re-sends, all before the signal on the workflow's partition
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await client.get_workflow_handle(wid).signal("decide", "done")  # closes the workflow
    client.result_resend_interval = 5.0  # (the answer to the next one comes well before a re-send)
    assert await client.get_workflow_handle(wid).result(timeout=60) == ["done"]

    names = TopicNames(settings.topic_prefix)
    part = TopicPartition(names.replies, client._router.partition, 0)
    c = Consumer({**settings.confluent_config(), "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    _low, high = c.get_watermark_offsets(part, timeout=10)
    c.assign([part])
    results: list[str] = []
    try:
        deadline = time.monotonic() + 20
        seen = 0
        while seen < high and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            seen = m.offset() + 1
            reply = codec.decode_reply(m.value())
            if reply.workflow_id == wid and reply.kind == "RESULT":
                results.append(reply.command_id)
    finally:
        c.close()
    # The cancelled wait's one waiter, and the last result() call's answer.
    assert len(results) == 2 and len(set(results)) == 2, results
