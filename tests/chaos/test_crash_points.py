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


async def test_timer_terminal_rows_survive_a_crash_right_after_the_fire_is_recorded(
        kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    """The worker dies after the batch with ``TimerFired`` + ``WorkflowCompleted`` is on the
    events topic but before its ``timer_terminal`` rows reach their changelog. The next owner
    (fresh data folder) must still end with the rows a rebuild derives (the run's closed marker)."""
    from aion.engine._rebuild import rebuild_tables

    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=1,
                        data_dir=tmp_path)
    ensure_topics(settings)
    cluster = ChaosCluster(settings, tmp_path)
    client = await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings)
    try:
        crashing = cluster.engine(AION_FAULT="after_fire_recorded")
        cluster.activities()
        h = await client.start_workflow("ActivityFlow", "k", 0, id="crash-1")  # activity, 200 ms timer, done
        await _wait(lambda: not crashing.alive(), 60, "the engine did not crash at after_fire_recorded")
        assert "AION_FAULT=after_fire_recorded" in crashing.tail()
        history = await h.history()
        assert [e.type for e in history][-2:] == ["TimerFired", "WorkflowCompleted"]

        survivor = cluster.engine()  # a fresh data folder: only the changelogs to restore from
        # A workflow after it on the same (only) partition: once it completes, the crashed
        # batch's command was re-delivered and handled by the survivor.
        assert await client.execute_workflow("ActivityFlow", "later", 0, id="crash-2", result_timeout=60) == "done:later"
        survivor.stop()
        report = rebuild_tables(settings.replace(data_dir=survivor.data_dir), swap=False)
        assert {d.table: d.matches for d in report.digests} == {d.table: True for d in report.digests}, [
            (d.table, d.only_old, d.only_new, d.different) for d in report.digests if not d.matches]
    finally:
        await client.close()
        cluster.stop()
