"""Crashes at exact points (``AION_FAULT``), then: the workflow goes on and the new owner's
tables equal a rebuild from the events topic.

The chaos test kills at random moments; these pin the narrow windows it found, so that a
regression fails every time instead of once in a while.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from aion.client import Client
from aion.engine.settings import Settings
from aion.engine.topics import ensure_topics

from chaos_cluster import ChaosCluster

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


async def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f}s")
        await asyncio.sleep(0.1)


@pytest.fixture
async def one_partition(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """One partition (every workflow on the crashing worker), a process cluster and a client
    patient enough for a hand-over (the crashed member's session timeout plus the survivor's
    start-up); all stopped afterwards. Engines get a 6 s session timeout (the broker's
    minimum), so the survivor takes over sooner."""
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=1,
                        data_dir=tmp_path)
    ensure_topics(settings)
    cluster = ChaosCluster(settings, tmp_path)
    client = await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings,
                                  rpc_timeout=90.0)
    try:
        yield settings, cluster, client
    finally:
        await client.close()
        cluster.stop()


@pytest.mark.parametrize("workflow,args,crashed_in,last,result", [
    # activity, then a 200 ms timer whose fire completes the run: the closed-run marker
    ("ActivityFlow", ["k", 0], "crash-1", ["TimerFired", "WorkflowCompleted"], "done:k"),
    # a timer fires inside a 300 s timeout: the same step cancels the timeout's (far) timer
    ("NapFlow", [200], "crash-1", ["TimerFired", "TimerCancelled", "WorkflowCompleted"], "rested"),
    # the child's last timer completes it: the step's effect is the result to the parent
    ("ParentFlow", [4], "crash-1-child", ["TimerFired", "WorkflowCompleted"], 41),
])
async def test_a_crash_right_after_a_fire_is_recorded(
        workflow: str, args: list[object], crashed_in: str, last: list[str], result: object,
        one_partition: tuple[Settings, ChaosCluster, Client], monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker dies once the batch with the fire is on the events topic, before the batch's
    effects (the dropped timer's ``timers`` rows, a child's result to its parent) and its
    ``timer_terminal`` rows reach Kafka. The next owner (fresh data folder: only the
    changelogs to restore from; its history caught up from the events topic before Faust's
    recovery) must finish the workflow and end with the tables a rebuild derives from the
    events topic."""
    from aion.engine._rebuild import rebuild_tables

    settings, cluster, client = one_partition
    crashing = cluster.engine(AION_FAULT="after_fire_recorded", AION_SESSION_TIMEOUT="6")
    cluster.activities()
    h = await client.start_workflow(workflow, *args, id="crash-1")
    await _wait(lambda: not crashing.alive(), 60, "the engine did not crash at after_fire_recorded")
    assert "AION_FAULT=after_fire_recorded" in crashing.tail()
    history = await client.get_workflow_handle(crashed_in).history()
    assert [e.type for e in history][-len(last):] == last

    monkeypatch.setenv("AION_CHAOS_ENGINE_LOGLEVEL", "info")
    survivor = cluster.engine(AION_SESSION_TIMEOUT="6")  # a fresh data folder: only the changelogs to restore from
    assert await h.result(timeout=60) == result
    # A workflow after it on the same (only) partition: once it completes, the crashed
    # batch's command was re-delivered and handled by the survivor.
    assert await client.execute_workflow("ActivityFlow", "later", 0, id="crash-2", result_timeout=60) == "done:later"
    survivor_log = survivor.log.read_text(errors="replace")
    assert "history: caught up" in survivor_log and "workflows: caught up" in survivor_log
    survivor.stop()
    report = rebuild_tables(settings.replace(data_dir=survivor.data_dir), swap=False)
    assert {d.table: d.matches for d in report.digests} == {d.table: True for d in report.digests}, [
        (d.table, d.only_old, d.only_new, d.different) for d in report.digests if not d.matches]


@pytest.mark.parametrize("workflow,args,result", [
    ("ActivityFlow", ["k", 0], "done:k"),  # WorkflowStarted | ActivityScheduled
    ("TimerFlow", [3], 13),  # WorkflowStarted | TimerStarted
])
async def test_a_crash_inside_a_step_append_is_repaired(
        workflow: str, args: list[object], result: object, one_partition: tuple[Settings, ChaosCluster, Client]) -> None:
    """The worker dies after the first event of the start's step reached Kafka and before the
    rest did (two produce requests). The next owner replays a history that ends inside the
    step; the re-delivered start (a duplicate by its command id) must record what the step
    still owes, once, under the start's command id, and the workflow must finish."""
    _, cluster, client = one_partition
    crashing = cluster.engine(AION_FAULT="mid_step_append", AION_SESSION_TIMEOUT="6")
    cluster.activities()
    # The start's answer comes from the survivor (the crashed worker never sent it).
    starting = asyncio.ensure_future(client.start_workflow(workflow, *args, id="cut-1"))
    await _wait(lambda: not crashing.alive(), 60, "the engine did not crash at mid_step_append")
    assert "AION_FAULT=mid_step_append" in crashing.tail()
    history = await client.get_workflow_handle("cut-1").history()
    assert [e.type for e in history] == ["WorkflowStarted"]

    cluster.engine(AION_SESSION_TIMEOUT="6")
    h = await starting
    assert await h.result(timeout=90) == result
    history = await h.history()
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    start_cid = history[0].command_id
    assert history[1].type in ("ActivityScheduled", "TimerStarted") and history[1].command_id == start_cid
    assert sum(e.type == history[1].type and e.command_id == start_cid for e in history) == 1



async def test_command_records_lost_inside_the_worker_are_read_again(
        one_partition: tuple[Settings, ChaosCluster, Client]) -> None:
    """Faust's stream can drop a fetched record (its buffer is cleared when flow resumes after
    a rebalance) while the fetch position moves past it. ``AION_FAULT=drop_command`` throws the
    records at offsets 1 and 3 away the same way. The intake must read them again: offset 1
    from the high watermark (nothing follows it), offset 3 from the hole offset 4 shows.
    Every signal is answered and recorded once."""
    _, cluster, client = one_partition
    engine = cluster.engine(AION_FAULT="drop_command")
    h = await client.start_workflow("SignalFlow", 4, id="lost-1")  # offset 0
    await asyncio.wait_for(h.signal("add", 1), 60)  # offset 1: dropped, the partition's last
    await asyncio.wait_for(h.signal("add", 2), 60)  # offset 2
    await asyncio.wait_for(asyncio.gather(h.signal("add", 3), h.signal("add", 4)), 60)  # 3 dropped, 4 shows the hole
    assert await h.result(timeout=60) == 10
    log = engine.tail(200)
    assert log.count("AION_FAULT=drop_command") == 2, log
    assert "no record for" in log and "arrived" in log, log  # both ways of finding a loss
    assert [e.type for e in await h.history()].count("SignalReceived") == 4
    assert engine.alive()
