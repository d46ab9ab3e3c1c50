"""Reopen through engine processes on the real broker: a FAILED or CANCELLED run goes on, across
an engine stalled past its session timeout, a kill -9 and a hostile record on the commands topic."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest
from confluent_kafka import Producer

from aion.engine.topics import TopicNames
from aion.exceptions import WorkflowFailureError, WorkflowStateError
from aion.model import ActivityStarted, TimerFired, TimerStarted, WorkflowReopened
from aion.testing import check_events_topic


@pytest.fixture
def cluster(make_cluster):  # type: ignore[no-untyped-def]
    c = make_cluster()
    c.engine_proc = c.engine()
    c.activities()
    return c


def bodies(history, kind):  # type: ignore[no-untyped-def]
    return [e.body for e in history if isinstance(e.body, kind)]


async def test_exhausted_retries_then_a_reopen_continues_at_attempt_4_on_an_engine_that_took_over(cluster, client, settings):  # type: ignore[no-untyped-def]
    h = await client.start_workflow("RetryThree", "reopen-1", 3, id="reopen-1")
    with pytest.raises(WorkflowFailureError, match="attempt 3 of reopen-1 fails on purpose"):
        await h.result(timeout=60)
    # A hostile record for the same workflow: dead-lettered, nothing else lost.
    p = Producer({"bootstrap.servers": settings.bootstrap_servers})
    p.produce(TopicNames(settings.topic_prefix).commands, key=b"reopen-1", value=b"\xc3\x01not avro at all")
    assert p.flush(10) == 0
    first = cluster.engine_proc
    assert first.p is not None
    os.killpg(first.p.pid, signal.SIGSTOP)  # stalled past its session timeout, not killed
    try:
        cluster.engine()
        await asyncio.wait_for(h.reopen("the card service is back"), timeout=90)
        assert await h.result(timeout=60) == "ok after 4"
    finally:
        os.killpg(first.p.pid, signal.SIGCONT)
    await asyncio.sleep(settings.session_timeout + 2)  # the stalled engine wakes up: it may write nothing
    history = await h.history()
    assert [b.attempt for b in bodies(history, ActivityStarted)] == [1, 2, 3, 4]
    reopens = bodies(history, WorkflowReopened)
    assert len(reopens) == 1 and reopens[0].reason == "the card service is back"
    d = await h.describe()
    assert d.status == "COMPLETED" and d.reopens == 1
    # The log keeps every invariant once what the reopen took back is set aside.
    (await asyncio.to_thread(check_events_topic, settings)).raise_for_violations()


async def test_a_cancelled_run_reopened_after_a_kill_fires_its_timer_at_the_original_time(cluster, client, settings):  # type: ignore[no-untyped-def]
    h = await client.start_workflow("Sleeper", 4.0, id="reopen-2")
    await asyncio.sleep(0.5)
    await h.cancel("by mistake")
    with pytest.raises(WorkflowFailureError, match="CANCELLED"):
        await h.result(timeout=30)
    cluster.engine_proc.kill9()
    cluster.engine()
    await h.reopen()
    assert await h.result(timeout=60) == "rested"
    history = await h.history()
    fire_at = bodies(history, TimerStarted)[0].fire_at_ms
    fired = next(e for e in history if isinstance(e.body, TimerFired))
    assert fire_at <= fired.recorded_at_ms < fire_at + 10_000  # its own time, not 4 s after the reopen
    assert (await h.describe()).reopens == 1
    (await asyncio.to_thread(check_events_topic, settings)).raise_for_violations()


async def test_reopen_is_refused_for_a_completed_run_and_through_the_cli_with_its_status(cluster, client):  # type: ignore[no-untyped-def]
    h = await client.start_workflow("Hello", "done", id="reopen-3")
    assert await h.result(timeout=60) == "Hello, done!"
    n = len(await h.history())
    with pytest.raises(WorkflowStateError, match="ended COMPLETED"):
        await h.reopen()
    cli = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "aion.cli", "workflow", "reopen", "reopen-3"],
                                  env=cluster.env, capture_output=True, text=True, timeout=120)
    assert cli.returncode != 0 and "ended COMPLETED" in cli.stdout + cli.stderr, cli
    assert len(await h.history()) == n  # nothing recorded

    failed = await client.start_workflow("RetryThree", "reopen-4", 3, id="reopen-4")
    with pytest.raises(WorkflowFailureError):
        await failed.result(timeout=60)
    cli = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "aion.cli", "workflow", "reopen", "reopen-4",
                                                   "--reason", "from the CLI"],
                                  env=cluster.env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "reopened" in cli.stdout, cli
    assert await failed.result(timeout=60) == "ok after 4"
