"""An approval with a deadline: a human decision (a signal) raced against a durable timer.

The workflow notifies the approvers, then waits until someone signals ``approve`` or
``reject`` — or until the deadline passes, whichever is recorded first. The ``status`` query
tells a UI where the request stands without touching the history. The deadline is a durable
timer: a week-long deadline survives restarts, and in the time-skipping test environment it
passes in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from aion import activity, exceptions, workflow


@dataclass
class ApprovalRequest:
    request_id: str
    requester: str
    description: str
    approvers: list[str]
    deadline_seconds: int = 7 * 24 * 3600


@dataclass
class ApprovalResult:
    request_id: str
    #: APPROVED | REJECTED | EXPIRED
    status: str
    decided_by: str | None = None
    reason: str = ""


# ---------------------------------------------------------------- activities


@activity.defn
async def notify_approvers(request: ApprovalRequest) -> int:
    """Send the request to every approver (e-mail, chat, ...); returns how many were notified."""
    return len(request.approvers)


@activity.defn
async def notify_requester(request_id: str, requester: str, status: str) -> str:
    """Tell the requester the outcome."""
    return f"told {requester}: request {request_id} is {status}"


# ---------------------------------------------------------------- workflow

NOTIFY_TIMEOUT = timedelta(seconds=30)


@workflow.defn
class Approval:
    """Waits for an ``approve``/``reject`` signal until the deadline; expires otherwise."""

    def __init__(self) -> None:
        self.state = "PENDING"
        self.decided_by: str | None = None
        self.reason = ""

    @workflow.run
    async def run(self, request: ApprovalRequest) -> ApprovalResult:
        await workflow.execute_activity(
            notify_approvers, request, start_to_close_timeout=NOTIFY_TIMEOUT
        )
        try:
            # The deadline is a durable timer; whichever of (signal, timer) is recorded first
            # wins, so a live run and a replay always agree on the outcome.
            await workflow.wait_condition(
                lambda: self.state != "PENDING",
                timeout=timedelta(seconds=request.deadline_seconds),
            )
        except exceptions.TimeoutError:
            self.state = "EXPIRED"
        await workflow.execute_activity(
            notify_requester,
            request.request_id,
            request.requester,
            self.state,
            start_to_close_timeout=NOTIFY_TIMEOUT,
        )
        return ApprovalResult(
            request_id=request.request_id,
            status=self.state,
            decided_by=self.decided_by,
            reason=self.reason,
        )

    @workflow.signal
    def approve(self, approver: str) -> None:
        # The first decision wins; a late or second signal is recorded but changes nothing.
        if self.state == "PENDING":
            self.state, self.decided_by = "APPROVED", approver

    @workflow.signal
    def reject(self, approver: str, reason: str) -> None:
        if self.state == "PENDING":
            self.state, self.decided_by, self.reason = "REJECTED", approver, reason

    @workflow.query
    def status(self) -> str:
        return self.state


WORKFLOWS = [Approval]
ACTIVITIES = [notify_approvers, notify_requester]

__all__ = [
    "ACTIVITIES",
    "WORKFLOWS",
    "Approval",
    "ApprovalRequest",
    "ApprovalResult",
    "notify_approvers",
    "notify_requester",
]
