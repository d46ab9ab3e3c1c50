"""Checked by the type checker (``python -m mypy`` in ``.ci/run``), never run: the typed overloads
of the workflow API and the clients give the activity's, child's and workflow's result types, as
Temporal's SDK does. A line marked ``# type: ignore[...]`` must stay an error (mypy's
``warn_unused_ignores`` fails when it no longer is one).

Not a pytest module (its name does not start with ``test_``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, assert_type

from aion import activity, workflow
from aion.client import Client, WorkflowHandle
from aion.testing import TestWorkflowHandle, WorkflowEnvironment
from aion.workflow import ActivityHandle, ChildWorkflowHandle


@activity.defn
async def charge(order_id: str) -> int:
    return 1


@activity.defn
async def refund(order_id: str, cents: int) -> bool:
    return True


@activity.defn
def audit() -> str:  # a sync activity
    return "ok"


@activity.defn
async def ping() -> None:
    return None


@workflow.defn
class Child:
    @workflow.run
    async def run(self, n: int) -> list[str]:
        return [str(n)]


@workflow.defn
class Order:
    @workflow.run
    async def run(self, order_id: str) -> dict[str, int]:
        t = timedelta(seconds=5)
        assert_type(await workflow.execute_activity(charge, order_id, start_to_close_timeout=t), int)
        assert_type(await workflow.execute_activity(refund, order_id, 3, start_to_close_timeout=t), bool)
        assert_type(await workflow.execute_activity(audit, start_to_close_timeout=t), str)
        assert_type(await workflow.execute_activity(ping, start_to_close_timeout=t), None)
        assert_type(await workflow.execute_activity("charge", order_id, start_to_close_timeout=t), Any)
        assert_type(workflow.start_activity(charge, order_id, start_to_close_timeout=t), ActivityHandle[int])
        assert_type(await workflow.execute_local_activity(charge, order_id, start_to_close_timeout=t), int)
        assert_type(workflow.start_local_activity(audit, start_to_close_timeout=t), ActivityHandle[str])
        # The one argument is checked against the activity's parameter, options by name.
        await workflow.execute_activity(charge, 42, start_to_close_timeout=t)  # type: ignore[arg-type]
        await workflow.execute_activity(charge, order_id, start_to_close=t)  # type: ignore[call-overload]

        assert_type(await workflow.execute_child_workflow(Child.run, 2), list[str])
        assert_type(await workflow.start_child_workflow(Child.run, 2, id="c"), ChildWorkflowHandle[list[str]])
        assert_type(await workflow.execute_child_workflow("Child", 2), Any)
        await workflow.execute_child_workflow(Child.run, "two")  # type: ignore[arg-type]
        return {order_id: 1}


@workflow.defn
class NoArgs:
    @workflow.run
    async def run(self) -> float:
        return 1.0


async def the_client(client: Client) -> None:
    handle = await client.start_workflow(Order.run, "o-1", id="order-1")
    assert_type(handle, WorkflowHandle[dict[str, int]])
    assert_type(await handle.result(), dict[str, int])
    assert_type(await client.start_workflow(NoArgs.run, id="n"), WorkflowHandle[float])
    assert_type(await client.start_workflow("Order", "o-1", id="order-1"), WorkflowHandle[Any])
    assert_type(await client.execute_workflow(Order.run, "o-1", id="order-1"), dict[str, int])
    assert_type(await client.execute_workflow(NoArgs.run, id="n", result_timeout=5.0), float)
    assert_type(await client.execute_workflow(Order, "o-1", id="order-1"), Any)
    assert_type(client.get_workflow_handle("order-1"), WorkflowHandle[Any])
    await client.start_workflow(Order.run, 7, id="order-1")  # type: ignore[arg-type]
    await client.start_workflow(Order.run, "o-1", id="order-1", task_q="x")  # type: ignore[call-overload]


async def the_test_client(env: WorkflowEnvironment) -> None:
    handle = await env.client.start_workflow(Order.run, "o-1", id="order-1")
    assert_type(handle, TestWorkflowHandle[dict[str, int]])
    assert_type(await handle.result(), dict[str, int])
    assert_type(await env.client.execute_workflow(Order.run, "o-1", id="order-1"), dict[str, int])
