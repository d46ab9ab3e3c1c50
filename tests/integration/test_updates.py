"""Updates through engine processes on the real broker: results, rejections, update-with-start,
the CLI, and an update in flight that outlives its engine (kill -9, SIGSTOP past the session
timeout) and is answered exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from aion.client import WithStartWorkflowOperation, WorkflowUpdateStage
from aion.codec import Codec
from aion.engine.topics import TopicNames
from aion.exceptions import (
    InvalidArgumentError,
    UpdateNotFoundError,
    WorkflowNotFoundError,
    WorkflowUpdateFailedError,
)
from aion.model import Command, Payload, Reply, UpdateWorkflow, now_ms


@pytest.fixture
def cluster(make_cluster):  # type: ignore[no-untyped-def]
    c = make_cluster()
    c.engine_proc = c.engine()
    c.activities()
    return c


def kinds(events) -> list[str]:  # type: ignore[no-untyped-def]
    return [type(e.body).__name__ for e in events]


def update_replies(settings, reply_to: str, command_id: str) -> list[Reply]:  # type: ignore[no-untyped-def]
    """Every committed reply to ``command_id`` on the client's reply partition, from offset 0."""
    topic, _, part = reply_to.rpartition(":")
    c = Consumer({**settings.confluent_config(), "group.id": f"t-{os.getpid()}-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    tp = TopicPartition(topic, int(part))
    _low, high = c.get_watermark_offsets(tp, timeout=10)
    c.assign([TopicPartition(topic, int(part), 0)])
    codec = Codec()
    out: list[Reply] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                if m.key() == command_id.encode():
                    out.append(codec.decode_reply(m.value()))
                if m.offset() >= high - 1:
                    break
            elif m is None and c.position([tp])[0].offset >= high:
                break
    finally:
        c.close()
    return out


def dead_letter_reasons(settings, expect: int, timeout: float = 30.0) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The reasons (header ``aion.reason``) of the first ``expect`` dead letters."""
    c = Consumer({**settings.confluent_config(), "group.id": f"t-dlq-{time.monotonic_ns()}",
                  "auto.offset.reset": "earliest"})
    c.subscribe([TopicNames(settings.topic_prefix).dlq])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append(dict(m.headers() or []).get("aion.reason", b""))
    finally:
        c.close()
    return out


async def wait_for(pred, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await pred():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


async def test_updates_return_results_and_rejections_record_nothing(cluster, client, settings):  # type: ignore[no-untyped-def]
    h = await client.start_workflow("Tally", id="upd-1")
    assert await h.execute_update("add", 5) == 5
    uh = await h.start_update("add_doubled_after", 3, 0.2, id="dbl-1", wait_for_stage=WorkflowUpdateStage.ACCEPTED)
    assert await uh.result(timeout=60) == 11
    assert await h.execute_update("add_doubled_after", 3, 0.2, id="dbl-1") == 11  # the same id: recorded outcome

    before = await h.history()
    with pytest.raises(WorkflowUpdateFailedError, match="rejected by its validator.*cannot add -2") as ei:
        await h.execute_update("add", -2)
    assert "amounts are positive" in str(ei.value.cause)
    with pytest.raises(UpdateNotFoundError, match="no update 'subtract'"):
        await h.execute_update("subtract", 1)
    # A foreign producer's update outside the limits is refused at the engine's intake.
    hostile = Command("hostile-1", "upd-1", now_ms(),
                      UpdateWorkflow("u-x", "add", [Payload("application/json", b"1")], wait_for_stage="SOON"),
                      reply_to=client.reply_to)
    waiter = client.new_waiter()
    await client.send(hostile, waiter)
    reply = await asyncio.wait_for(asyncio.shield(waiter.ack), 30)
    client.forget("hostile-1")
    assert reply.kind == "ERROR" and reply.failure.type == "InvalidArgumentError" and "SOON" in reply.failure.message
    assert kinds(await h.history()) == kinds(before)

    # The CLI: aion workflow update <id> <name> [args]
    env = dict(cluster.env)
    cli = [sys.executable, "-m", "aion.cli", "workflow", "update", "upd-1"]
    res = subprocess.run([*cli, "add", "4", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == 15
    res = subprocess.run([*cli, "add", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 3 and "rejected by its validator" in res.stderr, res.stderr

    await h.signal("close")
    assert await h.result(timeout=60) == 15
    with pytest.raises(WorkflowNotFoundError, match="ended COMPLETED"):
        await h.execute_update("add", 1)
    history = kinds(await h.history())
    assert history.count("WorkflowUpdateAccepted") == 3 and history.count("WorkflowUpdateCompleted") == 3


async def test_update_with_start_starts_once_and_updates(cluster, client):  # type: ignore[no-untyped-def]
    op = WithStartWorkflowOperation("Tally", id="uws-1")
    assert await client.execute_update_with_start_workflow("add", 2, start_workflow_operation=op, id="first") == 2
    h = await op.workflow_handle()
    again = WithStartWorkflowOperation("Tally", id="uws-1")
    uh = await client.start_update_with_start_workflow("add", 3, start_workflow_operation=again)
    assert await uh.result(timeout=30) == 5
    with pytest.raises(InvalidArgumentError, match="update id"):
        await client.execute_update_with_start_workflow("add", 1, start_workflow_operation=again, id="")
    await h.signal("close")
    assert await h.result(timeout=60) == 5
    assert kinds(await h.history()).count("WorkflowStarted") == 1


async def test_an_update_in_flight_survives_kill9_and_is_answered_once(cluster, client, settings):  # type: ignore[no-untyped-def]
    h = await client.start_workflow("Tally", id="upd-kill")
    uh = await h.start_update("add_doubled_after", 21, 3.0, id="late", wait_for_stage="ACCEPTED")
    cluster.engine_proc.kill9()  # the handler waits on its timer
    # Hostile records while no engine runs: garbage, and an update naming a reply topic the
    # engine does not answer on. Both are dead-lettered; nothing reaches the workflow.
    p = Producer(settings.confluent_config())
    p.produce(TopicNames(settings.topic_prefix).commands, key=b"upd-kill", value=b"\x00\x00not avro")
    p.produce(TopicNames(settings.topic_prefix).commands, key=b"upd-kill", value=Codec().encode_command(Command(
        "hostile-2", "upd-kill", now_ms(), UpdateWorkflow("late", "add_doubled_after", [], wait_for_stage="COMPLETED"),
        reply_to="someone-elses-topic:0")))
    assert p.flush(10) == 0
    cluster.engine()
    assert await uh.result(timeout=90) == 42
    reasons = [v.decode(errors="replace") for v in dead_letter_reasons(settings, 2)]
    assert any("undecodable command" in r for r in reasons), reasons
    assert any("someone-elses-topic" in r for r in reasons), reasons
    history = await h.history()
    assert kinds(history).count("WorkflowUpdateAccepted") == 1 and kinds(history).count("WorkflowUpdateCompleted") == 1
    completed = [r for r in update_replies(settings, client.reply_to, uh._command_id) if r.status == "COMPLETED"]
    assert len(completed) == 1, completed
    assert await h.query("value") == 42
    await h.signal("close")
    assert await h.result(timeout=60) == 42


async def test_an_update_in_flight_is_answered_once_when_its_engine_stalls_past_the_session_timeout(cluster, client, settings):  # type: ignore[no-untyped-def]
    c = cluster
    first = c.engine_proc
    h = await client.start_workflow("Tally", id="upd-stall")
    uh = await h.start_update("add_doubled_after", 5, 2.0, id="stalled", wait_for_stage="ACCEPTED")
    assert first.p is not None
    os.killpg(first.p.pid, signal.SIGSTOP)  # with the update's timer pending
    try:
        c.engine()  # takes the partitions once the stalled one's session expires
        assert await uh.result(timeout=90) == 10
    finally:
        os.killpg(first.p.pid, signal.SIGCONT)
    await asyncio.sleep(settings.session_timeout + 2)  # the zombie wakes up: it may write nothing more
    history = await h.history()
    assert kinds(history).count("WorkflowUpdateCompleted") == 1, kinds(history)
    completed = [r for r in update_replies(settings, client.reply_to, uh._command_id) if r.status == "COMPLETED"]
    assert len(completed) == 1, completed
    await h.signal("close")
    assert await h.result(timeout=60) == 10
