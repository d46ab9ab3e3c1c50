"""An order saga: reserve inventory, charge the card, ship — and undo what was done on failure.

Each forward step that succeeds registers its compensation. When a later step fails (the card
is declined, shipping is unavailable) or the workflow is cancelled, the compensations run in
reverse order (refund the charge, then release the reservation) and the workflow ends with a
clear outcome:

- success: returns an :class:`OrderResult` with status ``COMPLETED``;
- a failed step: raises ``ApplicationError(type="OrderFailed")`` naming the step, the cause and
  the compensations that ran (the client sees ``WorkflowFailureError`` with that cause);
- a cancel request: compensates, then ends ``CANCELLED``.

The activities are stand-ins for real services; flags on the request make them fail so the
compensation path can be exercised (``decline_card=True`` declines the card with a
non-retryable ``ApplicationError``).

This is the module the demo's worker loads (``aion.examples.order_saga``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aion import RetryPolicy, activity, workflow
from aion.exceptions import ActivityError, ApplicationError, CancelledError


@dataclass
class OrderRequest:
    order_id: str
    sku: str
    quantity: int
    amount_cents: int
    card: str = "4242-4242-4242-4242"
    #: Failure injection for demos and tests.
    out_of_stock: bool = False
    decline_card: bool = False
    shipping_unavailable: bool = False
    #: Durable wait between charging and shipping (the next courier pickup), in seconds.
    pickup_delay_seconds: int = 0


@dataclass
class OrderResult:
    order_id: str
    status: str
    reservation_id: str
    charge_id: str
    tracking_number: str
    steps: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- activities


@activity.defn
async def reserve_inventory(order: OrderRequest) -> str:
    """Hold ``quantity`` units of ``sku``; returns the reservation id."""
    if order.out_of_stock:
        raise ApplicationError(
            f"sku {order.sku!r} is out of stock for order {order.order_id}",
            type="OutOfStock",
            non_retryable=True,
        )
    return f"rsv-{order.order_id}"


@activity.defn
async def release_inventory(reservation_id: str) -> str:
    """Compensation of :func:`reserve_inventory` (idempotent: releasing twice is harmless)."""
    return f"released {reservation_id}"


@activity.defn
async def charge_card(order: OrderRequest) -> str:
    """Charge ``amount_cents``; returns the charge id. A declined card is not worth retrying."""
    if order.decline_card:
        raise ApplicationError(
            f"card ending {order.card[-4:]} was declined for order {order.order_id}",
            type="CardDeclined",
            non_retryable=True,
        )
    return f"ch-{order.order_id}"


@activity.defn
async def refund_card(charge_id: str) -> str:
    """Compensation of :func:`charge_card` (idempotent by charge id)."""
    return f"refunded {charge_id}"


@activity.defn
async def ship_order(order: OrderRequest) -> str:
    """Hand the parcel to the courier; returns the tracking number."""
    if order.shipping_unavailable:
        raise ApplicationError(
            f"no courier can ship order {order.order_id}",
            type="ShippingUnavailable",
            non_retryable=True,
        )
    return f"trk-{order.order_id}"


# ---------------------------------------------------------------- workflow

#: Forward steps retry transient errors a few times; business errors are non-retryable.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
#: Compensations must not give up easily: they keep the books straight.
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=0,  # unlimited
)
STEP_TIMEOUT = timedelta(seconds=30)


@workflow.defn
class OrderSaga:
    """Reserve, charge, ship; compensate in reverse order when a step fails or on cancel."""

    def __init__(self) -> None:
        self.state = "NEW"
        #: Forward steps and compensations in the order they completed (also visible in history).
        self.steps: list[str] = []
        self._compensations: list[tuple[str, Any, str]] = []

    @workflow.run
    async def run(self, order: OrderRequest) -> OrderResult:
        step = "reserve_inventory"
        try:
            reservation_id = await self._step(step, reserve_inventory, order)
            self._compensations.append(("release_inventory", release_inventory, reservation_id))
            self.state = "RESERVED"

            step = "charge_card"
            charge_id = await self._step(step, charge_card, order)
            self._compensations.append(("refund_card", refund_card, charge_id))
            self.state = "CHARGED"

            if order.pickup_delay_seconds > 0:
                step = "wait_for_pickup"
                self.state = "AWAITING_PICKUP"
                await workflow.sleep(timedelta(seconds=order.pickup_delay_seconds))

            step = "ship_order"
            tracking_number = await self._step(step, ship_order, order)
            self.state = "COMPLETED"
            return OrderResult(
                order_id=order.order_id,
                status="COMPLETED",
                reservation_id=reservation_id,
                charge_id=charge_id,
                tracking_number=tracking_number,
                steps=list(self.steps),
            )
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                # The activity was cancelled because the workflow was: same as below.
                await self._compensate()
                self.state = "CANCELLED"
                raise CancelledError(f"order {order.order_id} cancelled at {step}") from err
            undone = await self._compensate()
            self.state = "FAILED"
            raise ApplicationError(
                f"order {order.order_id} failed at {step}: {_root_message(err)}; "
                f"compensated: {', '.join(undone) or 'nothing to undo'}",
                type="OrderFailed",
                non_retryable=True,
            ) from err
        except CancelledError:
            # A cancel request interrupts the current await; undo what was done, then end
            # CANCELLED by letting the cancellation propagate.
            await self._compensate()
            self.state = "CANCELLED"
            raise

    async def _step(self, name: str, fn: Any, arg: Any) -> Any:
        result = await workflow.execute_activity(
            fn, arg, start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY
        )
        self.steps.append(name)
        return result

    async def _compensate(self) -> list[str]:
        """Run the registered compensations, last first; returns their names in run order."""
        self.state = "COMPENSATING"
        undone: list[str] = []
        while self._compensations:
            name, fn, arg = self._compensations.pop()
            await workflow.execute_activity(
                fn, arg, start_to_close_timeout=STEP_TIMEOUT, retry_policy=COMPENSATION_RETRY
            )
            undone.append(name)
            self.steps.append(name)
        return undone

    @workflow.query
    def status(self) -> str:
        return self.state

    @workflow.query
    def progress(self) -> list[str]:
        return list(self.steps)


def _root_message(err: BaseException) -> str:
    """The innermost cause's message: 'card ... declined' rather than 'activity failed'."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err)


WORKFLOWS = [OrderSaga]
ACTIVITIES = [reserve_inventory, release_inventory, charge_card, refund_card, ship_order]

__all__ = [
    "ACTIVITIES",
    "WORKFLOWS",
    "OrderRequest",
    "OrderResult",
    "OrderSaga",
    "charge_card",
    "refund_card",
    "release_inventory",
    "reserve_inventory",
    "ship_order",
]
