"""The activity worker when a task changes hands: a task delivered again while it runs, a
rebalance that moves running tasks to another worker, and tasks of aborted transactions.

Like test_worker.py, the tests play the engine's part by hand (tasks produced on chosen
partitions of the task topic) and read the commands the workers publish.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Callable

import pytest
from confluent_kafka import Producer, TopicPartition

from aion import activity
from aion.model import (
    ActivityTask,
    ActivityTaskCancelled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskStarted,
    Command,
)
from aion.worker import ActivityWorker
from aion.engine.topics import ensure_topics
from test_worker import Harness, codec, committed_offsets, task

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOLD = threading.Event()
REVOKING = threading.Event()
LONG_CANCELLED: list[str] = []


@activity.defn
async def held(name: str) -> str:
    while not HOLD.is_set():
        await asyncio.sleep(0.02)
    return name


@activity.defn
async def until_revoked(name: str) -> str:
    """Finishes as soon as a revoke starts: inside the revoke's grace."""
    while not REVOKING.is_set():
        await asyncio.sleep(0.02)
    return name


@activity.defn
async def long_async(name: str) -> str:
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        LONG_CANCELLED.append(activity.info().workflow_id)
        raise
    return name


ACTS = [held, until_revoked, long_async]


@pytest.fixture
def harness(settings: Any):
    ensure_topics(settings, task_queues=("default",))
    h = Harness(settings)
    yield h
    h.close()


def send_to(h: Harness, t: ActivityTask, partition: int) -> None:
    h.producer.produce(h.names.activity_tasks("default"), codec.encode_task(t),
                       key=f"{t.workflow_id}/{t.activity_id}".encode(), partition=partition)
    h.producer.flush(10)


def by(h: Harness, wf: str, kind: type, worker: ActivityWorker | None = None) -> list[Command]:
    return [c for c in h.of(wf, kind) if worker is None or getattr(c.body, "worker", None) == worker.identity]


async def pump(h: Harness) -> None:
    """Read what the commands topic has now (wait_for returns at once when its test holds)."""
    msgs = await asyncio.get_running_loop().run_in_executor(None, h.tap.consume, 500, 0.3)
    for m in msgs:
        if m.error() is None and m.value() is not None:
            h.seen.append(codec.decode_command(m.value()))


async def until(pred: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_task_delivered_again_while_it_runs_is_committed_only_after_its_report(
        settings: Any, harness: Harness) -> None:
    """The partition's position goes back to a running task (as when a rebalance hands the
    partition back): the task is delivered again. It must not run twice, and its offset must
    not be committed before the running attempt's report is acknowledged — a crash in between
    would lose the outcome."""
    HOLD.clear()
    t = task("held", "x", wf=f"wf-dup-{uuid.uuid4().hex[:6]}")
    worker = ActivityWorker(settings, activities=ACTS, concurrency=4, commit_interval=0.05)
    loop = asyncio.get_running_loop()
    try:
        async with worker:
            send_to(harness, t, 0)
            await harness.wait_for(lambda _: bool(harness.of(t.workflow_id, ActivityTaskStarted)))
            consumer = worker._consumer
            assert consumer is not None
            await loop.run_in_executor(worker._io, consumer.seek, TopicPartition(worker.topic, 0, 0))
            await until(lambda: worker.stats["duplicates"] >= 1, what="the task delivered again")
            await asyncio.sleep(1.0)  # many commit intervals
            assert committed_offsets(settings, worker.group_id, worker.topic) == 0, \
                "the task's offset was committed while its attempt still runs"
            HOLD.set()
            await harness.wait_for(lambda _: bool(harness.of(t.workflow_id, ActivityTaskCompleted)))
    finally:
        HOLD.set()
    assert worker.stats["started"] == 1 and len(harness.of(t.workflow_id, ActivityTaskStarted)) == 1
    assert committed_offsets(settings, worker.group_id, worker.topic) == 1


async def test_a_rebalance_moves_running_tasks_to_the_new_owner(settings: Any, harness: Harness) -> None:
    """Worker A runs, on each of the 4 partitions, a task that finishes within the revoke's grace
    (offset 0) and one that runs long (offset 1). Worker B joins and takes partitions away from
    A. On those: A reports and commits the short task in the revoke (B never runs it), cancels
    the long one without reporting it, and B runs the long one again."""
    REVOKING.clear()
    LONG_CANCELLED.clear()
    run = uuid.uuid4().hex[:6]
    quick = {p: task("until_revoked", "q", wf=f"wf-q{p}-{run}") for p in range(4)}
    long = {p: task("long_async", "l", wf=f"wf-l{p}-{run}") for p in range(4)}
    for p in range(4):
        send_to(harness, quick[p], p)
        send_to(harness, long[p], p)

    a = ActivityWorker(settings, activities=ACTS, concurrency=10, graceful_timeout=0.5, identity=f"A-{run}")
    b = ActivityWorker(settings, activities=ACTS, concurrency=10, graceful_timeout=0.5, identity=f"B-{run}")
    on_revoke = a._on_revoke

    def watch_revoke(consumer: Any, partitions: list[TopicPartition]) -> None:
        if partitions:
            REVOKING.set()
        on_revoke(consumer, partitions)

    a._on_revoke = watch_revoke  # type: ignore[method-assign]
    try:
        async with a:
            await harness.wait_for(lambda _: all(by(harness, t.workflow_id, ActivityTaskStarted, a)
                                                 for t in (*quick.values(), *long.values())))
            assert not REVOKING.is_set()
            async with b:
                def moved() -> list[int]:
                    return [p for p in range(4) if by(harness, long[p].workflow_id, ActivityTaskStarted, b)]

                await harness.wait_for(lambda _: bool(moved()), timeout=40)  # B runs a long task
                await asyncio.sleep(1.5)  # anything B would (wrongly) run again shows up meanwhile
                await pump(harness)
                gone = moved()
                kept = [p for p in range(4) if p not in gone]
                assert REVOKING.is_set()
                for p in gone:
                    # the short task finished in the grace: reported by A, committed in the revoke
                    assert by(harness, quick[p].workflow_id, ActivityTaskCompleted, a)
                    assert not by(harness, quick[p].workflow_id, ActivityTaskStarted, b), \
                        f"partition {p}: B ran a task A had finished during the revoke"
                    # the long task was cancelled on A, not reported, and runs on B
                    assert long[p].workflow_id in LONG_CANCELLED
                    for kind in (ActivityTaskCompleted, ActivityTaskFailed, ActivityTaskCancelled):
                        assert not harness.of(long[p].workflow_id, kind)
                for p in kept:
                    assert long[p].workflow_id not in LONG_CANCELLED
                    assert not by(harness, long[p].workflow_id, ActivityTaskStarted, b)
                assert a.stats["abandoned"] == len(gone)
                assert a.in_flight == len(kept) and b.in_flight == len(gone)
    finally:
        REVOKING.set()


async def test_a_task_of_an_aborted_transaction_never_runs(settings: Any, harness: Harness) -> None:
    """The engine writes tasks inside Kafka transactions: the worker reads committed records
    only (isolation.level=read_committed), so a task whose transaction aborted never runs."""
    aborted = task("greet_txn", "aborted", wf=f"wf-aborted-{uuid.uuid4().hex[:6]}")
    committed = task("greet_txn", "committed", wf=f"wf-committed-{uuid.uuid4().hex[:6]}")
    topic = harness.names.activity_tasks("default")
    txn = Producer({**settings.confluent_config(), "transactional.id": f"test-txn-{uuid.uuid4().hex}"})
    txn.init_transactions(10)
    txn.begin_transaction()
    txn.produce(topic, codec.encode_task(aborted), key=b"k", partition=0)
    txn.flush(10)  # on the broker, inside the open transaction
    txn.abort_transaction(10)
    txn.begin_transaction()
    txn.produce(topic, codec.encode_task(committed), key=b"k", partition=0)
    txn.commit_transaction(10)

    async with ActivityWorker(settings, activities=[greet_txn], concurrency=2) as worker:
        await harness.wait_for(lambda _: bool(harness.of(committed.workflow_id, ActivityTaskCompleted)))
        await asyncio.sleep(1.0)
        await pump(harness)
    assert not harness.of(aborted.workflow_id), "a task of an aborted transaction ran"
    assert worker.stats["started"] == 1


@activity.defn
async def greet_txn(name: str) -> str:
    return f"Hello, {name}!"
