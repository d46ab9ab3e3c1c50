"""A subscription: bill once a month, forever, with a history that stays short.

Each billing period is a durable wait of a month (30 days) followed by a charge activity.
A workflow that runs for years must not grow one endless history, so after
``periods_per_run`` periods (or earlier when the runtime suggests it) the workflow
*continues as new*: the run closes and a fresh run of the same workflow id starts from the
carried :class:`SubscriptionState`. The ``cancel_subscription`` signal ends it at the next
opportunity (it wakes the monthly wait early); ``max_periods`` ends it after a fixed number of
periods (a fixed-term plan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from aion import activity, exceptions, workflow

BILLING_PERIOD = timedelta(days=30)


@dataclass
class SubscriptionState:
    """Everything one run hands to the next (the continue-as-new input)."""

    customer_id: str
    price_cents: int
    #: Billing periods per run before continuing as new.
    periods_per_run: int = 12
    #: Stop after this many periods in total (0: until cancelled).
    max_periods: int = 0
    periods_billed: int = 0
    total_charged_cents: int = 0
    run_number: int = 1
    receipts: list[str] = field(default_factory=list)


@dataclass
class SubscriptionSummary:
    customer_id: str
    #: CANCELLED (by signal) | ENDED (max_periods reached)
    status: str
    periods_billed: int
    total_charged_cents: int
    runs: int
    last_receipt: str | None = None


# ---------------------------------------------------------------- activities


@activity.defn
async def charge_subscription(customer_id: str, period: int, cents: int) -> str:
    """Charge one billing period; the receipt id doubles as an idempotency key."""
    return f"inv-{customer_id}-{period:04d}"


# ---------------------------------------------------------------- workflow


@workflow.defn
class Subscription:
    """Bills every month; continues as new every ``periods_per_run`` periods."""

    def __init__(self) -> None:
        self.cancelled = False
        self.state: SubscriptionState | None = None

    @workflow.run
    async def run(self, state: SubscriptionState) -> SubscriptionSummary:
        self.state = state
        for _ in range(max(1, state.periods_per_run)):
            if self._finished():
                break
            try:
                # A month's durable wait; a cancel signal wakes it early.
                await workflow.wait_condition(lambda: self.cancelled, timeout=BILLING_PERIOD)
            except exceptions.TimeoutError:
                pass
            if self.cancelled:
                break
            period = state.periods_billed + 1
            receipt = await workflow.execute_activity(
                charge_subscription,
                state.customer_id,
                period,
                state.price_cents,
                start_to_close_timeout=timedelta(seconds=30),
            )
            state.periods_billed = period
            state.total_charged_cents += state.price_cents
            # Carry only the latest receipt: the carried state must stay small.
            state.receipts = [receipt]
            if workflow.info().continue_as_new_suggested:
                break
        if self._finished():
            return self._summary()
        # Close this run and start the next one with the same workflow id and a new run id.
        state.run_number += 1
        workflow.continue_as_new(state)  # raises: the run ends here

    def _finished(self) -> bool:
        st = self.state
        assert st is not None
        return self.cancelled or (st.max_periods > 0 and st.periods_billed >= st.max_periods)

    def _summary(self) -> SubscriptionSummary:
        st = self.state
        assert st is not None
        return SubscriptionSummary(
            customer_id=st.customer_id,
            status="CANCELLED" if self.cancelled else "ENDED",
            periods_billed=st.periods_billed,
            total_charged_cents=st.total_charged_cents,
            runs=st.run_number,
            last_receipt=st.receipts[-1] if st.receipts else None,
        )

    @workflow.signal
    def cancel_subscription(self) -> None:
        self.cancelled = True

    @workflow.query
    def billing_status(self) -> dict[str, int]:
        st = self.state
        if st is None:
            return {"periods_billed": 0, "total_charged_cents": 0, "run_number": 0}
        return {
            "periods_billed": st.periods_billed,
            "total_charged_cents": st.total_charged_cents,
            "run_number": st.run_number,
        }


WORKFLOWS = [Subscription]
ACTIVITIES = [charge_subscription]

__all__ = [
    "ACTIVITIES",
    "BILLING_PERIOD",
    "WORKFLOWS",
    "Subscription",
    "SubscriptionState",
    "SubscriptionSummary",
    "charge_subscription",
]
