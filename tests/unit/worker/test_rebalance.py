"""The worker's record, report, revoke and lost paths without Kafka: fake records, a producer
whose acknowledgements the test controls, a consumer that records commits."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable

import pytest
from confluent_kafka import TopicPartition

from aion import activity
from aion.codec import Codec
from aion.converter import default_converter
from aion.engine.settings import Settings
from aion.model import (
    ActivityTask,
    ActivityTaskCancelled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskStarted,
)
from aion.worker import ActivityWorker
from aion.worker import _cancels, _worker

conv = default_converter()
codec = Codec()
T = "aion.activity-tasks.default"

RUNS: dict[str, int] = {}
GATE = asyncio.Event()
ASYNC_CANCELLED = threading.Event()
SYNC_RELEASE = threading.Event()
SYNC_SAW_CANCEL = threading.Event()


@activity.defn
async def gated(name: str) -> str:
    RUNS[name] = RUNS.get(name, 0) + 1
    await GATE.wait()
    return name


@activity.defn
async def quick(name: str) -> str:
    RUNS[name] = RUNS.get(name, 0) + 1
    await asyncio.sleep(0.3)
    return name


@activity.defn
async def forever(name: str) -> str:
    RUNS[name] = RUNS.get(name, 0) + 1
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        ASYNC_CANCELLED.set()
        raise
    return name


@activity.defn
def sync_blocking(name: str) -> str:
    """A sync activity that ignores cancellation until the test releases it."""
    RUNS[name] = RUNS.get(name, 0) + 1
    SYNC_RELEASE.wait(30)
    if activity.is_cancelled():
        SYNC_SAW_CANCEL.set()
    return name


class FakeProducer:
    """Records the commands the worker sends; acks them now (auto) or when the test says."""

    def __init__(self, auto_ack: bool) -> None:
        self.auto_ack = auto_ack
        self.sent: list[tuple[Any, asyncio.Future[Any]]] = []

    def produce_nowait(self, topic: str, value: bytes, key: bytes | None = None, *a: Any, **kw: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((codec.decode_command(value), fut))
        if self.auto_ack:
            asyncio.get_running_loop().call_later(0.01, lambda: fut.done() or fut.set_result(None))
        return fut

    def ack_all(self) -> None:
        for _cmd, fut in self.sent:
            if not fut.done():
                fut.set_result(None)

    def bodies(self, name: str | None = None, kind: type | None = None) -> list[Any]:
        return [c.body for c, _f in self.sent
                if (name is None or c.workflow_id == name) and (kind is None or isinstance(c.body, kind))]

    async def close(self) -> None:
        pass


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[tuple[str, int], int]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})


class Msg:
    def __init__(self, partition: int, offset: int, t: ActivityTask) -> None:
        self._p, self._o, self._v = partition, offset, codec.encode_task(t)

    def topic(self) -> str:
        return T

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v

    def error(self) -> None:
        return None


def task(activity_type: str, name: str) -> ActivityTask:
    return ActivityTask(name, "run-1", "1", 1, activity_type, conv.to_payloads([name]), "default", "W", 0)


WORKERS: list[tuple[ActivityWorker, FakeProducer]] = []


def make_worker(auto_ack: bool, **kw: Any) -> tuple[ActivityWorker, FakeProducer]:
    w = ActivityWorker(Settings(), activities=[gated, quick, forever, sync_blocking], concurrency=8,
                       ensure_topics=False, **kw)
    producer = FakeProducer(auto_ack)
    w._producer = producer  # type: ignore[assignment]
    w._stopping = asyncio.Event()
    # What run() sets up (the loop the io thread hands the revoke to).
    w._loop, w._loop_thread = asyncio.get_running_loop(), threading.get_ident()
    WORKERS.append((w, producer))
    return w, producer


def feed(w: ActivityWorker, *msgs: Msg) -> None:
    for m in msgs:
        w._on_record(m)  # type: ignore[arg-type]
    w._drain_backlog()


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
async def _reset() -> Any:
    global GATE
    RUNS.clear()
    GATE = asyncio.Event()  # an asyncio.Event binds to the loop of its first wait
    ASYNC_CANCELLED.clear()
    SYNC_RELEASE.clear()
    SYNC_SAW_CANCEL.clear()
    yield
    # Whatever the test left running (a failed test above all) ends here, reports acked.
    SYNC_RELEASE.set()
    GATE.set()
    for w, producer in WORKERS:
        producer.auto_ack = True
        producer.ack_all()
        runners = [a.runner for a in w._inflight.values() if a.runner is not None]
        for r in runners:
            r.cancel()
        runners += [a.runner for a in getattr(w, "_active", ()) if a.runner is not None]
        if runners:
            await asyncio.wait(runners, timeout=2.0)
        producer.ack_all()
        w._pool.shutdown(wait=False)
        w._io.shutdown(wait=False)
    WORKERS.clear()


# ---------------------------------------------------------------- defect 1: copies


async def test_a_redelivered_copy_is_not_committed_before_the_originals_report_is_acked() -> None:
    w, producer = make_worker(auto_ack=False)
    t = task("gated", "wf-a")
    feed(w, Msg(0, 5, t))
    await until(lambda: RUNS.get("wf-a") == 1)
    # The partition's position went back (it was handed back by a rebalance) and the engine
    # wrote the task once more: two copies of the running attempt.
    feed(w, Msg(0, 5, t), Msg(0, 6, t))
    assert w.stats["duplicates"] == 2
    assert w._offsets.to_commit() == {(T, 0): 5}, "a copy was committed while its original runs"
    GATE.set()
    await until(lambda: bool(producer.bodies("wf-a", ActivityTaskCompleted)))
    await asyncio.sleep(0.05)
    assert w._offsets.to_commit() == {(T, 0): 5}, "committed before the report was acknowledged"
    producer.ack_all()
    await until(lambda: w._offsets.to_commit() == {(T, 0): 7})
    assert RUNS["wf-a"] == 1


async def test_a_copy_arriving_while_the_report_is_in_flight_is_neither_run_nor_committed() -> None:
    w, producer = make_worker(auto_ack=False)
    GATE.set()
    t = task("gated", "wf-b")
    feed(w, Msg(0, 3, t))
    await until(lambda: bool(producer.bodies("wf-b", ActivityTaskCompleted)))
    assert w.in_flight == 0  # the slot is free, the report is not acknowledged yet
    feed(w, Msg(0, 4, t))
    await asyncio.sleep(0.1)
    assert RUNS["wf-b"] == 1, "the copy ran again"
    assert len(producer.bodies("wf-b", ActivityTaskCompleted)) == 1
    assert w._offsets.to_commit() == {(T, 0): 3}
    producer.ack_all()
    await until(lambda: w._offsets.to_commit() == {(T, 0): 5})


# ---------------------------------------------------------------- defect 2: revoke


async def test_revoke_gives_a_short_grace_then_abandons_and_commits_only_what_finished() -> None:
    # grace = min(graceful_timeout, revoke_grace (2 s))
    w, producer = make_worker(auto_ack=True, graceful_timeout=1.0)
    feed(w,
         Msg(0, 0, task("quick", "wf-quick")),        # finishes within the grace
         Msg(0, 1, task("forever", "wf-async")),      # async, still running: cancelled
         Msg(1, 0, task("sync_blocking", "wf-sync")),  # sync, still running: abandoned
         Msg(2, 0, task("forever", "wf-kept")))       # partition 2 stays here
    await until(lambda: len(RUNS) == 4)
    consumer = FakeConsumer()
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    # on_revoke runs inside consume() on the worker's io thread
    await loop.run_in_executor(None, w._on_revoke, consumer, [TopicPartition(T, 0), TopicPartition(T, 1)])
    took = time.monotonic() - started
    assert took < 1.0 + 0.5, f"the revoke stalled the group for {took:.2f}s"

    assert [b.result for b in producer.bodies("wf-quick", ActivityTaskCompleted)], "not reported"
    assert consumer.commits, "nothing committed in the revoke"
    committed = consumer.commits[-1]
    assert committed[(T, 0)] == 1, "the attempt that finished in the grace was not committed"
    assert committed.get((T, 1), 0) == 0, "an abandoned attempt was committed"

    await until(ASYNC_CANCELLED.is_set)  # the async attempt was cancelled locally
    assert w.stats["abandoned"] == 2
    assert w.in_flight == 1 and not w._inflight[("wf-kept", "run-1", "1", 1)].abandoned
    SYNC_RELEASE.set()  # the sync one ends in its thread; its outcome is dropped
    await until(SYNC_SAW_CANCEL.is_set)
    await asyncio.sleep(0.2)
    for name in ("wf-async", "wf-sync"):
        assert not producer.bodies(name, ActivityTaskCompleted)
        assert not producer.bodies(name, ActivityTaskFailed)
        assert not producer.bodies(name, ActivityTaskCancelled)
    # The partitions are forgotten: a late completion commits nothing.
    assert w._offsets.to_commit([(T, 0), (T, 1)]) == {}
    # A revoked partition handed back re-delivers from the committed position: the abandoned
    # attempt runs afresh here (its first run is gone), the finished one is not seen again.
    feed(w, Msg(0, 1, task("forever", "wf-async")))
    await until(lambda: RUNS["wf-async"] == 2)


async def test_lost_partitions_commit_nothing_and_abandon_at_once() -> None:
    w, producer = make_worker(auto_ack=True, graceful_timeout=1.0)
    feed(w, Msg(0, 0, task("quick", "wf-quick")), Msg(0, 1, task("forever", "wf-async")))
    await until(lambda: len(RUNS) == 2)
    consumer = FakeConsumer()
    started = time.monotonic()
    on_lost = getattr(w, "_on_lost", w._on_revoke)  # (the worker once used on_revoke for both)
    await asyncio.get_running_loop().run_in_executor(None, on_lost, consumer, [TopicPartition(T, 0)])
    assert time.monotonic() - started < 0.5
    assert consumer.commits == []
    await until(ASYNC_CANCELLED.is_set)
    assert w.in_flight == 0 and w.stats["abandoned"] == 2


# ---------------------------------------------------------------- defect 3: read_committed


class _Built(Exception):
    pass


def _capture(configs: list[dict[str, Any]]) -> Any:
    def consumer(config: dict[str, Any]) -> Any:
        configs.append(config)
        raise _Built()

    return consumer


def _helper_without_isolation(base: dict[str, Any], *, group_id: str, client_id: str, **extra: Any) -> dict[str, Any]:
    """The shared helper as it was (no isolation level): the worker must not rely on it."""
    return {**base, "group.id": group_id, "client.id": client_id, "enable.auto.commit": False, **extra}


async def test_the_task_consumers_read_committed_records_only(monkeypatch: pytest.MonkeyPatch) -> None:
    configs: list[dict[str, Any]] = []

    class NoProducer:
        def __init__(self, config: dict[str, Any]) -> None:
            pass

        def start(self) -> None:
            pass

    class NoWatcher:
        def __init__(self, *a: Any, **kw: Any) -> None:
            pass

        async def start(self) -> None:
            pass

    monkeypatch.setattr(_worker, "consumer_config", _helper_without_isolation)
    monkeypatch.setattr(_worker, "Consumer", _capture(configs))
    monkeypatch.setattr(_worker, "AsyncProducer", NoProducer)
    monkeypatch.setattr(_worker, "CancelWatcher", NoWatcher)
    w = ActivityWorker(Settings(), activities=[quick], ensure_topics=False)
    with pytest.raises(_Built):
        await w._start(asyncio.get_running_loop())

    monkeypatch.setattr(_cancels, "consumer_config", _helper_without_isolation)
    monkeypatch.setattr(_cancels, "Consumer", _capture(configs))
    watcher = _cancels.CancelWatcher(Settings().confluent_config(), T, codec.decode_task, b"", lambda c: None,
                                     prefix="aion")
    with pytest.raises(_Built):
        await watcher.start()

    assert len(configs) == 2
    for cfg in configs:
        assert cfg.get("isolation.level") == "read_committed", cfg


async def test_a_short_attempt_reports_its_start_with_its_outcome_and_a_long_one_on_its_own() -> None:
    """An attempt that ends within STARTED_AFTER_S sends no separate start report (the engine
    records ActivityStarted with the outcome, one step); a longer one reports its start after
    that delay, before its outcome."""
    w, producer = make_worker(auto_ack=True)
    GATE.set()
    feed(w, Msg(0, 1, task("gated", "wf-short")))
    await until(lambda: bool(producer.bodies("wf-short", ActivityTaskCompleted)))
    await asyncio.sleep(_worker.STARTED_AFTER_S * 2)
    assert [type(b) for b in producer.bodies("wf-short")] == [ActivityTaskCompleted]
    feed(w, Msg(0, 2, task("quick", "wf-long")))  # 0.3 s
    await until(lambda: bool(producer.bodies("wf-long", ActivityTaskCompleted)))
    assert [type(b) for b in producer.bodies("wf-long")] == [ActivityTaskStarted, ActivityTaskCompleted]
