"""Schedules through real Kafka and a real engine: each overlap policy, live firing with
deterministic ids, pause/resume/update/delete, the listing and the CLI (issue 5)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from aion.bench._timers import read_events
from aion.client._schedules import ScheduleAlreadyExistsError, ScheduleNotFoundError, ScheduleSpecError
from aion.engine._schedules import target_workflow_id


INTERVAL_MS = 2_000
RUN_MS = 4_500  # each started workflow spans two more fires




@pytest.fixture
def cluster(make_cluster):  # type: ignore[no-untyped-def]
    return make_cluster("timer_workflows")


def runs_of(histories, schedule_id: str) -> list[tuple[str, int, int | None, str]]:  # type: ignore[no-untyped-def]
    """(workflow id, started at, closed at, close type) of what the schedule started, by id."""
    out = []
    for wid, events in sorted(histories.items()):
        if not wid.startswith(schedule_id + "-"):
            continue
        closed = [e for e in events if e.type in ("WorkflowCompleted", "WorkflowCancelled", "WorkflowFailed",
                                                   "WorkflowTerminated")]
        out.append((wid, events[0].recorded_at_ms, closed[0].recorded_at_ms if closed else None,
                    closed[0].type if closed else "RUNNING"))
    return out


async def test_each_overlap_policy(cluster, client, settings):  # type: ignore[no-untyped-def]
    cluster.engine()
    await (await client.start_workflow("Target", 0, id="warmup")).result(timeout=60)
    handles = {}
    for policy in ("SKIP", "BUFFER_ONE", "CANCEL_OTHER", "ALLOW_ALL"):
        sid = f"ov-{policy.lower().replace('_', '')}"
        handles[policy] = await client.create_schedule(sid, interval=INTERVAL_MS / 1000, workflow="Target",
                                                       args=[RUN_MS], overlap=policy)
    with pytest.raises(ScheduleAlreadyExistsError):
        await client.create_schedule("ov-skip", interval=5, workflow="Target")
    await asyncio.sleep(11.5)
    descriptions = {p: await h.describe() for p, h in handles.items()}
    for h in handles.values():
        await h.delete()
    await asyncio.sleep(1.0)
    histories = read_events(settings)
    runs = {p: runs_of(histories, h.id) for p, h in handles.items()}
    try:
        for p, rs in runs.items():
            assert len(rs) >= 2, (p, rs)
            for wid, started, _, _ in rs:  # deterministic ids: schedule id + an interval-aligned fire time
                assert any(target_workflow_id(handles[p].id, t) == wid
                           for t in range(started - 6 * INTERVAL_MS, started + 1) if t % INTERVAL_MS == 0), wid

        def overlapping(rs) -> bool:  # type: ignore[no-untyped-def]
            return any(b[1] < (a[2] or 10**15) for a, b in zip(rs, rs[1:]))

        # SKIP: never two at once; fires while one runs are skipped.
        assert not overlapping(runs["SKIP"]) and descriptions["SKIP"].skipped >= 2
        # BUFFER_ONE: never two at once; a buffered fire starts right when the running one ends.
        b = runs["BUFFER_ONE"]
        assert not overlapping(b)
        assert any(nxt[1] - prev[2] < 1_000 for prev, nxt in zip(b, b[1:]) if prev[2]), b
        assert any(a["action"] == "buffered" for a in descriptions["BUFFER_ONE"].recent)
        # CANCEL_OTHER: every start but the last was cancelled by the next fire.
        c = runs["CANCEL_OTHER"]
        assert len(c) >= 4 and [r[3] for r in c[:-1]] == ["WorkflowCancelled"] * (len(c) - 1), c
        # ALLOW_ALL: a start at every fire, running side by side.
        a = runs["ALLOW_ALL"]
        assert len(a) >= 4 and overlapping(a) and not any(r[3] == "WorkflowCancelled" for r in a)
    except AssertionError:
        print(json.dumps({p: [(w, s, e, t) for w, s, e, t in rs] for p, rs in runs.items()}, indent=1))
        print(cluster.logs())
        raise


async def test_pause_resume_update_delete_and_list(cluster, client):  # type: ignore[no-untyped-def]
    cluster.engine()
    h = await client.create_schedule("life", interval=1.0, workflow="Target", args=[0], note="hello")
    with pytest.raises(ScheduleSpecError):
        await client.create_schedule("bad", cron="every minute", workflow="Target")
    await asyncio.sleep(3.5)
    d = await h.describe()
    assert d.started >= 2 and d.interval is not None and d.interval.total_seconds() == 1.0
    assert d.next_fire_times and d.next_fire_times[0].timestamp() * 1000 % 1000 == 0
    await h.pause("maintenance")
    paused_at = (await h.describe()).started
    await asyncio.sleep(2.5)
    d = await h.describe()
    assert d.paused and d.note == "maintenance" and d.started == paused_at
    with pytest.raises(ScheduleSpecError):
        await h.update(overlap="SOMETIMES")
    await h.update(interval=60.0, args=[1])
    await h.resume()
    d = await h.describe()
    assert not d.paused and d.interval.total_seconds() == 60.0 and d.args == [1]
    deadline = time.monotonic() + 20
    while True:  # the visibility index follows within a few seconds
        listed = {s.id: s for s in await client.list_schedules()}
        if "life" in listed and listed["life"].spec.startswith("every 60000ms"):
            break
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.5)
    assert listed["life"].workflow_type == "Target" and not listed["life"].paused
    await h.delete()
    with pytest.raises(ScheduleNotFoundError):
        await h.describe()
    with pytest.raises(ScheduleNotFoundError):
        await h.pause()
    # A deleted schedule's id can be used again.
    again = await client.create_schedule("life", cron="* * * * *", workflow="Target", args=[0])
    assert (await again.describe()).cron == "* * * * *"
    await again.delete()


async def test_cron_in_a_time_zone(cluster, client):  # type: ignore[no-untyped-def]
    """A cron schedule read in New York, then moved to Tokyo: its next fire times are 09:00
    on those clocks; a zone name that does not exist is refused with the reason."""
    from zoneinfo import ZoneInfo

    cluster.engine()
    with pytest.raises(ScheduleSpecError, match="unknown time zone 'Mars/Olympus'"):
        await client.create_schedule("tz-bad", cron="0 9 * * *", timezone="Mars/Olympus", workflow="Target")
    h = await client.create_schedule("tz", cron="0 9 * * *", timezone="America/New_York", workflow="Target",
                                     args=[0])
    d = await h.describe()
    assert d.timezone == "America/New_York" and len(d.next_fire_times) == 5
    assert {t.astimezone(ZoneInfo("America/New_York")).hour for t in d.next_fire_times} == {9}
    await h.update(timezone="Asia/Tokyo")
    deadline = time.monotonic() + 20
    while (d := await h.describe()).timezone != "Asia/Tokyo":  # the update is a signal: applied shortly
        assert time.monotonic() < deadline, d
        await asyncio.sleep(0.2)
    assert {t.astimezone(ZoneInfo("Asia/Tokyo")).hour for t in d.next_fire_times} == {9}
    assert d.next_fire_times[0].utcoffset() is not None
    await h.delete()


def test_cli_schedule_commands(cluster, settings):  # type: ignore[no-untyped-def]
    cluster.engine()
    env = dict(os.environ, AION_BOOTSTRAP_SERVERS=settings.bootstrap_servers, AION_TOPIC_PREFIX=settings.topic_prefix,
               AION_PARTITIONS=str(settings.partitions))

    def aion(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "aion.cli", "schedule", *args], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    aion("create", "cli-1", "Target", "0", "--cron", "*/5 * * * *", "--timezone", "Europe/Paris",
         "--overlap", "buffer_one", "--catch-up", "all")
    d = json.loads(aion("describe", "cli-1", "--json"))
    assert d["cron"] == "*/5 * * * *" and d["overlap"] == "BUFFER_ONE" and d["catch_up"] == "ALL"
    assert d["timezone"] == "Europe/Paris"
    assert len(d["next_fire_times"]) == 5
    aion("pause", "cli-1", "--note", "quiet")
    aion("update", "cli-1", "--args", "[7]")
    d = json.loads(aion("describe", "cli-1", "--json"))
    assert d["paused"] and d["note"] == "quiet" and d["args"] == [7]
    aion("trigger", "cli-1")
    aion("delete", "cli-1")
    bad = subprocess.run([sys.executable, "-m", "aion.cli", "schedule", "pause", "cli-1"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "does not exist" in bad.stderr
