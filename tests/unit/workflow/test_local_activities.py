"""workflow.execute_local_activity: Temporal's signature, run as an ordinary activity."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aion import RetryPolicy, activity, workflow
from aion.testing import WorkflowEnvironment

_attempts: dict[str, int] = {}


@activity.defn
def lookup(key: str) -> str:
    n = _attempts[key] = _attempts.get(key, 0) + 1
    if n == 1:
        raise RuntimeError("cold cache")
    return f"{key}={n}"


class Store:
    def __init__(self) -> None:
        self.puts: list[str] = []

    @activity.defn
    async def put(self, key: str) -> int:
        self.puts.append(key)
        return len(self.puts)


@workflow.defn
class UsesLocal:
    @workflow.run
    async def run(self, key: str) -> list:
        fast = RetryPolicy(initial_interval=timedelta(milliseconds=10))
        value = await workflow.execute_local_activity(
            lookup, key, start_to_close_timeout=timedelta(seconds=5), retry_policy=fast,
            local_retry_threshold=timedelta(seconds=1))
        n = await workflow.execute_local_activity_method(Store.put, key, schedule_to_close_timeout=timedelta(seconds=5))
        m = await workflow.start_local_activity_method(Store.put, key + "!", start_to_close_timeout=timedelta(seconds=5))
        return [value, n, m]


async def test_local_activities_run_as_activities_on_the_workflow_queue() -> None:
    _attempts.clear()
    store = Store()
    async with WorkflowEnvironment.start_time_skipping(workflows=[UsesLocal], activities=[lookup, store.put]) as env:
        h = await env.client.start_workflow(UsesLocal.run, "k", id="local-1", task_queue="orders")
        assert await h.result() == ["k=2", 1, 2]
        history = env.history("local-1")
    scheduled = [e.body for e in history if e.type == "ActivityScheduled"]
    assert [(b.activity_type, b.task_queue) for b in scheduled] == [("lookup", "orders"), ("put", "orders"), ("put", "orders")]
    # retried by the engine like any activity: the failed attempt is in the history
    assert [e.body.will_retry for e in history if e.type == "ActivityFailed"] == [True]
    assert store.puts == ["k", "k!"]


def test_local_activities_take_no_task_queue_or_heartbeat_timeout_as_in_temporal() -> None:
    with pytest.raises(TypeError):
        workflow.start_local_activity(lookup, "k", task_queue="elsewhere")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        workflow.start_local_activity(lookup, "k", heartbeat_timeout=timedelta(seconds=1))  # type: ignore[call-arg]
