"""A shopping cart driven by updates: each change is a request that the workflow answers.

``add_item`` is an update with a validator: an item that is out of the catalogue, or a cart
that is already checked out, is rejected before anything is recorded, and the caller gets the
reason as ``WorkflowUpdateFailedError``. An accepted ``add_item`` prices the item with an
activity and returns the cart's new total — the caller waits for that answer, which a signal
cannot give. ``checkout`` charges the card (another activity) and answers with the receipt;
the workflow then waits for every update handler to finish and returns the receipt.

Run it against Kafka::

    aion worker --workflows aion.examples.cart &
    aion activity-worker --activities aion.examples.cart &
    aion workflow start Cart --id cart-7
    aion workflow update cart-7 add_item '"tea"' --json      # 450
    aion workflow update cart-7 add_item '"caviar"'          # exit 3: rejected by its validator
    aion workflow update cart-7 checkout '"card-1"' --json

or from code: ``await handle.execute_update(Cart.add_item, "tea")``; update-with-start creates
the cart on the first item (``client.execute_update_with_start_workflow(Cart.add_item, "tea",
start_workflow_operation=WithStartWorkflowOperation(Cart.run, id="cart-7"))``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from aion import activity, workflow
from aion.exceptions import ApplicationError

#: What the shop sells, in cents.
CATALOGUE = {"tea": 450, "jam": 325, "bread": 280}


@dataclass
class Receipt:
    items: list[str] = field(default_factory=list)
    total_cents: int = 0
    charge_id: str = ""


# ---------------------------------------------------------------- activities


@activity.defn
async def price_of(item: str) -> int:
    """The item's current price (a pricing service in a real shop)."""
    return CATALOGUE[item]


@activity.defn
async def charge(card: str, cents: int) -> str:
    """Charge the card; returns the payment provider's charge id."""
    return f"ch-{card}-{cents}"


# ---------------------------------------------------------------- workflow

T = timedelta(seconds=30)


@workflow.defn
class Cart:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.total = 0
        self.receipt: Receipt | None = None

    @workflow.update
    async def add_item(self, item: str) -> int:
        cents = await workflow.execute_activity(price_of, item, start_to_close_timeout=T)
        self.items.append(item)
        self.total += cents
        return self.total

    @add_item.validator
    def _validate_add_item(self, item: str) -> None:
        # Runs before anything is recorded; raising rejects the update (nothing is appended).
        if self.receipt is not None:
            raise ApplicationError("the cart is checked out", type="CheckedOut")
        if item not in CATALOGUE:
            raise ApplicationError(f"{item!r} is not in the catalogue", type="UnknownItem")

    @workflow.update
    async def checkout(self, card: str) -> Receipt:
        if not self.items:
            raise ApplicationError("the cart is empty", type="EmptyCart")  # fails the update, not the cart
        charge_id = await workflow.execute_activity(charge, card, self.total, start_to_close_timeout=T)
        self.receipt = Receipt(list(self.items), self.total, charge_id)
        return self.receipt

    @workflow.query
    def total_cents(self) -> int:
        return self.total

    @workflow.run
    async def run(self) -> Receipt:
        await workflow.wait_condition(lambda: self.receipt is not None)
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self.receipt is not None
        return self.receipt


WORKFLOWS = [Cart]
ACTIVITIES = [price_of, charge]

__all__ = ["ACTIVITIES", "WORKFLOWS", "Cart", "Receipt", "charge", "price_of"]
