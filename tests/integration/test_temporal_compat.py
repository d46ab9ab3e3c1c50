"""The Temporal-compatibility surface through real Kafka: an engine process runs the workflows of
``compat_workflows``, an in-process ``ActivityWorker`` runs their activities as Temporal users
register them (bound methods of an object, sync functions)."""

from __future__ import annotations

import asyncio
import time

import pytest

from aion.worker import ActivityWorker
import compat_workflows
from compat_workflows import AwaitHandOff, CancelGrind, Inventory, LocalUpper, Restock, grind, upper

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def cluster(make_cluster):  # type: ignore[no-untyped-def]
    c = make_cluster("compat_workflows")
    c.engine()
    return c


async def test_activity_methods_run_bound_to_their_object(settings, cluster, client) -> None:  # type: ignore[no-untyped-def]
    inv = Inventory({"bolt": 10})
    async with ActivityWorker(settings, activities=[inv.reserve, inv.count], concurrency=4):
        h = await client.start_workflow(Restock.run, "bolt", id="restock-1")
        try:
            assert await h.result(timeout=90) == [8, 8]
        except Exception:
            print(cluster.logs())
            raise
    assert inv.stock == {"bolt": 8}
    failed = [e for e in await h.history() if e.type == "ActivityFailed"]
    assert failed == []  # no attempt failed for want of `self`


async def test_a_local_activity_runs_on_the_activity_workers_of_the_workflow_queue(settings, cluster, client) -> None:  # type: ignore[no-untyped-def]
    async with ActivityWorker(settings, activities=[upper], task_queue="default", concurrency=2) as worker:
        h = await client.start_workflow(LocalUpper.run, "quiet", id="local-1")
        try:
            assert await h.result(timeout=90) == "QUIET"
        except Exception:
            print(cluster.logs())
            raise
        assert worker.stats["completed"] == 1
    scheduled = [e.body for e in await h.history() if e.type == "ActivityScheduled"]
    assert [(b.activity_type, b.task_queue) for b in scheduled] == [("upper", "default")]


async def test_a_cancelled_sync_activity_stops_at_its_next_heartbeat(settings, cluster, client) -> None:  # type: ignore[no-untyped-def]
    compat_workflows.GRIND_STARTED.clear()
    compat_workflows.GRIND_ENDED.clear()
    async with ActivityWorker(settings, activities=[grind], concurrency=2) as worker:
        h = await client.start_workflow(CancelGrind.run, id="grind-1")
        started = await asyncio.get_running_loop().run_in_executor(None, compat_workflows.GRIND_STARTED.wait, 60)
        assert started, cluster.logs()
        t0 = time.monotonic()
        await h.signal(CancelGrind.cancel_grind)
        try:
            assert await h.result(timeout=60) == "cancelled"
        except Exception:
            print(cluster.logs())
            raise
        assert time.monotonic() - t0 < 30  # not the activity's 60 s: it stopped when cancelled
        assert compat_workflows.GRIND_ENDED == ["cancelled"]
        assert worker.stats["cancelled"] == 1 and worker.in_flight == 0
    types = [e.type for e in await h.history()]
    # (the worker's ActivityStarted report may land after the cancel request: it is not awaited)
    assert "ActivityCancelRequested" in types and "ActivityStarted" in types, types
    assert types[-2:] == ["ActivityCancelled", "WorkflowCompleted"], types


# ---------------------------------------------------------------- asynchronous completion
async def _token_of(cluster, workflow_id: str, timeout: float = 60.0) -> bytes:  # type: ignore[no-untyped-def]
    path = compat_workflows.token_path(workflow_id)
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no task token from the activity worker\n{cluster.logs()}"
        await asyncio.sleep(0.1)
    return path.read_bytes()


async def test_an_activity_completed_asynchronously_from_another_process(settings, cluster, client, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The activity runs in an activity worker process and returns without an outcome; the test's
    client (a third process) heartbeats it and completes it with the task token."""
    monkeypatch.setenv("AION_TEST_STATE", str(tmp_path))
    cluster.activities(concurrency=2, module="compat_workflows")
    h = await client.start_workflow(AwaitHandOff.run, "parcel", id="handoff-1")
    token = await _token_of(cluster, "handoff-1")
    handle = client.get_async_activity_handle(task_token=token)
    assert handle.attempt.workflow_id == "handoff-1" and handle.attempt.attempt == 1
    await handle.heartbeat("packing")
    await asyncio.sleep(1.0)  # the workflow is still waiting for its activity
    assert (await h.describe()).status == "RUNNING"
    await handle.complete("shipped parcel")
    try:
        assert await h.result(timeout=60) == "shipped parcel"
    except Exception:
        print(cluster.logs())
        raise
    types = [e.type for e in await h.history()]
    assert types.count("ActivityStarted") == 1 and types.count("ActivityCompleted") == 1, types
    completed = next(e.body for e in await h.history() if e.type == "ActivityCompleted")
    assert completed.attempt == 1
    # The task was done for the activity worker: not re-delivered, not run again.
    await asyncio.sleep(1.0)
    assert compat_workflows.token_path("handoff-1").with_suffix(".runs").read_text() == "1\n"


async def test_an_activity_failed_asynchronously(settings, cluster, client, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from aion.exceptions import ApplicationError

    monkeypatch.setenv("AION_TEST_STATE", str(tmp_path))
    cluster.activities(concurrency=2, module="compat_workflows")
    h = await client.start_workflow(AwaitHandOff.run, "crate", id="handoff-2")
    handle = client.get_async_activity_handle(task_token=await _token_of(cluster, "handoff-2"))
    await handle.fail(ApplicationError("out of crates", non_retryable=True))
    try:
        assert await h.result(timeout=60) == "failed: out of crates"
    except Exception:
        print(cluster.logs())
        raise
    failed = next(e.body for e in await h.history() if e.type == "ActivityFailed")
    assert failed.failure.message == "out of crates" and failed.will_retry is False


async def test_an_external_workflow_is_signalled_and_cancelled_by_id(settings, cluster, client) -> None:  # type: ignore[no-untyped-def]
    from compat_workflows import Courier, Inbox

    inbox = await client.start_workflow(Inbox.run, id="inbox-1")
    await client.execute_workflow(Courier.run, "inbox-1", id="courier-1", result_timeout=60)
    try:
        assert await inbox.result(timeout=60) == "cancelled holding ['parcel']"
    except Exception:
        print(cluster.logs())
        raise
    types = [e.type for e in await inbox.history()]
    assert "SignalReceived" in types and "WorkflowCancelRequested" in types, types


async def test_a_failed_child_is_retried_by_its_policy_through_the_engine(settings, cluster, client) -> None:  # type: ignore[no-untyped-def]
    from compat_workflows import RetryingParent

    h = await client.start_workflow(RetryingParent.run, 2, id="retrying-1")
    try:
        assert await h.result(timeout=90) == "attempt 3, memo {'team': 'ops'}"
    except Exception:
        print(cluster.logs())
        raise
    child = client.get_workflow_handle("retrying-1-child")
    d = await child.describe()
    assert (d.status, d.runs, d.attempt, d.memo) == ("COMPLETED", 3, 3, {"team": "ops"})
    types = [e.type for e in await child.history()]
    assert types.count("WorkflowFailed") == 2 and types.count("WorkflowStarted") == 3, types
    parent_types = [e.type for e in await h.history()]
    assert "ChildWorkflowCompleted" in parent_types and "ChildWorkflowFailed" not in parent_types


@pytest.mark.timeout(300)
async def test_a_cron_workflow_runs_each_minute_across_an_engine_kill(settings, cluster, client) -> None:  # type: ignore[no-untyped-def]
    """The first run waits for the next minute; the second run, scheduled by the first one's
    close, starts at the minute after although the engine that armed its timer was killed."""
    from compat_workflows import Minutely

    # Started in a minute's last moments, the first run would fire (and close) before describe()
    # reads the history: no first_task_at_ms then, or the next run's. Start early in a minute.
    if time.time() % 60 > 50:
        await asyncio.sleep(60.5 - time.time() % 60)
    h = await client.start_workflow(Minutely.run, id="minutely-1", cron_schedule="* * * * *")
    d = await h.describe()
    assert d.cron_schedule == "* * * * *" and d.first_task_at_ms is not None and d.first_task_at_ms % 60_000 == 0

    async def closed_runs(n: int, timeout: float) -> list[object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [e for e in await h.history() if e.type == "WorkflowCompleted"]
            if len(done) >= n:
                return done
            await asyncio.sleep(1)
        raise AssertionError(f"{n} cron runs did not complete in {timeout} s\n{cluster.logs()}")

    first = (await closed_runs(1, 90))[0]
    assert first.recorded_at_ms >= d.first_task_at_ms  # type: ignore[attr-defined]
    d2 = await h.describe()
    assert d2.status == "RUNNING" and d2.first_task_at_ms == d.first_task_at_ms + 60_000, d2
    cluster.procs[0].kill9()
    cluster.engine()
    second = (await closed_runs(2, 120))[1]
    assert client.converter.from_payload(second.body.result, int) == 2  # type: ignore[attr-defined]
    await h.cancel()
    deadline = time.monotonic() + 30
    while (await h.describe()).status != "CANCELLED":
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.5)


async def test_an_invalid_cron_schedule_is_refused_by_the_kafka_client(settings, cluster, client) -> None:  # type: ignore[no-untyped-def]
    from aion.exceptions import InvalidArgumentError
    from compat_workflows import Inbox

    with pytest.raises(InvalidArgumentError, match="not a valid 5-field cron expression"):
        await client.start_workflow(Inbox.run, id="nightly-1", cron_schedule="0 3 * *")
    assert await client.get_workflow_handle("nightly-1").history() == []
