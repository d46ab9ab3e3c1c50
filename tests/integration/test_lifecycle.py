"""Operator actions on running workflows, through engine processes on the real broker."""

from __future__ import annotations

import asyncio

import pytest

from aion.exceptions import WorkflowNotFoundError, WorkflowStateError


@pytest.fixture
def cluster(make_cluster):  # type: ignore[no-untyped-def]
    c = make_cluster()  # the topics first: the client needs them
    c.engine_proc = c.engine()
    c.activities()
    return c


def kinds(events) -> list[str]:  # type: ignore[no-untyped-def]
    return [type(e.body).__name__ for e in events]


async def test_a_pause_holds_dispatches_across_a_kill_and_the_resume_sends_them(cluster, client):  # type: ignore[no-untyped-def]
    engine = cluster.engine_proc
    h = await client.start_workflow("GatedGreeting", "paused", id="pause-1")
    await h.pause("maintenance")
    await h.signal("open")  # the code runs and schedules the activity: its dispatch is held
    for _ in range(100):
        if "ActivityScheduled" in kinds(await h.history()):
            break
        await asyncio.sleep(0.1)
    d = await h.describe()
    assert d.paused and d.status == "RUNNING"

    # The pause is in the history: the engine that takes over after a kill -9 keeps it.
    engine.kill9()
    cluster.engine()
    with pytest.raises(WorkflowStateError, match="already paused"):
        await h.pause()
    await asyncio.sleep(2.0)
    history = await h.history()
    assert "ActivityScheduled" in kinds(history) and "ActivityStarted" not in kinds(history), kinds(history)

    await h.resume("done")
    assert await h.result(timeout=60) == "Hello, paused!"
    history = kinds(await h.history())
    assert history.index("WorkflowPaused") < history.index("SignalReceived") < history.index("WorkflowResumed") \
        < history.index("ActivityStarted")
    with pytest.raises(WorkflowNotFoundError, match="not running"):
        await h.resume()


async def test_resume_of_a_running_workflow_that_is_not_paused_is_refused(cluster, client):  # type: ignore[no-untyped-def]
    h = await client.start_workflow("Approval", 1, id="pause-2")
    with pytest.raises(WorkflowStateError, match="neither paused nor held"):
        await h.resume()
    await h.signal("decide", "ok")
    assert await h.result(timeout=60) == ["ok"]
