"""Updates through ``env.client`` (the same client code as the Kafka client): execute_update,
start_update + result with time skipping, rejections as typed errors, update-with-start, and
the client's own checks of the limits module."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aion import activity, workflow
from aion.client import WithStartWorkflowOperation, WorkflowUpdateStage
from aion.exceptions import (
    ApplicationError,
    InvalidArgumentError,
    UpdateNotFoundError,
    WorkflowNotFoundError,
    WorkflowUpdateFailedError,
)
from aion.testing import WorkflowEnvironment


@activity.defn
async def reserve(item: str) -> str:
    return f"rsv-{item}"


@workflow.defn
class Basket:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.closed = False

    @workflow.update
    def add(self, item: str) -> int:
        self.items.append(item)
        return len(self.items)

    @add.validator
    def _validate_add(self, item: str) -> None:
        if item in self.items:
            raise ValueError(f"{item} is in the basket already")

    @workflow.update(name="reserve")
    async def reserve_later(self, item: str, minutes: int) -> str:
        await workflow.sleep(timedelta(minutes=minutes))
        rsv = await workflow.execute_activity(reserve, item, start_to_close_timeout=timedelta(seconds=10))
        self.items.append(rsv)
        return rsv

    @workflow.update
    async def fail(self) -> None:
        raise ApplicationError("no such thing", type="Nope")

    @workflow.signal
    def close(self) -> None:
        self.closed = True

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.closed)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.items


@pytest.fixture
async def env():  # type: ignore[no-untyped-def]
    async with WorkflowEnvironment.start_time_skipping(workflows=[Basket], activities=[reserve]) as e:
        yield e


async def test_execute_update_returns_the_handlers_result(env) -> None:  # type: ignore[no-untyped-def]
    h = await env.client.start_workflow(Basket.run, id="b-1")
    assert await h.execute_update(Basket.add, "tea") == 1
    assert await h.execute_update("add", "jam", id="second") == 2
    assert await h.execute_update("add", "jam", id="second") == 2  # the same update id: recorded outcome
    with pytest.raises(WorkflowUpdateFailedError, match="rejected by its validator") as ei:
        await h.execute_update(Basket.add, "tea")
    assert isinstance(ei.value.cause, ApplicationError) and "in the basket already" in str(ei.value.cause)
    with pytest.raises(WorkflowUpdateFailedError, match="Nope: no such thing") as ei:
        await h.execute_update(Basket.fail)
    assert isinstance(ei.value.cause, ApplicationError) and ei.value.cause.type == "Nope"
    with pytest.raises(UpdateNotFoundError, match="has no update 'remove'"):
        await h.execute_update("remove", "tea")
    with pytest.raises(InvalidArgumentError, match="update id"):
        await h.execute_update(Basket.add, "x", id="bad\x00id")
    await h.signal(Basket.close)
    assert await h.result() == ["tea", "jam"]
    kinds = [e.type for e in await h.history()]
    assert kinds.count("WorkflowUpdateAccepted") == 3 and kinds.count("WorkflowUpdateCompleted") == 3
    with pytest.raises(WorkflowNotFoundError, match="COMPLETED"):
        await h.execute_update(Basket.add, "late")


async def test_start_update_returns_at_acceptance_and_result_waits_with_time_skipping(env) -> None:  # type: ignore[no-untyped-def]
    h = await env.client.start_workflow(Basket.run, id="b-2")
    t0 = env.now()
    uh = await h.start_update(Basket.reserve_later, "milk", 90, id="rsv-1", wait_for_stage=WorkflowUpdateStage.ACCEPTED)
    assert uh.id == "rsv-1" and uh.name == "reserve" and uh.workflow_run_id
    assert await uh.result() == "rsv-milk"
    assert env.now() - t0 >= timedelta(minutes=90)
    await h.signal(Basket.close)
    assert await h.result() == ["rsv-milk"]


async def test_update_with_start_starts_the_workflow_then_updates_it(env) -> None:  # type: ignore[no-untyped-def]
    op = WithStartWorkflowOperation(Basket.run, id="b-3")
    assert await env.client.execute_update_with_start_workflow(Basket.add, "tea", start_workflow_operation=op) == 1
    h = await op.workflow_handle()
    op2 = WithStartWorkflowOperation(Basket.run, id="b-3")  # the run is open: only the update
    uh = await env.client.start_update_with_start_workflow(Basket.add, "jam", start_workflow_operation=op2)
    assert await uh.result() == 2
    await h.signal(Basket.close)
    assert await h.result() == ["tea", "jam"]
    kinds = [e.type for e in await h.history()]
    assert kinds.count("WorkflowStarted") == 1
