"""Cancelling a sync activity: its next heartbeat raises CancelledError (as in Temporal)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest

from aion import activity, workflow
from aion.activity._context import ActivityContext, make_info
from aion.converter import default_converter
from aion.engine.settings import Settings
from aion.exceptions import CancelledError
from aion.model import ActivityTask, ActivityTaskCancelled
from aion.testing import ActivityEnvironment, WorkflowEnvironment
from aion.worker import ActivityWorker
from aion.worker._heartbeat import HeartbeatThrottle
from aion.worker._worker import _Attempt
from aion.workflow import ActivityCancellationType

conv = default_converter()

#: How each run of ``grind`` ended, by key: "cancelled" (the heartbeat raised) or "finished".
ENDED: dict[str, str] = {}
STARTED: dict[str, threading.Event] = {}


@activity.defn
def grind(key: str) -> int:
    """A sync loop that heartbeats and would run for a minute; catches only Exception."""
    STARTED.setdefault(key, threading.Event()).set()
    i = 0
    try:
        for i in range(6000):
            try:
                activity.heartbeat(i)
            except Exception:  # the cancellation is a BaseException: it is not swallowed here
                ENDED[key] = "swallowed"
            time.sleep(0.01)
    except CancelledError:
        ENDED[key] = "cancelled"
        raise
    ENDED[key] = "finished"
    return i


def make_ctx(*, sync: bool) -> ActivityContext:
    ctx = ActivityContext(make_info(workflow_id="wf", run_id="r", activity_id="3", activity_type="grind", attempt=2))
    ctx.heartbeat_raises_cancel = sync
    return ctx


def test_heartbeat_raises_only_for_a_sync_attempt_once_cancelled() -> None:
    sync, not_sync = make_ctx(sync=True), make_ctx(sync=False)
    sync.heartbeat(1)  # not cancelled yet: no error
    for ctx in (sync, not_sync):
        ctx.request_cancel("CANCEL_REQUESTED")
    not_sync.heartbeat(2)  # an async attempt is cancelled through its task, not its heartbeat
    with pytest.raises(CancelledError, match=r"'grind'.*'wf'.*attempt 2.*CANCEL_REQUESTED"):
        sync.heartbeat(7)
    assert sync.last_heartbeat_details == (7,)  # reported with the cancellation


async def test_the_worker_reports_a_cancelled_sync_attempt_as_cancelled() -> None:
    ENDED.pop("w", None)
    worker = ActivityWorker(Settings(), activities=[grind], concurrency=2, ensure_topics=False)
    t = ActivityTask("wf-1", "run-1", "1", 1, "grind", conv.to_payloads(["w"]), "default", "W", 0)
    info = make_info(workflow_id="wf-1", run_id="run-1", activity_id="1", activity_type="grind", attempt=1)
    attempt = _Attempt(task=t, tp=("topic", 0), offset=0, ctx=ActivityContext(info), throttle=HeartbeatThrottle(1))
    run = asyncio.ensure_future(worker._execute(worker.activities["grind"], attempt))
    await asyncio.sleep(0.2)
    assert not run.done()
    t0 = time.monotonic()
    attempt.ctx.request_cancel("CANCEL_REQUESTED")
    body, outcome = await asyncio.wait_for(run, 5)
    assert outcome == "cancelled" and isinstance(body, ActivityTaskCancelled)
    assert time.monotonic() - t0 < 1.0 and ENDED["w"] == "cancelled"
    assert isinstance(conv.from_payload(body.details)[0], int)  # the last heartbeat's details


@workflow.defn
class CancelsGrind:
    @workflow.run
    async def run(self, key: str) -> str:
        h = workflow.start_activity(grind, key, start_to_close_timeout=timedelta(minutes=5),
                                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
        await workflow.wait_condition(lambda: self.go)
        h.cancel()
        try:
            return f"finished {await h}"
        except asyncio.CancelledError:
            return "cancelled"

    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def stop(self) -> None:
        self.go = True


async def test_a_workflow_cancels_a_sync_activity_that_heartbeats() -> None:
    ENDED.pop("e", None)
    STARTED["e"] = threading.Event()
    async with WorkflowEnvironment.start_time_skipping(workflows=[CancelsGrind], activities=[grind]) as env:
        h = await env.client.start_workflow(CancelsGrind.run, "e", id="grind-1")
        await asyncio.get_running_loop().run_in_executor(None, STARTED["e"].wait, 5)
        await h.signal(CancelsGrind.stop)
        assert await asyncio.wait_for(h.result(), 10) == "cancelled"
        assert "ActivityCancelled" in [e.type for e in env.history("grind-1")]
    assert ENDED["e"] == "cancelled"


async def test_the_activity_environment_cancels_a_sync_activity_at_its_heartbeat() -> None:
    ENDED.pop("a", None)
    STARTED["a"] = threading.Event()
    env = ActivityEnvironment(activity_type="grind")
    run = asyncio.ensure_future(env.run(grind, "a"))
    await asyncio.get_running_loop().run_in_executor(None, STARTED["a"].wait, 5)
    env.cancel()
    with pytest.raises(CancelledError):
        await asyncio.wait_for(run, 5)
    assert ENDED["a"] == "cancelled"


def test_temporal_spellings_of_the_cancel_waits() -> None:
    assert activity.wait_for_cancelled is activity.wait_for_cancel
    assert activity.wait_for_cancelled_sync is activity.wait_for_cancel_sync
