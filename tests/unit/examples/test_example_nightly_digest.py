"""aion.examples.nightly_digest: a cron workflow whose child is retried, in the time-skipping
environment (resident and replayed on every step)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from aion.examples import nightly_digest as nd
from aion.examples.nightly_digest import NightlyDigest


async def test_three_nights_three_runs_each_from_the_last_watermark(make_env) -> None:
    nd.OUTAGES["left"] = 1  # the first delivery fails: its child is retried a minute later
    # A fixed start, far from 02:00: started from the wall clock within a millisecond or two of
    # 02:00 UTC, the third night fired at the very end of the three days and its run had not
    # completed when env.sleep returned ([2, 4]).
    start = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    async with make_env(nd.WORKFLOWS, nd.ACTIVITIES, start_time=start) as env:
        h = await env.client.start_workflow(NightlyDigest.run, "news", id="digest", cron_schedule="0 2 * * *",
                                            memo={"owner": "ops"})
        first = (await h.describe()).first_task_at_ms
        assert first is not None
        assert datetime.fromtimestamp(first / 1000, tz=timezone.utc) == datetime(2026, 1, 6, 2, 0, tzinfo=timezone.utc)
        await env.sleep(timedelta(days=3))
        completed = [env.client.converter.from_payload(e.body.result, int)
                     for e in await h.history() if e.type == "WorkflowCompleted"]
        assert completed == [2, 4, 6]  # each run started from the watermark the last one returned
        child = await env.client.get_workflow_handle("digest-send-0").describe()
        assert (child.status, child.runs, child.attempt) == ("COMPLETED", 2, 2)
        assert set(child.memo) == {"night"}
        assert (await h.describe()).memo == {"owner": "ops"}
        await h.cancel()
        assert (await h.describe()).status == "CANCELLED"
        assert env.replay("digest").ok and env.replay("digest-send-0").ok
