"""ActivityContext: info, heartbeat channel, cancellation from another thread, contextvar."""

import asyncio
import threading

import pytest

from aion.activity._context import (
    ActivityContext,
    NotInActivityError,
    current,
    get_context,
    in_activity,
    make_info,
)


def _info(**kw):
    base = dict(workflow_id="wf", run_id="r", activity_id="1", activity_type="t", attempt=2)
    base.update(kw)
    return make_info(**base)


def test_deadlines_are_computed_from_the_start() -> None:
    info = _info(started_at_ms=1_000, start_to_close_ms=500, schedule_to_close_deadline_ms=1_200)
    assert info.start_to_close_deadline_ms == 1_500
    assert info.deadline_ms == 1_200
    assert _info(started_at_ms=1).deadline_ms is None
    ctx = ActivityContext(info)
    assert ctx.remaining_seconds(now_ms=1_000) == pytest.approx(0.2)


def test_heartbeat_reaches_the_callback_with_the_details() -> None:
    seen = []
    ctx = ActivityContext(_info(), heartbeat=seen.append)
    ctx.heartbeat(1, "x")
    ctx.heartbeat()
    assert seen == [(1, "x"), ()]
    assert ctx.last_heartbeat_details == ()


async def test_cancel_from_another_thread_wakes_an_async_waiter() -> None:
    ctx = ActivityContext(_info())
    waiter = asyncio.create_task(ctx.wait_for_cancelled())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    t = threading.Thread(target=ctx.request_cancel)
    t.start()
    t.join()
    await asyncio.wait_for(waiter, 1)
    assert ctx.is_cancelled() and ctx.cancel_reason == "CANCEL_REQUESTED"
    assert ctx.request_cancel() is False  # only once
    await asyncio.wait_for(ctx.wait_for_cancelled(), 1)  # already cancelled: returns at once


def test_sync_wait_and_event() -> None:
    ctx = ActivityContext(_info())
    assert ctx.wait_for_cancelled_sync(0.01) is False
    threading.Timer(0.02, ctx.request_cancel, kwargs={"reason": "WORKER_SHUTDOWN"}).start()
    assert ctx.wait_for_cancelled_sync(2) is True
    assert ctx.cancelled_event.is_set() and ctx.cancel_reason == "WORKER_SHUTDOWN"


def test_current_context_var() -> None:
    assert not in_activity()
    with pytest.raises(NotInActivityError):
        get_context()
    ctx = ActivityContext(_info())
    token = current.set(ctx)
    try:
        assert get_context() is ctx and in_activity()
    finally:
        current.reset(token)
