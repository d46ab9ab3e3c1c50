"""The engine through real Kafka: engine worker and activity worker processes, the Kafka client."""

from __future__ import annotations

import asyncio

import pytest

from aion.exceptions import WorkflowAlreadyStartedError, WorkflowFailureError



def types(history) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.type for e in history]


async def test_hello_world_history(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    cluster.activities()
    h = await client.start_workflow("Hello", "Kafka", id="hello-1")
    try:
        assert await h.result(timeout=60) == "Hello, Kafka!"
    except Exception:
        print(cluster.logs())
        raise
    history = await h.history()
    assert types(history) == ["WorkflowStarted", "ActivityScheduled", "ActivityStarted", "ActivityCompleted", "WorkflowCompleted"]
    assert [e.seq for e in history] == [1, 2, 3, 4, 5]


async def test_retries_then_success_and_exhausted(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    cluster.activities()
    ok = await client.start_workflow("Retrying", "k1", 2, id="retry-ok")
    bad = await client.start_workflow("Retrying", "k2", 99, id="retry-exhausted")
    assert await ok.result(timeout=60) == "ok after 3"
    failed = [e for e in await ok.history() if e.type == "ActivityFailed"]
    assert [(e.body.attempt, e.body.will_retry) for e in failed] == [(1, True), (2, True)]
    with pytest.raises(WorkflowFailureError):
        await bad.result(timeout=60)
    failed = [e for e in await bad.history() if e.type == "ActivityFailed"]
    assert [e.body.attempt for e in failed] == [1, 2, 3, 4, 5]
    assert failed[-1].body.will_retry is False


async def test_non_retryable_error(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    cluster.activities()
    h = await client.start_workflow("NonRetryable", id="nonretry")
    with pytest.raises(WorkflowFailureError) as info:
        await h.result(timeout=60)
    assert "card declined" in str(info.value.__cause__ or info.value) or "card declined" in repr(info.value.failure)
    assert len([e for e in await h.history() if e.type == "ActivityFailed"]) == 1


async def test_start_to_close_timeout_retries_hung_activity(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    cluster.activities()
    h = await client.start_workflow("HungActivity", id="hung")
    with pytest.raises(WorkflowFailureError):
        await h.result(timeout=60)
    timed_out = [e for e in await h.history() if e.type == "ActivityTimedOut"]
    assert [(e.body.attempt, e.body.timeout_type) for e in timed_out] == [(1, "START_TO_CLOSE"), (2, "START_TO_CLOSE")]


async def test_fan_out_50(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    cluster.activities()
    h = await client.start_workflow("FanOut", 50, id="fan")
    assert await h.result(timeout=90) == [2 * i for i in range(50)]


async def test_signals_queries_and_signal_with_start(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    h = await client.start_workflow("Approval", 2, id="approve-1")
    assert await h.query("status") == "waiting:0"
    await h.signal("decide", "yes")
    await h.signal("decide", "no")
    assert await h.result(timeout=60) == ["yes", "no"]
    assert await h.query("status") == "decided:2"
    n = len(await h.history())
    await h.query("status")
    assert len(await h.history()) == n  # queries never append history
    h2 = await client.signal_with_start("Approval", 1, id="approve-2", signal="decide", signal_args=["maybe"])
    assert await h2.result(timeout=60) == ["maybe"]


async def test_child_workflows(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    ok = await client.start_workflow("Parent", 4, id="parent-ok")
    bad = await client.start_workflow("Parent", -1, id="parent-bad")
    assert await ok.result(timeout=60) == "child said 40"
    assert (await bad.result(timeout=60)).startswith("child failed")


async def test_continue_as_new_keeps_id_new_run(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    h = await client.start_workflow("Counter", 0, 3, id="counter")
    assert await h.result(timeout=60) == 3
    history = await h.history()
    assert types(history).count("WorkflowContinuedAsNew") == 3
    assert len({e.run_id for e in history}) == 4


async def test_cancel_with_compensation_and_terminate(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    cluster.activities()
    h = await client.start_workflow("Saga", id="saga-1")
    for _ in range(100):
        if "ActivityStarted" in types(await h.history()):
            break
        await asyncio.sleep(0.1)
    await h.cancel("changed my mind")
    with pytest.raises(WorkflowFailureError):
        await h.result(timeout=60)
    t = types(await h.history())
    assert "WorkflowCancelRequested" in t and t[-1] == "WorkflowCancelled"
    assert t.count("ActivityCompleted") == 1  # the compensation ran
    s = await client.start_workflow("Sleeper", 3600, id="sleeper-1")
    await s.terminate("enough")
    with pytest.raises(WorkflowFailureError):
        await s.result(timeout=30)
    assert types(await s.history())[-1] == "WorkflowTerminated"


async def test_duplicate_start_refused(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    await client.start_workflow("Sleeper", 3600, id="dup-1")
    with pytest.raises(WorkflowAlreadyStartedError):
        await client.start_workflow("Sleeper", 3600, id="dup-1")


async def test_events_stream_live(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    cluster.activities()
    h = await client.start_workflow("Steps", 3, id="steps-live")
    seen = []
    async for ev in h.events(from_seq=1):
        seen.append(ev.type)
    assert seen[0] == "WorkflowStarted" and seen[-1] == "WorkflowCompleted"
    assert seen.count("ActivityCompleted") == 3


async def test_failover_to_second_engine(cluster, client):  # type: ignore[no-untyped-def]
    first = cluster.engine()
    cluster.activities()
    handles = [await client.start_workflow("Steps", 6, id=f"failover-{i}") for i in range(6)]
    await asyncio.sleep(1.5)
    second = cluster.engine()
    await asyncio.sleep(1.0)
    first.stop()
    results = await asyncio.gather(*(h.result(timeout=120) for h in handles))
    assert results == [sum(2 * i for i in range(6))] * 6
    assert second.alive()


async def test_heartbeat_timeout_retries_the_activity(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    cluster.activities()
    h = await client.start_workflow("HeartbeatTimeout", "hb1", id="hb-1")
    assert await h.result(timeout=60) == "attempt 2"
    timed_out = [e for e in await h.history() if e.type == "ActivityTimedOut"]
    assert [(e.body.attempt, e.body.timeout_type) for e in timed_out] == [(1, "HEARTBEAT")]


async def test_server_initiated_cancellation_reaches_the_activity(cluster, client, tmp_path):  # type: ignore[no-untyped-def]
    cluster.engine()
    cluster.activities()
    h = await client.start_workflow("CancelActivity", "c1", id="cancel-act-1")
    assert (await h.result(timeout=60)).startswith("activity ended")
    for _ in range(50):
        if (tmp_path / "cancelled-c1").exists():
            break
        await asyncio.sleep(0.1)
    assert (tmp_path / "cancelled-c1").read_text() == "cancelled"
    assert "ActivityCancelRequested" in types(await h.history())


async def test_parent_close_policies(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    parent = await client.start_workflow("ClosingParent", False, id="pcp")
    assert await parent.result(timeout=60) == "parent done"

    async def last_type(wid: str) -> str:
        for _ in range(100):
            t = types(await client.get_workflow_handle(wid).history())
            if t and t[-1] in ("WorkflowTerminated", "WorkflowCancelled", "WorkflowCompleted"):
                return t[-1]
            await asyncio.sleep(0.2)
        return t[-1] if t else ""

    assert await last_type("pcp-terminate") == "WorkflowTerminated"
    assert await last_type("pcp-request_cancel") in ("WorkflowCancelled",)
    t = types(await client.get_workflow_handle("pcp-abandon").history())
    assert t[-1] in ("TimerStarted",) and "WorkflowTerminated" not in t  # abandoned: still running
    assert await client.get_workflow_handle("pcp-abandon").describe()


async def test_list_workflows_from_the_visibility_index(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    cluster.activities()
    await client.execute_workflow("Hello", "a", id="list-done")
    await client.start_workflow("Approval", 5, id="list-waiting")
    for _ in range(50):
        rows = await client.list_workflows()
        if {r.workflow_id for r in rows} >= {"list-done", "list-waiting"}:
            break
        await asyncio.sleep(0.2)
    by_id = {r.workflow_id: r for r in rows}
    assert by_id["list-done"].status == "COMPLETED" and by_id["list-done"].workflow_type == "Hello"
    assert by_id["list-waiting"].status == "RUNNING"
    assert [r.workflow_id for r in await client.list_workflows(status="RUNNING")] == ["list-waiting"]
    assert [r.workflow_id for r in await client.list_workflows(type="Hello")] == ["list-done"]


def _task_records(settings):  # type: ignore[no-untyped-def]
    """(partition, workflow id) of every committed record on the default task queue's topic."""
    from aion.common.topics import TopicNames
    from aion.engine._changelog import scan_events

    topic = TopicNames(settings.topic_prefix).activity_tasks("default")
    return [(p, key.decode().rpartition("/")[0]) for p, _, key, _ in scan_events(settings, topic=topic)]


async def test_activity_tasks_go_to_the_partition_of_their_workflow(cluster, client, settings):  # type: ignore[no-untyped-def]
    """The task queue's topic has as many partitions as the commands topic (as the engine makes
    it): a workflow's tasks go to the partition with its own partition's number, so a batch's
    transaction writes one task partition, not one per task (README, Performance)."""
    from aion.codec import partition_for

    cluster.engine()
    cluster.activities()
    handles = [await client.start_workflow("FanOut", 5, id=f"fan-part-{i}") for i in range(8)]
    for h in handles:
        assert await h.result(timeout=90) == [0, 2, 4, 6, 8]
    tasks = _task_records(settings)
    assert len(tasks) >= 40
    assert [(p, wid) for p, wid in tasks if p != partition_for(wid, settings.partitions)] == []
    assert len({p for p, _ in tasks}) > 1


async def test_a_task_topic_with_other_partitions_gets_tasks_by_key(make_cluster, settings):  # type: ignore[no-untyped-def]
    """A task queue's topic created beforehand with another partition count (3, the commands
    topic 4) keeps key partitioning: every partition of it gets tasks, and they all run."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from aion.client import Client
    from aion.common.topics import TopicNames

    topic = TopicNames(settings.topic_prefix).activity_tasks("default")
    admin = AdminClient(settings.confluent_config())
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
    cluster = make_cluster()
    cluster.engine()
    cluster.activities()
    client = await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings,
                                  rpc_timeout=90.0)
    try:
        h = await client.start_workflow("FanOut", 30, id="fan-by-key")
        assert await h.result(timeout=90) == [2 * i for i in range(30)]
    finally:
        await client.close()
    tasks = _task_records(settings)
    assert len(tasks) == 30
    assert {p for p, _ in tasks} == {0, 1, 2}
