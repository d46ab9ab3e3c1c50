"""``err.failure.stack_trace`` (Temporal's spelling) and the remote stack in a printed error."""

from __future__ import annotations

import traceback
from datetime import timedelta

import pytest

from aion import activity, workflow
from aion.exceptions import ActivityError, ApplicationError, WorkflowFailureError
from aion.testing import WorkflowEnvironment


def _parse_amount(text: str) -> int:
    return int(text)  # raises ValueError for "ten"


@activity.defn
def charge_card(amount: str) -> int:
    return _parse_amount(amount)


@workflow.defn
class Checkout:
    @workflow.run
    async def run(self, amount: str) -> int:
        return await workflow.execute_activity(charge_card, amount, start_to_close_timeout=timedelta(seconds=5),
                                               retry_policy=workflow.RetryPolicy(maximum_attempts=1))


async def test_the_remote_stack_is_on_the_failure_and_in_the_printed_error() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Checkout], activities=[charge_card]) as env:
        with pytest.raises(WorkflowFailureError) as caught:
            await env.client.execute_workflow(Checkout.run, "ten", id="checkout-1")
    err = caught.value
    act = err.cause
    assert isinstance(act, ActivityError)
    app = act.cause
    assert isinstance(app, ApplicationError) and app.type == "ValueError"
    # Temporal's err.failure: message, stack_trace, cause
    assert "_parse_amount" in app.failure.stack_trace and "charge_card" in app.failure.stack_trace
    assert app.failure.message == str(app) and app.failure.type == "ValueError"
    assert act.failure.cause is not None and act.failure.cause.stack_trace == app.failure.stack_trace
    # printed (an uncaught error, a log's exc_info): the activity's own frames show
    printed = "".join(traceback.format_exception(err))
    assert "remote stack of ValueError" in printed and "_parse_amount" in printed
    assert str(app) == app.failure.message  # the message itself is unchanged


def test_a_local_failure_error_has_its_own_stack() -> None:
    try:
        raise ApplicationError("local", type="Oops")
    except ApplicationError as e:
        err = e
    assert "test_a_local_failure_error_has_its_own_stack" in err.failure.stack_trace
    assert err.failure.cause is None and err.failure.type == "Oops"
