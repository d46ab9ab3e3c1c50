"""aion.examples.order_saga: success, failures with compensation in reverse order, cancel, terminate."""

from __future__ import annotations

import pytest

from aion.examples import order_saga
from aion.examples.order_saga import OrderRequest, OrderResult, OrderSaga
from aion.exceptions import ApplicationError, WorkflowFailureError


def scheduled_activities(history) -> list[str]:
    return [e.body.activity_type for e in history if e.type == "ActivityScheduled"]


def order(order_id: str = "o-1", **flags) -> OrderRequest:
    return OrderRequest(order_id=order_id, sku="sku-42", quantity=2, amount_cents=1999, **flags)


async def test_saga_success_reserves_charges_and_ships(make_env) -> None:
    async with make_env(order_saga.WORKFLOWS, order_saga.ACTIVITIES) as env:
        result = await env.client.execute_workflow(OrderSaga.run, order(), id="order-ok")

        assert isinstance(result, OrderResult)
        assert result.status == "COMPLETED"
        assert (result.reservation_id, result.charge_id, result.tracking_number) == ("rsv-o-1", "ch-o-1", "trk-o-1")
        assert result.steps == ["reserve_inventory", "charge_card", "ship_order"]
        history = await env.client.get_workflow_handle("order-ok").history()
        assert scheduled_activities(history) == ["reserve_inventory", "charge_card", "ship_order"]
        assert history[-1].type == "WorkflowCompleted"


async def test_declined_card_releases_the_reservation_and_fails_clearly(make_env) -> None:
    async with make_env(order_saga.WORKFLOWS, order_saga.ACTIVITIES) as env:
        with pytest.raises(WorkflowFailureError) as info:
            await env.client.execute_workflow(OrderSaga.run, order(decline_card=True), id="order-declined")

        err = info.value
        assert err.status == "FAILED"
        assert isinstance(err.cause, ApplicationError) and err.cause.type == "OrderFailed"
        assert "failed at charge_card" in str(err.cause)
        assert "card ending 4242 was declined" in str(err.cause)
        assert "compensated: release_inventory" in str(err.cause)

        history = await env.client.get_workflow_handle("order-declined").history()
        assert scheduled_activities(history) == ["reserve_inventory", "charge_card", "release_inventory"]
        # Non-retryable: exactly one attempt of the charge, and it says it will not retry.
        failed = [e.body for e in history if e.type == "ActivityFailed"]
        assert len(failed) == 1 and failed[0].failure.type == "CardDeclined" and not failed[0].will_retry
        assert history[-1].type == "WorkflowFailed"


async def test_shipping_failure_compensates_in_reverse_order(make_env) -> None:
    async with make_env(order_saga.WORKFLOWS, order_saga.ACTIVITIES) as env:
        handle = await env.client.start_workflow(OrderSaga.run, order(shipping_unavailable=True), id="order-noship")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()

        assert "compensated: refund_card, release_inventory" in str(info.value.cause)
        history = await handle.history()
        assert scheduled_activities(history) == [
            "reserve_inventory", "charge_card", "ship_order",
            "refund_card", "release_inventory",  # last done, first undone
        ]
        completed = [e.body.activity_id for e in history if e.type == "ActivityCompleted"]
        scheduled = {e.body.activity_id: e.body.activity_type for e in history if e.type == "ActivityScheduled"}
        assert [scheduled[a] for a in completed] == [
            "reserve_inventory", "charge_card", "refund_card", "release_inventory"]
        assert await handle.query(OrderSaga.status) == "FAILED"
        assert await handle.query(OrderSaga.progress) == [
            "reserve_inventory", "charge_card", "refund_card", "release_inventory"]
        replay = env.replay("order-noship")
        assert replay.ok, str(replay)


async def test_out_of_stock_has_nothing_to_undo(make_env) -> None:
    async with make_env(order_saga.WORKFLOWS, order_saga.ACTIVITIES) as env:
        with pytest.raises(WorkflowFailureError) as info:
            await env.client.execute_workflow(OrderSaga.run, order(out_of_stock=True), id="order-oos")
        assert "failed at reserve_inventory" in str(info.value.cause)
        assert "nothing to undo" in str(info.value.cause)
        history = await env.client.get_workflow_handle("order-oos").history()
        assert scheduled_activities(history) == ["reserve_inventory"]


async def test_cancel_while_waiting_for_pickup_compensates_then_ends_cancelled(make_env) -> None:
    async with make_env(order_saga.WORKFLOWS, order_saga.ACTIVITIES) as env:
        handle = await env.client.start_workflow(
            OrderSaga.run, order(pickup_delay_seconds=6 * 3600), id="order-cancel")
        await env.wait_idle()  # reserved and charged; now on the durable pickup timer
        assert await handle.query(OrderSaga.status) == "AWAITING_PICKUP"

        await handle.cancel(reason="customer changed their mind")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert info.value.status == "CANCELLED"

        history = await handle.history()
        types = [e.type for e in history]
        assert "WorkflowCancelRequested" in types and types[-1] == "WorkflowCancelled"
        assert scheduled_activities(history) == [
            "reserve_inventory", "charge_card", "refund_card", "release_inventory"]
        # The compensations were scheduled after the cancel request was recorded.
        cancel_seq = next(e.seq for e in history if e.type == "WorkflowCancelRequested")
        comp_seqs = [e.seq for e in history if e.type == "ActivityScheduled"
                     and e.body.activity_type in ("refund_card", "release_inventory")]
        assert all(s > cancel_seq for s in comp_seqs)
        replay = env.replay("order-cancel")
        assert replay.ok, str(replay)


async def test_terminate_ends_at_once_without_compensation(make_env) -> None:
    async with make_env(order_saga.WORKFLOWS, order_saga.ACTIVITIES) as env:
        handle = await env.client.start_workflow(
            OrderSaga.run, order(pickup_delay_seconds=3600), id="order-term")
        await env.wait_idle()
        await handle.terminate(reason="fraud")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert info.value.status == "TERMINATED"

        history = await handle.history()
        assert history[-1].type == "WorkflowTerminated"
        assert history[-1].body.reason == "fraud"
        assert scheduled_activities(history) == ["reserve_inventory", "charge_card"]
        assert (await handle.describe()).status == "TERMINATED"


async def test_queries_never_append_history(make_env) -> None:
    async with make_env(order_saga.WORKFLOWS, order_saga.ACTIVITIES) as env:
        handle = await env.client.start_workflow(
            OrderSaga.run, order(pickup_delay_seconds=600), id="order-query")
        await env.wait_idle()
        before = await handle.history()
        for _ in range(3):
            assert await handle.query(OrderSaga.status) == "AWAITING_PICKUP"
            assert await handle.query("progress") == ["reserve_inventory", "charge_card"]
        after = await handle.history()
        assert after == before

        result = await handle.result()
        assert result.status == "COMPLETED"
