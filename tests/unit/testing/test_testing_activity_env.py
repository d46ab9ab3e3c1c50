"""aion.testing.ActivityEnvironment: one activity function, no workflow."""

from __future__ import annotations

import asyncio

import pytest

from aion import activity
from aion.examples.order_saga import OrderRequest, charge_card
from aion.exceptions import ApplicationError
from aion.testing import ActivityEnvironment


@activity.defn
async def counts(n: int) -> str:
    for i in range(n):
        activity.heartbeat(i)
    return f"{activity.info().activity_type}/{activity.info().attempt}"


@activity.defn
def sync_counts(n: int) -> int:
    for i in range(n):
        activity.heartbeat(i)
    return activity.info().attempt


@activity.defn
async def until_cancelled() -> str:
    await activity.wait_for_cancel()
    return f"stopped: {activity.is_cancelled()}"


async def test_info_and_heartbeats_are_available() -> None:
    env = ActivityEnvironment(activity_type="counts", attempt=3)
    assert await env.run(counts, 3) == "counts/3"
    assert env.heartbeats == [(0,), (1,), (2,)]


async def test_sync_activities_run_in_a_thread() -> None:
    env = ActivityEnvironment(attempt=2)
    assert await env.run(sync_counts, 2) == 2
    assert env.heartbeats == [(0,), (1,)]


async def test_cancel_reaches_the_activity() -> None:
    env = ActivityEnvironment()
    task = asyncio.create_task(env.run(until_cancelled))
    await asyncio.sleep(0.01)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_example_activity_raises_a_non_retryable_error() -> None:
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(charge_card, OrderRequest("o-9", "sku", 1, 100, decline_card=True))
    assert info.value.type == "CardDeclined" and info.value.non_retryable
