"""A cron workflow with a retried child, written as for Temporal.

``NightlyDigest`` is started once with ``cron_schedule="0 2 * * *"``: each run starts at 02:00
UTC, reads the watermark the previous run returned (``workflow.get_last_completion_result``),
and sends the digest of what came after it through the child ``SendDigest``, whose
``retry_policy`` retries a failed delivery as a new run of the child (the parent only sees the
last run's outcome). The next run is scheduled when this one closes, until the workflow is
cancelled or terminated::

    from aion.testing import WorkflowEnvironment
    from aion.examples.nightly_digest import ACTIVITIES, WORKFLOWS, NightlyDigest

    async with WorkflowEnvironment.start_time_skipping(workflows=WORKFLOWS, activities=ACTIVITIES) as env:
        handle = await env.client.start_workflow(NightlyDigest.run, "news", id="digest",
                                                 cron_schedule="0 2 * * *", memo={"owner": "ops"})
        await env.sleep(timedelta(days=3))   # three nights, three runs
        await handle.cancel()                # the chain ends
"""

from __future__ import annotations

from datetime import timedelta

from aion import activity, workflow
from aion.exceptions import ApplicationError

#: Deliveries the fake mail server refuses before it accepts one (a test sets it).
OUTAGES = {"left": 0}


@activity.defn
async def fetch_items(topic: str, after: int) -> list[int]:
    """Item ids of ``topic`` newer than ``after`` (a stand-in for a database query)."""
    return [after + 1, after + 2]


@activity.defn
async def deliver(topic: str, items: list[int]) -> str:
    """Send the digest; fails while the fake mail server is down."""
    if OUTAGES["left"] > 0:
        OUTAGES["left"] -= 1
        raise ApplicationError("mail server unavailable", type="MailDown", non_retryable=True)
    return f"{topic}: {len(items)} items up to {items[-1] if items else '-'}"


@workflow.defn
class SendDigest:
    """One delivery attempt per run: the child's retry policy (not the activity's) retries it."""

    @workflow.run
    async def run(self, topic: str, items: list[int]) -> str:
        return await workflow.execute_activity(deliver, topic, items, start_to_close_timeout=timedelta(seconds=30))


@workflow.defn
class NightlyDigest:
    """One night's digest; returns its watermark for the next run."""

    @workflow.run
    async def run(self, topic: str) -> int:
        after = workflow.get_last_completion_result(int) or 0
        items = await workflow.execute_activity(fetch_items, topic, after, start_to_close_timeout=timedelta(seconds=30))
        await workflow.execute_child_workflow(
            SendDigest.run, topic, items, id=f"{workflow.info().workflow_id}-send-{after}",
            retry_policy=workflow.RetryPolicy(initial_interval=timedelta(minutes=1), maximum_attempts=5),
            memo={"night": workflow.now().date().isoformat()})
        return items[-1] if items else after


#: What a worker registers to run this example.
WORKFLOWS = [NightlyDigest, SendDigest]
ACTIVITIES = [fetch_items, deliver]

__all__ = ["ACTIVITIES", "WORKFLOWS", "NightlyDigest", "SendDigest", "fetch_items", "deliver"]
