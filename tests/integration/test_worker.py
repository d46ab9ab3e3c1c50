"""The activity worker against a real broker: tasks in, commands out.

The tests play the engine's part by hand: they produce ActivityTask / CancelActivityTask
records on the task topic and read the commands the worker publishes on the commands topic.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from aion import activity
from aion.codec import Codec
from aion.converter import default_converter
from aion.engine.topics import TopicNames, ensure_topics
from aion.exceptions import ApplicationError
from aion.model import (
    ActivityHeartbeat,
    ActivityTask,
    ActivityTaskCancelled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskStarted,
    CancelActivityTask,
    Command,
)
from aion.worker import ActivityWorker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

codec = Codec()
conv = default_converter()


# ---------------------------------------------------------------- activities under test


@activity.defn
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@activity.defn
def parse_int(text: str) -> int:
    return int(text)  # ValueError for "x"


@activity.defn
async def charge(card: str) -> str:
    raise ApplicationError(f"card {card} declined", type="CardDeclined", non_retryable=True)


@activity.defn
def resume_from() -> list[Any]:
    return list(activity.info().heartbeat_details)


CANCEL_SEEN = threading.Event()


@activity.defn
async def wait_for_cancel() -> str:
    activity.heartbeat("step-1")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        CANCEL_SEEN.set()
        raise
    return "not cancelled"


@activity.defn
def sync_wait_for_cancel() -> str:
    activity.heartbeat(1)
    if activity.wait_for_cancel_sync(30):
        raise ApplicationError("stopped on request")
    return "not cancelled"


class Gauge:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.max = 0
        self.done = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.max = max(self.max, self.now)

    def __exit__(self, *exc: Any) -> None:
        with self.lock:
            self.now -= 1
            self.done += 1


GAUGE = Gauge()


@activity.defn
def slow(i: int) -> int:
    with GAUGE:
        time.sleep(0.15)
    return i


@activity.defn
async def slow_async(i: int) -> int:
    with GAUGE:
        await asyncio.sleep(0.15)
    return i


ALL = [greet, parse_int, charge, resume_from, wait_for_cancel, sync_wait_for_cancel, slow, slow_async]


# ---------------------------------------------------------------- helpers


def task(activity_type: str, *args: Any, wf: str | None = None, attempt: int = 1, **kw: Any) -> ActivityTask:
    return ActivityTask(
        workflow_id=wf or f"wf-{uuid.uuid4().hex[:8]}",
        run_id="run-1",
        activity_id="1",
        attempt=attempt,
        activity_type=activity_type,
        input=conv.to_payloads(list(args)),
        task_queue="default",
        workflow_type="TestWorkflow",
        scheduled_at_ms=int(time.time() * 1000),
        **kw,
    )


class Harness:
    """Produces tasks like the engine does and taps the commands topic."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.names = TopicNames(settings.topic_prefix)
        self.producer = Producer({**settings.confluent_config(), "partitioner": "murmur2_random", "linger.ms": 1})
        self.tap = Consumer({**settings.confluent_config(), "group.id": f"tap-{uuid.uuid4().hex}",
                             "enable.auto.commit": False})
        md = self.tap.list_topics(self.names.commands, timeout=10)
        parts = md.topics[self.names.commands].partitions
        self.tap.assign([TopicPartition(self.names.commands, p, 0) for p in parts])
        self.seen: list[Command] = []

    def send(self, t: ActivityTask | CancelActivityTask) -> None:
        self.producer.produce(self.names.activity_tasks("default"), codec.encode_task(t),
                              key=f"{t.workflow_id}/{t.activity_id}".encode())
        self.producer.flush(10)

    async def wait_for(self, pred: Callable[[list[Command]], bool], timeout: float = 20.0) -> list[Command]:
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while not pred(self.seen):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; commands seen: {[(c.workflow_id, c.type) for c in self.seen]}")
            msgs = await loop.run_in_executor(None, self.tap.consume, 500, 0.2)
            for m in msgs:
                if m.error() is None and m.value() is not None:
                    self.seen.append(codec.decode_command(m.value()))
        return self.seen

    def of(self, wf: str, kind: type | None = None) -> list[Command]:
        return [c for c in self.seen if c.workflow_id == wf and (kind is None or isinstance(c.body, kind))]

    def close(self) -> None:
        self.tap.close()


@pytest.fixture
def harness(settings: Any):
    ensure_topics(settings, task_queues=("default",))
    h = Harness(settings)
    yield h
    h.close()


def committed_offsets(settings: Any, group: str, topic: str) -> int:
    c = Consumer({**settings.confluent_config(), "group.id": group})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        tps = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        c.close()


# ---------------------------------------------------------------- tests


async def test_task_runs_and_reports_started_then_completed(settings: Any, harness: Harness) -> None:
    """A short attempt reports its start with its outcome (one report: the engine records both
    in one step); one that runs past STARTED_AFTER_S reports its start on its own, first."""
    t = task("greet", "World")
    long = task("slow", 1)
    async with ActivityWorker(settings, activities=ALL, concurrency=4) as worker:
        harness.send(t)
        harness.send(long)
        await harness.wait_for(lambda _: bool(harness.of(long.workflow_id, ActivityTaskCompleted))
                               and bool(harness.of(t.workflow_id, ActivityTaskCompleted)))
        assert [type(c.body) for c in harness.of(t.workflow_id)] == [ActivityTaskCompleted]
        assert [type(c.body) for c in harness.of(long.workflow_id)] == [ActivityTaskStarted, ActivityTaskCompleted]
        done = harness.of(t.workflow_id, ActivityTaskCompleted)[0]
        assert (done.body.run_id, done.body.activity_id, done.body.attempt) == ("run-1", "1", 1)
        assert conv.from_payload(done.body.result, str) == "Hello, World!"
        assert done.body.worker == worker.identity
        # the offset is committed once the result is on Kafka (the stop commits synchronously)
    assert committed_offsets(settings, worker.group_id, worker.topic) == 2


async def test_exceptions_become_failures(settings: Any, harness: Harness) -> None:
    bad = task("parse_int", "x")
    declined = task("charge", "4242")
    unknown = task("no_such_activity")
    async with ActivityWorker(settings, activities=ALL, concurrency=4):
        for t in (bad, declined, unknown):
            harness.send(t)
        await harness.wait_for(lambda _: all(harness.of(t.workflow_id, ActivityTaskFailed) for t in (bad, declined, unknown)))
    f = harness.of(bad.workflow_id, ActivityTaskFailed)[0].body.failure
    assert f.type == "ValueError" and "'x'" in f.message and not f.non_retryable and "parse_int" in f.stack
    f = harness.of(declined.workflow_id, ActivityTaskFailed)[0].body.failure
    assert (f.type, f.non_retryable) == ("CardDeclined", True) and "4242" in f.message
    f = harness.of(unknown.workflow_id, ActivityTaskFailed)[0].body.failure
    assert f.type == "ActivityNotRegisteredError" and f.non_retryable
    assert "no_such_activity" in f.message and "greet" in f.message and unknown.workflow_id in f.message
    assert not harness.of(unknown.workflow_id, ActivityTaskStarted)


async def test_heartbeat_details_reach_the_engine_and_the_next_attempt(settings: Any, harness: Harness) -> None:
    t = task("resume_from", attempt=2, heartbeat_details=conv.to_payload(["page", 7]))
    async with ActivityWorker(settings, activities=ALL, concurrency=2):
        harness.send(t)
        await harness.wait_for(lambda _: bool(harness.of(t.workflow_id, ActivityTaskCompleted)))
    done = harness.of(t.workflow_id, ActivityTaskCompleted)[0]
    assert done.body.attempt == 2 and conv.from_payload(done.body.result) == ["page", 7]


async def test_server_cancel_reaches_a_running_async_activity(settings: Any, harness: Harness) -> None:
    CANCEL_SEEN.clear()
    t = task("wait_for_cancel", heartbeat_ms=10_000)
    async with ActivityWorker(settings, activities=ALL, concurrency=2) as worker:
        harness.send(t)
        await harness.wait_for(lambda _: bool(harness.of(t.workflow_id, ActivityHeartbeat)))
        hb = harness.of(t.workflow_id, ActivityHeartbeat)[0]
        assert conv.from_payload(hb.body.details) == ["step-1"]
        harness.send(CancelActivityTask(t.workflow_id, t.run_id, t.activity_id, t.attempt))
        await harness.wait_for(lambda _: bool(harness.of(t.workflow_id, ActivityTaskCancelled)))
        assert CANCEL_SEEN.is_set()
        cancelled = harness.of(t.workflow_id, ActivityTaskCancelled)[0].body
        assert conv.from_payload(cancelled.details) == ["step-1"]
        assert worker.in_flight == 0
    assert not harness.of(t.workflow_id, ActivityTaskCompleted)


async def test_cancel_arrives_while_the_worker_is_full(settings: Any, harness: Harness) -> None:
    """concurrency=1 and a backlog of 1: with one attempt running and one waiting the consumer
    is paused behind them, yet the running attempt's cancel arrives (the cancel watcher), and the
    tasks behind it run afterwards, one at a time."""
    running = task("sync_wait_for_cancel", wf="wf-full-1")
    queued = [task("greet", f"next-{i}", wf=f"wf-full-{i + 2}") for i in range(2)]
    async with ActivityWorker(settings, activities=ALL, concurrency=1, max_backlog=1) as worker:
        harness.send(running)
        await harness.wait_for(lambda _: bool(harness.of(running.workflow_id, ActivityTaskStarted)))
        for t in queued:
            harness.send(t)
        await asyncio.sleep(1.0)
        assert not any(harness.of(t.workflow_id) for t in queued), "started while the only slot was taken"
        assert worker.stats["pauses"] >= 1
        harness.send(CancelActivityTask(running.workflow_id, running.run_id, running.activity_id, running.attempt))
        await harness.wait_for(lambda _: bool(harness.of(running.workflow_id, ActivityTaskCancelled))
                               and all(harness.of(t.workflow_id, ActivityTaskCompleted) for t in queued))
        assert worker.stats["max_in_flight"] == 1


async def test_cancel_of_a_waiting_task_reports_it_cancelled_without_running_it(settings: Any, harness: Harness) -> None:
    running = task("sync_wait_for_cancel", wf="wf-wait-1")
    waiting = task("greet", "never", wf="wf-wait-2")
    async with ActivityWorker(settings, activities=ALL, concurrency=1):
        harness.send(running)
        await harness.wait_for(lambda _: bool(harness.of(running.workflow_id, ActivityTaskStarted)))
        harness.send(waiting)
        harness.send(CancelActivityTask(waiting.workflow_id, waiting.run_id, waiting.activity_id, waiting.attempt))
        await asyncio.sleep(0.5)
        harness.send(CancelActivityTask(running.workflow_id, running.run_id, running.activity_id, running.attempt))
        await harness.wait_for(lambda _: bool(harness.of(waiting.workflow_id, ActivityTaskCancelled)))
    assert [type(c.body) for c in harness.of(waiting.workflow_id)] == [ActivityTaskCancelled]


@pytest.mark.parametrize("fn", ["slow", "slow_async"])
async def test_never_more_than_concurrency_attempts_run(settings: Any, harness: Harness, fn: str) -> None:
    GAUGE.__init__()  # type: ignore[misc]
    tasks = [task(fn, i) for i in range(15)]
    for t in tasks:
        harness.send(t)
    async with ActivityWorker(settings, activities=ALL, concurrency=3) as worker:
        await harness.wait_for(lambda seen: sum(isinstance(c.body, ActivityTaskCompleted) for c in seen) >= 15, timeout=40)
    assert GAUGE.done == 15
    assert GAUGE.max == 3  # the limit was reached and never passed
    assert worker.stats["max_in_flight"] == 3
    results = sorted(conv.from_payload(c.body.result) for c in harness.seen if isinstance(c.body, ActivityTaskCompleted))
    assert results == list(range(15))
    assert committed_offsets(settings, worker.group_id, worker.topic) == 15


async def test_a_task_not_finished_at_stop_is_run_again_by_the_next_worker(settings: Any, harness: Harness) -> None:
    """At-least-once: an abandoned attempt is neither reported nor committed."""
    t = task("wait_for_cancel")
    worker = ActivityWorker(settings, activities=ALL, concurrency=2, graceful_timeout=0.2)
    async with worker:
        harness.send(t)
        await harness.wait_for(lambda _: bool(harness.of(t.workflow_id, ActivityTaskStarted)))
    assert worker.stats["abandoned"] == 1
    assert not harness.of(t.workflow_id, ActivityTaskCancelled) and not harness.of(t.workflow_id, ActivityTaskFailed)
    assert committed_offsets(settings, worker.group_id, worker.topic) == 0
    async with ActivityWorker(settings, activities=ALL, concurrency=2, graceful_timeout=0.2):
        await harness.wait_for(lambda _: len(harness.of(t.workflow_id, ActivityTaskStarted)) == 2)
