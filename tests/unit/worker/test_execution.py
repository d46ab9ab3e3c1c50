"""Running one attempt without Kafka: arguments, results, failures, cancellation, context."""

import asyncio
import threading
import time

import pytest

from aion import activity
from aion.activity._context import ActivityContext, make_info
from aion.converter import default_converter
from aion.engine.settings import Settings
from aion.exceptions import ApplicationError
from aion.model import (
    ActivityTask,
    ActivityTaskCancelled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    CancelActivityTask,
    Payload,
)
from aion.worker import ActivityRegistrationError, ActivityWorker
from aion.worker._activities import registry_of
from aion.worker._heartbeat import HeartbeatThrottle
from aion.worker._worker import _Attempt, attempt_key, outcome_command_id

conv = default_converter()


@activity.defn
async def add(a: int, b: int) -> int:
    return a + b


@activity.defn(name="who-am-i")
def whoami() -> str:
    info = activity.info()
    return f"{info.workflow_id}/{info.activity_id}#{info.attempt} on {threading.current_thread().name}"


@activity.defn
def explode() -> None:
    raise ApplicationError("nope", "detail", type="Boom", non_retryable=True)


@activity.defn
async def wait_forever() -> str:
    activity.heartbeat("halfway")
    await asyncio.sleep(30)
    return "never"


@activity.defn
def sync_polls_cancel() -> str:
    while not activity.is_cancelled():
        time.sleep(0.01)
    raise RuntimeError("stopped")


def task(activity_type: str, *args, attempt: int = 1) -> ActivityTask:
    return ActivityTask("wf-1", "run-1", "7", attempt, activity_type, conv.to_payloads(list(args)),
                        "default", "W", 0)


def make_attempt(t: ActivityTask) -> _Attempt:
    info = make_info(workflow_id=t.workflow_id, run_id=t.run_id, activity_id=t.activity_id,
                     activity_type=t.activity_type, attempt=t.attempt)
    return _Attempt(task=t, tp=("topic", 0), offset=0, ctx=ActivityContext(info), throttle=HeartbeatThrottle(1))


@pytest.fixture
def worker():
    return ActivityWorker(Settings(), activities=[add, whoami, explode, wait_forever, sync_polls_cancel],
                          concurrency=2, ensure_topics=False)


async def run(worker: ActivityWorker, t: ActivityTask, attempt: _Attempt | None = None):
    attempt = attempt or make_attempt(t)
    return await worker._execute(worker.activities[t.activity_type], attempt)


async def test_async_and_sync_results_are_encoded(worker: ActivityWorker) -> None:
    body, outcome = await run(worker, task("add", 2, 3))
    assert outcome == "completed" and isinstance(body, ActivityTaskCompleted)
    assert conv.from_payload(body.result) == 5
    body, _ = await run(worker, task("who-am-i", attempt=3))
    text = conv.from_payload(body.result)
    assert text.startswith("wf-1/7#3 on aion-activity")  # ran in the pool with its context


async def test_application_error_keeps_type_details_and_non_retryable(worker: ActivityWorker) -> None:
    body, outcome = await run(worker, task("explode"))
    assert outcome == "failed" and isinstance(body, ActivityTaskFailed)
    f = body.failure
    assert (f.type, f.message, f.non_retryable) == ("Boom", "nope", True)
    assert conv.from_payload(f.details) == ["detail"]


async def test_undecodable_input_is_a_non_retryable_failure(worker: ActivityWorker) -> None:
    t = task("add", 2, 3)
    t = ActivityTask(**{**{f: getattr(t, f) for f in t.__dataclass_fields__},
                        "input": [Payload("application/json", b"{not json"), t.input[1]]})
    body, _ = await run(worker, t)
    assert isinstance(body, ActivityTaskFailed) and body.failure.non_retryable
    assert "add" in body.failure.message and "wf-1" in body.failure.message


async def test_cancel_of_an_async_attempt_reports_cancelled_with_heartbeat_details(worker: ActivityWorker) -> None:
    t = task("wait_forever")
    attempt = make_attempt(t)
    worker._inflight[attempt_key(t)] = attempt
    running = asyncio.create_task(run(worker, t, attempt))
    await asyncio.sleep(0.05)
    worker._on_cancel(CancelActivityTask(t.workflow_id, t.run_id, t.activity_id, t.attempt))
    body, outcome = await asyncio.wait_for(running, 2)
    assert outcome == "cancelled" and isinstance(body, ActivityTaskCancelled)
    assert conv.from_payload(body.details) == ["halfway"]


async def test_cancel_of_a_sync_attempt_sets_its_event(worker: ActivityWorker) -> None:
    t = task("sync_polls_cancel")
    attempt = make_attempt(t)
    worker._inflight[attempt_key(t)] = attempt
    running = asyncio.create_task(run(worker, t, attempt))
    await asyncio.sleep(0.05)
    worker._on_cancel(CancelActivityTask(t.workflow_id, t.run_id, t.activity_id, t.attempt))
    body, outcome = await asyncio.wait_for(running, 2)
    assert outcome == "cancelled" and isinstance(body, ActivityTaskCancelled)


def test_a_cancel_for_an_attempt_not_running_here_is_remembered(worker: ActivityWorker) -> None:
    worker._on_cancel(CancelActivityTask("wf", "r", "1", 2))
    assert ("wf", "r", "1", 2) in worker._cancelled_recently


def test_not_registered_failure_names_the_type_and_the_registered_ones(worker: ActivityWorker) -> None:
    f = worker._not_registered(task("charge"))
    assert f.type == "ActivityNotRegisteredError" and f.non_retryable
    assert "'charge'" in f.message and "add, explode, sync_polls_cancel, wait_forever, who-am-i" in f.message


def test_outcome_command_ids_are_deterministic_per_attempt_and_kind() -> None:
    k = ("wf", "r", "1", 1)
    assert outcome_command_id(k, "completed") == outcome_command_id(k, "completed")
    assert outcome_command_id(k, "completed") != outcome_command_id(k, "failed")
    assert outcome_command_id(k, "completed") != outcome_command_id(("wf", "r", "1", 2), "completed")


def test_registry_names_kinds_and_conflicts() -> None:
    reg = registry_of([add, whoami])
    assert reg["add"].is_async and not reg["who-am-i"].is_async
    assert reg["add"].arg_types == (int, int)

    def add_again(x: int) -> int:
        return x

    with pytest.raises(ActivityRegistrationError, match="'add'"):
        registry_of([add, activity.defn(name="add")(add_again)])
    with pytest.raises(ActivityRegistrationError, match="not an activity"):
        registry_of([42])


def test_cancel_prefix_tells_cancels_from_tasks(worker: ActivityWorker) -> None:
    prefix = worker._cancel_prefix()
    c = worker.codec.encode_task(CancelActivityTask("some-wf", "run", "3", 9))
    t = worker.codec.encode_task(task("add", 1, 2))
    assert prefix and c.startswith(prefix) and not t.startswith(prefix)


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        ActivityWorker(Settings(), activities=[add], concurrency=0)
