"""aion.examples.cart: updates with a validator, an activity in the handler, update-with-start."""

from __future__ import annotations

import pytest

from aion.client import WithStartWorkflowOperation
from aion.examples import cart
from aion.examples.cart import Cart, Receipt
from aion.exceptions import ApplicationError, WorkflowNotFoundError, WorkflowUpdateFailedError


async def test_items_are_priced_by_updates_and_checkout_answers_with_the_receipt(make_env) -> None:
    async with make_env(cart.WORKFLOWS, cart.ACTIVITIES) as env:
        op = WithStartWorkflowOperation(Cart.run, id="cart-1")
        assert await env.client.execute_update_with_start_workflow(Cart.add_item, "tea",
                                                                   start_workflow_operation=op) == 450
        handle = await op.workflow_handle()
        assert await handle.execute_update(Cart.add_item, "jam") == 775

        before = len(await handle.history())
        with pytest.raises(WorkflowUpdateFailedError, match="not in the catalogue") as ei:
            await handle.execute_update(Cart.add_item, "caviar")
        assert isinstance(ei.value.cause, ApplicationError) and ei.value.cause.type == "UnknownItem"
        assert len(await handle.history()) == before  # a rejected update appends nothing

        receipt = await handle.execute_update(Cart.checkout, "card-1")
        assert receipt == Receipt(["tea", "jam"], 775, "ch-card-1-775")
        assert await handle.result() == receipt
        with pytest.raises(WorkflowNotFoundError, match="ended COMPLETED"):
            await handle.execute_update(Cart.add_item, "bread")  # the cart's run is over


async def test_checkout_of_an_empty_cart_fails_the_update_not_the_cart(make_env) -> None:
    async with make_env(cart.WORKFLOWS, cart.ACTIVITIES) as env:
        handle = await env.client.start_workflow(Cart.run, id="cart-2")
        with pytest.raises(WorkflowUpdateFailedError, match="EmptyCart: the cart is empty"):
            await handle.execute_update(Cart.checkout, "card-1")
        assert await handle.execute_update(Cart.add_item, "bread") == 280
        receipt = await handle.execute_update(Cart.checkout, "card-2")
        assert receipt.charge_id == "ch-card-2-280"
        assert (await handle.result()).total_cents == 280
        with pytest.raises(WorkflowNotFoundError, match="ended COMPLETED"):
            await handle.execute_update(Cart.add_item, "tea")  # the cart's run is over
