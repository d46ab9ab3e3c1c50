"""The client against a real broker, with a scripted stand-in for the ENGINE.

``FakeEngine`` consumes the commands topic and answers on the replies topic the way the engine
does (by ``reply_to``, keyed by command id); each test scripts its answers. History tests write
events straight onto the events topic. End-to-end runs with the real engine are in
test_engine.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from aion.client import (
    Client,
    PayloadTooLargeError,
    QueryError,
    QueryTimeoutError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowNotFoundError,
    WorkflowResultTimeoutError,
)
from aion.codec import Codec, partition_for
from aion.converter import default_converter
from aion.engine.topics import TopicNames, ensure_topics
from aion.examples.approval import Approval, ApprovalResult
from aion.exceptions import ApplicationError
from aion.model import (
    ActivityScheduled,
    CancelWorkflow,
    Command,
    Event,
    EventKey,
    Failure,
    GetResult,
    QueryWorkflow,
    Reply,
    SignalWithStart,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    WorkflowCompleted,
    WorkflowStarted,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

codec = Codec()
conv = default_converter()

Script = Callable[[Command], list[Reply] | None]


class FakeEngine:
    """Answers commands per ``script`` (a test double of the engine, not of the client)."""

    def __init__(self, settings: Any, script: Script) -> None:
        self.names = TopicNames(settings.topic_prefix)
        self.script = script
        self.commands: list[Command] = []
        self.producer = Producer({**settings.confluent_config(), "linger.ms": 1})
        self.consumer = Consumer({**settings.confluent_config(), "group.id": f"fake-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False})
        parts = self.consumer.list_topics(self.names.commands, timeout=10).topics[self.names.commands].partitions
        self.consumer.assign([TopicPartition(self.names.commands, p, 0) for p in parts])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            m = self.consumer.poll(0.05)
            if m is None or m.error() is not None:
                continue
            cmd = codec.decode_command(m.value())
            self.commands.append(cmd)
            for reply in self.script(cmd) or []:
                self.reply(cmd, reply)
            self.producer.flush(5)

    def reply(self, cmd: Command, reply: Reply) -> None:
        assert cmd.reply_to, f"{cmd.type} without reply_to"
        topic, _, part = cmd.reply_to.rpartition(":")
        self.producer.produce(topic, codec.encode_reply(reply), key=reply.command_id.encode(), partition=int(part))
        self.producer.flush(5)

    def of(self, kind: type) -> list[Command]:
        return [c for c in self.commands if isinstance(c.body, kind)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.consumer.close()


def accepted(cmd: Command, run_id: str = "run-1") -> Reply:
    return Reply(cmd.command_id, cmd.workflow_id, "ACCEPTED", run_id=run_id)


def result(cmd: Command, value: Any, run_id: str = "run-1") -> Reply:
    return Reply(cmd.command_id, cmd.workflow_id, "RESULT", run_id=run_id, status="COMPLETED",
                 result=conv.to_payload(value))


def error(cmd: Command, kind: str, message: str) -> Reply:
    return Reply(cmd.command_id, cmd.workflow_id, "ERROR", failure=Failure(kind, message))


@pytest.fixture
def topics(settings: Any) -> Any:
    ensure_topics(settings, task_queues=("default",))
    return settings


@pytest.fixture
async def client(topics: Any):
    c = await Client.connect(settings=topics, reply_partition=0)
    c.result_resend_interval = 0.5
    yield c
    await c.close()


@pytest.fixture
def engine(topics: Any):
    engines: list[FakeEngine] = []

    def start(script: Script) -> FakeEngine:
        e = FakeEngine(topics, script)
        engines.append(e)
        return e

    yield start
    for e in engines:
        e.close()


# ---------------------------------------------------------------- starts and results


async def test_start_then_result_through_the_start_reply(client: Client, engine: Any) -> None:
    def script(cmd: Command) -> list[Reply]:
        assert isinstance(cmd.body, StartWorkflow)
        b = cmd.body
        assert (b.workflow_type, b.wait_result, cmd.workflow_id) == ("Approval", True, "appr-1")
        assert cmd.reply_to == f"{client.names.replies}:0"
        args = conv.from_payloads(b.input)
        value = {"request_id": args[0], "status": "APPROVED", "decided_by": "ann", "reason": ""}
        return [accepted(cmd), result(cmd, value)]

    fake = engine(script)
    handle = await client.start_workflow(Approval.run, "req-9", id="appr-1")
    assert (handle.id, handle.run_id) == ("appr-1", "run-1")
    got = await handle.result(timeout=10)
    # decoded with the run method's return hint
    assert got == ApprovalResult(request_id="req-9", status="APPROVED", decided_by="ann")
    assert not fake.of(GetResult)  # the start's own RESULT was enough


async def test_two_clients_sharing_a_reply_partition_get_their_own_answers(topics: Any, engine: Any) -> None:
    engine(lambda cmd: [accepted(cmd, run_id=f"run-of-{cmd.workflow_id}"), result(cmd, cmd.workflow_id)])
    a = await Client.connect(settings=topics, reply_partition=0)
    b = await Client.connect(settings=topics, reply_partition=0)
    try:
        ha, hb = await asyncio.gather(
            a.start_workflow("W", id="wf-a"), b.start_workflow("W", id="wf-b"))
        assert (ha.run_id, hb.run_id) == ("run-of-wf-a", "run-of-wf-b")
        assert await asyncio.gather(ha.result(timeout=10), hb.result(timeout=10)) == ["wf-a", "wf-b"]
    finally:
        await a.close()
        await b.close()


async def test_refused_start_raises_the_named_error(client: Client, engine: Any) -> None:
    engine(lambda cmd: [error(cmd, "WorkflowAlreadyStartedError", f"workflow {cmd.workflow_id!r} is already running")])
    with pytest.raises(WorkflowAlreadyStartedError, match="'dup-1' is already running"):
        await client.start_workflow("W", id="dup-1", id_reuse_policy="REJECT_DUPLICATE")


async def test_result_of_another_handle_sends_get_result_and_resends_it(client: Client, engine: Any) -> None:
    seen: list[Command] = []

    def script(cmd: Command) -> list[Reply]:
        seen.append(cmd)
        if len(seen) == 1:
            return []  # an engine that restarted and forgot the waiter
        return [result(cmd, 42, run_id="run-7")]

    engine(script)
    handle = client.get_workflow_handle("wf-x")
    assert await handle.result(timeout=10) == 42
    assert len(seen) == 2 and all(isinstance(c.body, GetResult) for c in seen)
    # The re-send keeps its command id: the engine holds one waiter for it, not one per re-send.
    assert seen[0].command_id == seen[1].command_id
    assert handle.run_id == "run-7"


async def test_failed_run_raises_workflow_failure_error_with_the_chain(client: Client, engine: Any) -> None:
    cause = Failure("CardDeclined", "card 4242 declined", non_retryable=True)
    failure = Failure("OrderFailed", "charge failed", cause=cause)
    engine(lambda cmd: [Reply(cmd.command_id, cmd.workflow_id, "RESULT", run_id="r", status="FAILED", failure=failure)])
    with pytest.raises(WorkflowFailureError) as info:
        await client.get_workflow_handle("order-1").result(timeout=10)
    err = info.value
    assert (err.status, err.workflow_id, err.failure) == ("FAILED", "order-1", failure)
    assert isinstance(err.cause, ApplicationError) and err.cause.type == "OrderFailed"
    assert isinstance(err.cause.__cause__, ApplicationError) and err.cause.__cause__.type == "CardDeclined"


async def test_result_timeout_and_unknown_workflow(client: Client, engine: Any) -> None:
    engine(lambda cmd: [error(cmd, "WorkflowNotFoundError", "no workflow")] if cmd.workflow_id == "nope" else [])
    with pytest.raises(WorkflowNotFoundError):
        await client.get_workflow_handle("nope").result(timeout=10)
    t0 = time.monotonic()
    with pytest.raises(WorkflowResultTimeoutError):
        await client.get_workflow_handle("slow").result(timeout=0.8)
    assert time.monotonic() - t0 < 3


async def test_execute_workflow_with_a_client_used_as_context_manager(topics: Any, engine: Any) -> None:
    engine(lambda cmd: [accepted(cmd), result(cmd, "done")])
    async with Client.connect(settings=topics) as client:
        assert await client.execute_workflow("W", 1, 2, id="exec-1") == "done"
    with pytest.raises(RuntimeError, match="closed"):
        await client.start_workflow("W", id="after-close")


# ---------------------------------------------------------------- signals, queries, cancel


async def test_signal_query_cancel_terminate(client: Client, engine: Any) -> None:
    def script(cmd: Command) -> list[Reply]:
        b = cmd.body
        if isinstance(b, SignalWorkflow):
            assert (b.signal_name, conv.from_payloads(b.args)) == ("approve", ["ann"])
            return [accepted(cmd)]
        if isinstance(b, QueryWorkflow):
            if b.query_name == "status":
                return [Reply(cmd.command_id, cmd.workflow_id, "QUERY", run_id="run-1", result=conv.to_payload("PENDING"))]
            if b.query_name == "boom":
                return [error(cmd, "QueryError", "query handler 'boom' raised ValueError")]
            return []  # a query nobody answers
        if isinstance(b, (CancelWorkflow, TerminateWorkflow)):
            return [accepted(cmd)]
        return []

    fake = engine(script)
    h = client.get_workflow_handle("appr-2")
    await h.signal(Approval.approve, "ann")
    assert await h.query(Approval.status) == "PENDING"
    with pytest.raises(QueryError, match="boom"):
        await h.query("boom")
    with pytest.raises(QueryTimeoutError):
        await h.query("silent", timeout=0.5)
    await h.cancel("changed my mind")
    await h.terminate("stop")
    assert fake.of(CancelWorkflow)[0].body.reason == "changed my mind"
    assert fake.of(TerminateWorkflow)[0].body.reason == "stop"


async def test_signal_with_start(client: Client, engine: Any) -> None:
    fake = engine(lambda cmd: [accepted(cmd, "run-s")])
    h = await client.signal_with_start(Approval.run, "req-1", id="sws-1", signal=Approval.reject,
                                       signal_args=["bob", "too expensive"])
    assert h.run_id == "run-s"
    b = fake.of(SignalWithStart)[0].body
    assert (b.start.workflow_type, b.signal_name, conv.from_payloads(b.args)) == (
        "Approval", "reject", ["bob", "too expensive"])


async def test_oversized_payload_is_refused_before_sending(client: Client, engine: Any) -> None:
    fake = engine(lambda cmd: [accepted(cmd)])
    big = "x" * (client.settings.max_payload_bytes + 10)
    with pytest.raises(PayloadTooLargeError, match="big-1") as info:
        await client.start_workflow("W", big, id="big-1")
    assert str(client.settings.max_payload_bytes) in str(info.value)
    await client.get_workflow_handle("small").signal("s", "ok")  # the client still works
    assert [c.workflow_id for c in fake.commands] == ["small"]


# ---------------------------------------------------------------- history from the events topic


class EventWriter:
    def __init__(self, settings: Any, partitions: int) -> None:
        self.topic = TopicNames(settings.topic_prefix).events
        self.partitions = partitions
        self.producer = Producer({**settings.confluent_config(), "linger.ms": 1})

    def write(self, ev: Event | None, wid: str = "", seq: int = 0) -> None:
        if ev is None:
            key, value = EventKey(wid, seq), None
        else:
            key, value = ev.key, codec.encode_event(ev)
        self.producer.produce(self.topic, value, key=codec.encode_event_key(key),
                              partition=partition_for(key.workflow_id, self.partitions))
        self.producer.flush(10)


P = conv.to_payload("x")


def ev(wid: str, seq: int, body: Any, run: str = "r1") -> Event:
    return Event(wid, seq, run, 1_000 + seq, body, command_id=None)


def same_partition_id(wid: str, n: int) -> str:
    target = partition_for(wid, n)
    i = 0
    while True:
        other = f"{wid}-neighbour-{i}"
        if partition_for(other, n) == target:
            return other
        i += 1


async def test_history_and_describe_read_the_events_topic(client: Client, topics: Any) -> None:
    w = EventWriter(topics, topics.partitions)
    wid = "hist-1"
    neighbour = same_partition_id(wid, topics.partitions)
    w.write(ev(wid, 1, WorkflowStarted("Hello", [P], search_attributes={"tier": "gold"})))
    w.write(ev(neighbour, 1, WorkflowStarted("Other", [P])))
    w.write(ev(wid, 2, ActivityScheduled("1", "greet", [P])))
    w.write(ev(wid, 2, ActivityScheduled("1", "greet", [P], task_queue="rewritten")))  # last write wins
    w.write(ev(wid, 3, WorkflowCompleted(P)))
    h = client.get_workflow_handle(wid)
    events = await h.history()
    assert [(e.seq, e.type) for e in events] == [(1, "WorkflowStarted"), (2, "ActivityScheduled"), (3, "WorkflowCompleted")]
    assert events[1].body.task_queue == "rewritten"
    d = await h.describe()
    assert (d.status, d.workflow_type, d.run_id, d.history_length, d.start_time_ms, d.close_time_ms) == (
        "COMPLETED", "Hello", "r1", 3, 1001, 1003)
    assert d.search_attributes == {"tier": "gold"}
    with pytest.raises(WorkflowNotFoundError, match="never-started"):
        await client.get_workflow_handle("never-started").describe()


async def test_events_follow_live_until_the_workflow_closes(client: Client, topics: Any) -> None:
    w = EventWriter(topics, topics.partitions)
    wid = "live-1"
    w.write(ev(wid, 1, WorkflowStarted("Hello", [P])))
    w.write(ev(wid, 2, ActivityScheduled("1", "greet", [P])))
    h = client.get_workflow_handle(wid)

    now = [e.seq async for e in h.events(follow=False)]
    assert now == [1, 2]

    got: list[int] = []

    async def follow() -> None:
        async for e in h.events(from_seq=2):
            got.append(e.seq)

    task = asyncio.create_task(follow())
    await asyncio.sleep(1.0)
    assert got == [2] and not task.done()  # waiting for more
    w.write(ev(wid, 3, ActivityScheduled("2", "greet", [P])))
    w.write(ev(wid, 4, WorkflowCompleted(P)))
    await asyncio.wait_for(task, 10)  # ends by itself after the closing event
    assert got == [2, 3, 4]
    # a follower started after the close ends at once
    assert [e.seq async for e in h.events(from_seq=5)] == []
