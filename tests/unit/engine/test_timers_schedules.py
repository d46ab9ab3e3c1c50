"""Schedules (``aion.engine._schedules``) in the time-skipping test environment: fire times,
overlap and catch-up policies, pause/resume/update/delete, continue-as-new. No broker."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aion import workflow
from aion.engine._schedules import (
    ScheduleSpecError,
    ScheduleWorkflow,
    fire_times,
    next_fire_ms,
    schedule_workflow_id,
    target_workflow_id,
    validate_spec,
)
from aion.testing import WorkflowEnvironment

T0 = datetime(2030, 1, 1, 0, 0, 0, tzinfo=timezone.utc)
T0_MS = int(T0.timestamp() * 1000)


@workflow.defn
class Job:
    @workflow.run
    async def run(self, seconds: float) -> str:
        if seconds:
            await workflow.sleep(seconds)
        return workflow.info().workflow_id


def spec(**kw):  # type: ignore[no-untyped-def]
    base = {"id": "s", "interval_ms": 60_000, "workflow_type": "Job", "args": [0]}
    base.update(kw)
    return validate_spec(base)


async def env_with(s: dict, *, start=T0, resident: bool = True):  # type: ignore[no-untyped-def]
    env = WorkflowEnvironment.start_time_skipping(workflows=[ScheduleWorkflow, Job], start_time=start,
                                                  resident=resident)
    await env.start()
    h = await env.client.start_workflow("aion.Schedule", s, id=schedule_workflow_id(s["id"]))
    return env, h


def started(env) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(w for w in env.log if w.startswith("s-"))


def test_fire_times_cron_and_interval() -> None:
    cron = spec(cron="*/15 * * * *", interval_ms=None)
    assert next_fire_ms(cron, T0_MS) == T0_MS + 15 * 60_000
    assert fire_times(cron, T0_MS, T0_MS + 3_600_000, 10) == [T0_MS + k * 900_000 for k in (1, 2, 3, 4)]
    iv = spec(interval_ms=10_000, offset_ms=2_000)
    assert next_fire_ms(iv, T0_MS) == T0_MS + 2_000
    assert next_fire_ms(iv, T0_MS + 2_000) == T0_MS + 12_000
    assert target_workflow_id("nightly", T0_MS) == "nightly-2030-01-01T00:00:00Z"
    assert target_workflow_id("s", T0_MS + 5) == "s-2030-01-01T00:00:00.005Z"


def test_cron_in_a_time_zone_follows_daylight_saving() -> None:
    """'0 9 * * *' in Paris is 08:00 UTC in winter and 07:00 UTC in summer; a 02:30 that does
    not exist on the spring-forward day is skipped."""
    daily = spec(cron="0 9 * * *", interval_ms=None, timezone="Europe/Paris")
    assert daily["timezone"] == "Europe/Paris"
    jan = int(datetime(2030, 1, 15, tzinfo=timezone.utc).timestamp() * 1000)
    jul = int(datetime(2030, 7, 15, tzinfo=timezone.utc).timestamp() * 1000)
    assert datetime.fromtimestamp(next_fire_ms(daily, jan) / 1000, tz=timezone.utc).hour == 8
    assert datetime.fromtimestamp(next_fire_ms(daily, jul) / 1000, tz=timezone.utc).hour == 7
    assert spec(cron="0 9 * * *", interval_ms=None)["timezone"] == "UTC"
    assert datetime.fromtimestamp(next_fire_ms(spec(cron="0 9 * * *", interval_ms=None), jul) / 1000,
                                  tz=timezone.utc).hour == 9
    # Europe/Paris: spring forward 2030-03-31 02:00 -> 03:00 (no 02:30: it fires at 03:30, the
    # same moment), fall back 2030-10-27 03:00 -> 02:00 (02:30 twice: it fires once).
    night = spec(cron="30 2 * * *", interval_ms=None, timezone="Europe/Paris")

    def utc(after: datetime, days: int) -> list[str]:
        t = int(after.timestamp() * 1000)
        return [datetime.fromtimestamp(x / 1000, tz=timezone.utc).strftime("%m-%dT%H:%M")
                for x in fire_times(night, t, t + days * 86_400_000, 10)]

    assert utc(datetime(2030, 3, 29, 12, tzinfo=timezone.utc), 3) == ["03-30T01:30", "03-31T01:30", "04-01T00:30"]
    assert utc(datetime(2030, 10, 25, 12, tzinfo=timezone.utc), 3) == ["10-26T00:30", "10-27T00:30", "10-28T01:30"]


@pytest.mark.parametrize("bad, msg", [
    ({"cron": "* * *", "interval_ms": None}, "5-field"),
    ({"cron": "* * * * *"}, "exactly one"),
    ({"interval_ms": 10}, "at least 1 second"),
    ({"overlap": "MAYBE"}, "overlap must be one of"),
    ({"catch_up": "SOME"}, "catch_up must be one of"),
    ({"workflow_type": ""}, "name the workflow"),
    ({"cron": "0 9 * * *", "interval_ms": None, "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
])
def test_invalid_specs_say_what_to_fix(bad, msg) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ScheduleSpecError, match=msg):
        spec(**bad)


async def test_interval_schedule_starts_with_deterministic_ids() -> None:
    env, h = await env_with(spec())
    async with env:
        await env.sleep(timedelta(minutes=3, seconds=30))
        assert started(env) == [target_workflow_id("s", T0_MS + k * 60_000) for k in (1, 2, 3)]
        d = await h.query("describe")
        assert d["started"] == 3 and d["next_fires_ms"][0] == T0_MS + 4 * 60_000


@pytest.mark.parametrize("resident", [True, False], ids=["resident", "replay-every-step"])
async def test_overlap_skip_buffer_cancel_allow(resident: bool) -> None:
    results = {}
    for overlap in ("SKIP", "BUFFER_ONE", "CANCEL_OTHER", "ALLOW_ALL"):
        s = spec(id="s", overlap=overlap, args=[150])  # each run takes 2.5 intervals
        env, h = await env_with(s, resident=resident)
        async with env:
            await env.sleep(timedelta(minutes=6, seconds=30))
            d = await h.query("describe")
            statuses = {w: env.execution(w).status for w in started(env)}
            results[overlap] = (statuses, d)
    m = lambda k: target_workflow_id("s", T0_MS + k * 60_000)  # noqa: E731
    skip, d = results["SKIP"]
    assert list(skip) == [m(1), m(4)] and d["skipped"] == 4  # fires 2,3 and 5,6 skipped
    buf, d = results["BUFFER_ONE"]
    # 1 runs 1:00-3:30; 2 buffered (3 skipped) starts at 3:30 (its id is its fire time) ...
    assert list(buf) == [m(1), m(2), m(4)]
    cancel, d = results["CANCEL_OTHER"]
    assert list(cancel) == [m(k) for k in range(1, 7)]
    assert [cancel[m(k)] for k in range(1, 6)] == ["CANCELLED"] * 5 and cancel[m(6)] == "RUNNING"
    allow, d = results["ALLOW_ALL"]
    assert list(allow) == [m(k) for k in range(1, 7)]
    assert [allow[m(k)] for k in range(1, 5)] == ["COMPLETED"] * 4


async def test_pause_resume_update_delete() -> None:
    env, h = await env_with(spec())
    async with env:
        await env.sleep(timedelta(minutes=1, seconds=30))
        await h.signal("pause", "maintenance")
        await env.sleep(timedelta(minutes=3))
        d = await h.query("describe")
        assert d["paused"] and d["note"] == "maintenance" and d["started"] == 1 and d["next_fires_ms"] == []
        await h.signal("resume")
        await env.sleep(timedelta(minutes=1))
        assert len(started(env)) == 2  # the fires while paused were skipped, not caught up
        await h.signal("update", {"interval_ms": 600_000, "args": [1]})
        d = await h.query("describe")
        assert d["interval_ms"] == 600_000 and d["args"] == [1]
        await h.signal("update", {"overlap": "NOPE"})  # invalid: rejected, the schedule lives on
        d = await h.query("describe")
        assert d["overlap"] == "SKIP" and d["recent"][-1]["action"] == "update_rejected"
        await h.signal("delete")
        out = await h.result()
        assert out["deleted"] is True


async def test_catch_up_policies_after_an_outage() -> None:
    # The outage: a schedule created at T0 whose first wake-up comes 5 intervals late is the
    # same as an engine down meanwhile; emulate it with state carried in (last fire at T0).
    for policy, expected in (("ALL", 5), ("ONE", 1), ("SKIP", 0)):
        s = spec(catch_up=policy, overlap="ALLOW_ALL")  # (with SKIP, a running start skips the rest)
        s["state"] = {"last_ms": T0_MS - 5 * 60_000, "buffered": None, "pending": [], "recent": [], "started": 0,
                      "skipped": 0, "created_ms": T0_MS, "runs": 1}
        env, h = await env_with(s, start=T0 + timedelta(seconds=20))
        async with env:
            await env.sleep(timedelta(seconds=1))
            assert len(started(env)) == expected, policy


async def test_continues_as_new_and_keeps_firing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import aion.engine._schedules as sched

    monkeypatch.setattr(sched, "HISTORY_LIMIT", 30)
    env, h = await env_with(spec(interval_ms=1_000))
    async with env:
        await env.sleep(timedelta(seconds=40))
        hist = env.history(schedule_workflow_id("s"))
        assert [e.type for e in hist].count("WorkflowContinuedAsNew") >= 2
        d = await env.client.get_workflow_handle(schedule_workflow_id("s")).query("describe")
        assert d["started"] == 40 and d["runs"] >= 3
        assert len(started(env)) == 40
