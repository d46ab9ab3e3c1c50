"""Prometheus metrics and health of real worker processes (--metrics-port): an engine worker and
an activity worker run real workflows through Kafka; their /metrics move by what ran, their
/healthz and /readyz answer, and no label holds a workflow id."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from aion.testing.ports import free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scrape(port: int) -> Samples:
    code, body = get(port, "/metrics")
    assert code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


async def until(fn: Any, timeout: float, what: str, cluster: Any) -> Any:
    """Poll ``fn()`` until it returns a true value (connection errors count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except OSError as exc:  # not listening yet
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not reached in {timeout:g} s (last: {last!r})\n{cluster.logs()}")


def L(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


async def test_engine_and_activity_worker_metrics_and_health(cluster, client, settings):  # type: ignore[no-untyped-def]
    eport, aport = free_port(), free_port()
    cluster.engine(metrics_port=eport)
    cluster.activities(metrics_port=aport)

    # the engine is ready once its group gave it the partitions and they are caught up
    await until(lambda: get(eport, "/readyz")[0] == 200, 90, "engine /readyz", cluster)
    health = json.loads(get(eport, "/healthz")[1])
    assert health["role"] == "engine" and health["alive"] and health["ready"]
    assert health["partitions"] == list(range(settings.partitions))
    assert health["generation"] >= 1 and abs(health["generation_at_ms"] / 1000 - time.time()) < 300
    await until(lambda: get(aport, "/readyz")[0] == 200, 60, "activity worker /readyz", cluster)
    assert json.loads(get(aport, "/healthz")[1])["task_queue"] == "default"

    tag = uuid.uuid4().hex[:8]
    hellos = [await client.start_workflow("Hello", f"n{i}", id=f"metrics-hello-{tag}-{i}") for i in range(3)]
    approval = await client.start_workflow("Approval", 1, id=f"metrics-approval-{tag}")
    sleeper = await client.start_workflow("Sleeper", 0.2, id=f"metrics-sleeper-{tag}")
    assert [await h.result(timeout=60) for h in hellos] == ["Hello, n0!", "Hello, n1!", "Hello, n2!"]
    await approval.signal("decide", "yes")
    assert await approval.result(timeout=60) == ["yes"]
    assert await sleeper.result(timeout=60) == "rested"
    ids = {h.id for h in hellos} | {approval.id, sleeper.id}

    completed = ("aion_workflows_completed_total", L(workflow_type="Sleeper", status="COMPLETED"))
    # a reply reaches the client as its transaction commits: the counters follow within moments
    e = await until(lambda: (s := scrape(eport)).get(completed) == 1 and s, 15, "engine counters", cluster)
    assert e[("aion_workflows_started_total", L(workflow_type="Hello"))] == 3
    assert e[("aion_workflows_completed_total", L(workflow_type="Hello", status="COMPLETED"))] == 3
    assert e[("aion_workflows_completed_total", L(workflow_type="Approval", status="COMPLETED"))] == 1
    assert e[("aion_activities_dispatched_total", L(activity_type="greet", task_queue="default"))] == 3
    assert e[("aion_activities_completed_total", L(activity_type="greet", task_queue="default", status="COMPLETED"))] == 3
    assert e[("aion_signals_delivered_total", L(workflow_type="Approval"))] == 1
    assert e[("aion_timers_fired_total", L(workflow_type="Sleeper"))] == 1
    assert e[("aion_timer_fire_lag_seconds_count", L(workflow_type="Sleeper"))] == 1
    assert e[("aion_workflow_end_to_end_seconds_count", L(workflow_type="Hello", status="COMPLETED"))] == 3
    # Hello: started, activity started + completed (one step), closed: one or more steps per command
    assert e[("aion_workflow_step_seconds_count", L(workflow_type="Hello"))] >= 6
    assert e[("aion_workflow_end_to_end_seconds_sum", L(workflow_type="Sleeper", status="COMPLETED"))] >= 0.2
    assert e[("aion_append_seconds_count", ())] >= 1 and e[("aion_batch_size_count", ())] >= 1
    assert e[("aion_events_recorded_total", ())] >= 3 * 5
    assert e.get(("aion_dead_letters_total", ()), 0) == 0
    assert e[("aion_partitions_owned", ())] == settings.partitions
    assert e[("aion_catch_up_seconds_count", ())] >= 1
    assert sum(v for (n, _), v in e.items() if n == "aion_workflows_resident") >= 5
    assert e[("aion_workflow_cache_hits_total", ())] >= 1
    assert e[("aion_engine_commands_total", ())] >= 5
    assert any(n == "aion_command_lag" for n, _ in e)
    assert any(n == "process_cpu_seconds_total" for n, _ in e)

    a = scrape(aport)
    greet = L(activity_type="greet", task_queue="default")
    assert a[("aion_activity_attempts_total", L(activity_type="greet", task_queue="default", outcome="completed"))] == 3
    assert a[("aion_activity_schedule_to_start_seconds_count", greet)] == 3
    assert a[("aion_activity_execution_seconds_count", L(activity_type="greet", task_queue="default",
                                                         outcome="completed"))] == 3
    assert a[("aion_activities_in_flight", L(task_queue="default"))] == 0
    assert a[("aion_activity_slots", L(task_queue="default"))] == 50

    # bounded labels: no workflow id (nor run id) anywhere
    for samples in (e, a):
        values = {v for _, labels in samples for _, v in labels}
        assert not values & ids, values & ids
        assert not [v for v in values if tag in v]


async def test_status_shows_workers_partitions_lag_timers_and_dead_letters(cluster, client, settings):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from confluent_kafka import Producer

    from aion.engine.topics import TopicNames
    from aion.ops._status import cluster_status

    eport = free_port()
    cluster.engine(metrics_port=eport)
    cluster.activities()
    await until(lambda: get(eport, "/readyz")[0] == 200, 90, "engine /readyz", cluster)
    tag = uuid.uuid4().hex[:8]
    h = await client.start_workflow("Hello", "status", id=f"status-hello-{tag}")
    assert await h.result(timeout=60) == "Hello, status!"
    await client.start_workflow("Sleeper", 3600.0, id=f"status-sleeper-{tag}")  # one timer, an hour away
    p = Producer(settings.confluent_config())
    p.produce(TopicNames(settings.topic_prefix).commands, key=b"garbage", value=b"not a command")  # -> the DLQ
    assert p.flush(10) == 0

    seen: list[Any] = []

    def settled() -> Any:
        st = cluster_status(settings)
        seen[:] = [st]
        done = st.dead_letters == 1 and sum(x.timers_pending or 0 for x in st.partitions) >= 1 \
            and all(x.lag == 0 for x in st.partitions) and len(st.activity_workers) == 1
        return done and st

    try:
        st = await until(settled, 60, "status", cluster)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast status: {seen}") from None
    assert st.engine is not None and len(st.engine.members) == 1
    assert st.engine.members[0].partitions == list(range(settings.partitions))
    assert [x.partition for x in st.partitions] == list(range(settings.partitions))
    assert all(x.owner and (x.position == x.end_offset or x.position is None and x.end_offset == 0)
               for x in st.partitions)
    (queue,) = st.activity_workers
    assert queue.task_queue == "default" and len(queue.members) == 1
    assert sorted(queue.members[0].partitions) == list(range(settings.partitions))

    env = dict(cluster.env)
    out = subprocess.run([sys.executable, "-m", "aion.cli", "status", "--json"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["dead_letters"] == 1 and doc["engine"]["members"][0]["partitions"] == list(range(settings.partitions))
    text = subprocess.run([sys.executable, "-m", "aion.cli", "status"], env=env, capture_output=True, text=True,
                          timeout=120).stdout
    assert "dead letters 1" in text and "command lag 0" in text, text
