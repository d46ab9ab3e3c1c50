"""``env.client.create_schedule``: schedules run in the test environment on its skipping clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from aion import workflow
from aion.testing import WorkflowEnvironment


@workflow.defn
class Report:
    @workflow.run
    async def run(self, team: str) -> str:
        return f"report for {team} at {workflow.now():%H:%M}"


async def test_a_cron_schedule_fires_as_the_clock_skips() -> None:
    start = datetime(2026, 1, 5, 8, 30, tzinfo=timezone.utc)
    async with WorkflowEnvironment.start_time_skipping(workflows=[Report], start_time=start) as env:
        sched = await env.client.create_schedule("hourly-report", cron="0 * * * *", workflow=Report.run,
                                                 args=["ops"])
        await env.sleep(timedelta(hours=3))
        await env.wait_idle()
        started = sorted(wid for wid in env.log if wid.startswith("hourly-report-"))
        assert len(started) == 3, started  # 09:00, 10:00, 11:00
        await sched.pause("holiday")
        await env.wait_idle()
        fired = len([w for w in env.log if w.startswith("hourly-report-")])
        await env.sleep(timedelta(hours=2))
        await env.wait_idle()
        assert len([w for w in env.log if w.startswith("hourly-report-")]) == fired  # paused: none more
        assert (await sched.describe()).paused
        # (waiting for a result lets the clock skip, as in Temporal's time-skipping environment)
        assert await env.client.get_workflow_handle(started[0]).result() == "report for ops at 09:00"
