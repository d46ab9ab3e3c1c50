"""Workflow failures that behave as users expect, through a running engine on the real broker:
a bug in workflow code holds the workflow (it is not failed), and a signal whose arguments do
not fit its handler is refused to its sender (dead-lettered when nobody can be told)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer

from aion.cli._main import cli
from aion.codec import Codec
from aion.converter import default_converter
from aion.engine.topics import TopicNames
from aion.exceptions import SignalArgumentsError
from aion.model import Command, SignalWorkflow, now_ms


@pytest.fixture
def cluster(make_cluster):  # type: ignore[no-untyped-def]
    c = make_cluster()
    c.engine()
    c.activities()
    return c


def _dead_letters(settings, key: bytes, timeout: float = 30.0) -> list[dict[str, bytes]]:  # type: ignore[no-untyped-def]
    c = Consumer({**settings.confluent_config(), "group.id": f"t-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    c.subscribe([TopicNames(settings.topic_prefix).dlq])
    out: list[dict[str, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while not out and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error() and m.key() == key:
                out.append({k: v for k, v in (m.headers() or [])})
    finally:
        c.close()
    return out


async def test_a_bug_holds_the_workflow_and_a_wrong_signal_is_refused(cluster, client, settings):  # type: ignore[no-untyped-def]
    h = await client.start_workflow("Ledger", {"id": "o-1"}, id="ledger-1")  # no "cents": KeyError
    for _ in range(150):
        if any(e.type == "WorkflowTaskFailed" for e in await h.history()):
            break
        await asyncio.sleep(0.2)
    history = await h.history()
    types = [e.type for e in history]
    assert "WorkflowTaskFailed" in types and "WorkflowFailed" not in types, types
    failure = next(e.body.failure for e in history if e.type == "WorkflowTaskFailed")
    assert (failure.type, failure.message) == ("KeyError", "'cents'")

    # describe says it is held, and why
    env = {"AION_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "AION_TOPIC_PREFIX": settings.topic_prefix}
    def aion(*args: str):  # type: ignore[no-untyped-def]  # (the CLI runs its own event loop)
        return CliRunner().invoke(cli, list(args), env=env, obj={})

    res = await asyncio.to_thread(aion, "workflow", "describe", "ledger-1", "--json")
    assert res.exit_code == 0, res.output
    described = json.loads(res.output)
    assert described["status"] == "RUNNING"
    assert described["workflow_task"]["state"] == "HELD"
    assert described["workflow_task"]["error"] == "KeyError: 'cents'"
    res = await asyncio.to_thread(aion, "workflow", "describe", "ledger-1")
    assert res.exit_code == 0, res.output
    assert re.search(r"^workflow task HELD after attempt \d+: KeyError: 'cents' \(next try .*\); fix the "
                     r"workflow code and restart the engine workers", res.output, re.M), res.output

    # a signal that fits is still recorded while held ...
    await h.signal("note", "call the customer")
    # ... one that does not fit its handler is refused to the sender, and records nothing
    with pytest.raises(SignalArgumentsError) as info:
        await h.signal("note", "call", "the customer")
    assert "takes 1 argument note(text: str) but was sent 2 arguments" in str(info.value)
    # ... or dead-lettered with the reason when it has no reply_to (a signal from a workflow)
    cmd = Command("wrong-args-1", "ledger-1", now_ms(), SignalWorkflow("note", default_converter().to_payloads([])))
    p = Producer({**settings.confluent_config(), "partitioner": "murmur2_random"})
    p.produce(TopicNames(settings.topic_prefix).commands, key=b"ledger-1", value=Codec().encode_command(cmd))
    assert p.flush(10) == 0
    letters = _dead_letters(settings, b"ledger-1")
    assert letters and b"SignalArgumentsError" in letters[0]["aion.reason"], letters
    assert b"missing a required argument: 'text'" in letters[0]["aion.reason"]

    signals = [e.body for e in await h.history() if e.type == "SignalReceived"]
    assert [(s.signal_name, default_converter().from_payloads(s.args)) for s in signals] == \
        [("note", ["call the customer"])]
    assert (await h.history())[-1].type != "WorkflowFailed"
    # and the engine serves everything else as usual
    assert await client.execute_workflow("Hello", "after", id="ledger-neighbour") == "Hello, after!"
