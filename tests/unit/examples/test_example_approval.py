"""aion.examples.approval: a deadline raced against a signal, with a status query."""

from __future__ import annotations

import time
from datetime import timedelta

from aion.examples import approval
from aion.examples.approval import Approval, ApprovalRequest, ApprovalResult

WEEK = 7 * 24 * 3600


def request(request_id: str = "r-1", deadline_seconds: int = WEEK) -> ApprovalRequest:
    return ApprovalRequest(request_id=request_id, requester="bob", description="new laptop",
                           approvers=["alice", "carol"], deadline_seconds=deadline_seconds)


def span(history) -> timedelta:
    return timedelta(milliseconds=history[-1].recorded_at_ms - history[0].recorded_at_ms)


async def test_approved_by_signal_before_the_deadline(make_env) -> None:
    async with make_env(approval.WORKFLOWS, approval.ACTIVITIES) as env:
        handle = await env.client.start_workflow(Approval.run, request(), id="approval-yes")
        await env.wait_idle()
        assert await handle.query(Approval.status) == "PENDING"

        await handle.signal(Approval.approve, "alice")
        result = await handle.result()

        assert result == ApprovalResult(request_id="r-1", status="APPROVED", decided_by="alice")
        history = await handle.history()
        types = [e.type for e in history]
        assert "SignalReceived" in types and "TimerFired" not in types
        assert span(history) < timedelta(days=1)  # decided long before the deadline
        assert await handle.query(Approval.status) == "APPROVED"


async def test_rejected_with_a_reason(make_env) -> None:
    async with make_env(approval.WORKFLOWS, approval.ACTIVITIES) as env:
        handle = await env.client.start_workflow(Approval.run, request("r-2"), id="approval-no")
        await env.wait_idle()
        await handle.signal("reject", "carol", "over budget")
        await handle.signal(Approval.approve, "alice")  # too late: the first decision wins
        result = await handle.result()
        assert (result.status, result.decided_by, result.reason) == ("REJECTED", "carol", "over budget")


async def test_expires_when_nobody_decides(make_env) -> None:
    async with make_env(approval.WORKFLOWS, approval.ACTIVITIES) as env:
        started = time.monotonic()
        result = await env.client.execute_workflow(Approval.run, request("r-3"), id="approval-expired")
        wall = time.monotonic() - started

        assert result.status == "EXPIRED" and result.decided_by is None
        history = await env.client.get_workflow_handle("approval-expired").history()
        assert "TimerFired" in [e.type for e in history]
        assert span(history) >= timedelta(seconds=WEEK)  # a week of workflow time ...
        assert wall < 5  # ... in (far) less than five seconds of wall time
        notified = [e.body for e in history if e.type == "ActivityScheduled"]
        assert [n.activity_type for n in notified] == ["notify_approvers", "notify_requester"]


async def test_signal_with_start_is_delivered_before_the_wait(make_env) -> None:
    async with make_env(approval.WORKFLOWS, approval.ACTIVITIES) as env:
        handle = await env.client.signal_with_start(
            Approval.run, request("r-4"), id="approval-sws", signal=Approval.approve, signal_args=["dave"])
        result = await handle.result()
        assert (result.status, result.decided_by) == ("APPROVED", "dave")
