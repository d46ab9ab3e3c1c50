"""``workflow.get_external_workflow_handle(id)``: signal and cancel another workflow by its id."""

from __future__ import annotations

import asyncio

import pytest

from aion import workflow
from aion.exceptions import InvalidArgumentError
from aion.testing import WorkflowEnvironment


@workflow.defn
class Mailbox:
    def __init__(self) -> None:
        self.letters: list[str] = []

    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.wait_condition(lambda: False)
        except asyncio.CancelledError:
            return f"cancelled holding {self.letters}"
        return "unreachable"

    @workflow.signal
    def post(self, letter: str) -> None:
        self.letters.append(letter)

    @workflow.query
    def count(self) -> int:
        return len(self.letters)


@workflow.defn
class Postman:
    @workflow.run
    async def run(self, target: str, cancel: bool) -> str:
        other = workflow.get_external_workflow_handle(target)
        await other.signal(Mailbox.post, "one")
        await other.signal("post", args=["two"])  # Temporal's args= keyword
        typed = workflow.get_external_workflow_handle_for(Mailbox.run, target)
        await typed.signal(Mailbox.post, "three")
        if cancel:
            await workflow.sleep(1)
            await other.cancel()
        return repr(other)


@pytest.mark.parametrize("resident", [True, False])
async def test_signal_then_cancel_another_workflow(resident: bool) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Mailbox, Postman], resident=resident) as env:
        box = await env.client.start_workflow(Mailbox.run, id="box-1")
        out = await env.client.execute_workflow(Postman.run, "box-1", True, id="postman-1")
        assert out == "ExternalWorkflowHandle(id='box-1', run_id=None)"
        assert await box.result() == "cancelled holding ['one', 'two', 'three']"
        sent = [e for e in await env.client.get_workflow_handle("postman-1").history()
                if e.type in ("SignalSent", "MarkerRecorded")]
        assert [e.type for e in sent] == ["SignalSent"] * 3 + ["MarkerRecorded"]
        assert (sent[-1].body.marker_name, sent[-1].body.marker_id) == ("cancel_external", "box-1")
        assert (await box.describe()).status == "COMPLETED"  # its code caught the cancellation


async def test_a_cancel_for_one_run_spares_the_next_run() -> None:
    @workflow.defn(name="CancelOldRun")
    class CancelOldRun:
        @workflow.run
        async def run(self, target: str, run_id: str) -> None:
            await workflow.get_external_workflow_handle(target, run_id=run_id).cancel()

    async with WorkflowEnvironment.start_time_skipping(workflows=[Mailbox, CancelOldRun]) as env:
        first = await env.client.start_workflow(Mailbox.run, id="box-2")
        await first.terminate("replaced")
        second = await env.client.start_workflow(Mailbox.run, id="box-2")
        assert second.run_id != first.run_id
        await env.client.execute_workflow(CancelOldRun.run, "box-2", first.run_id, id="canceller-2")
        await asyncio.sleep(0.05)
        assert (await env.client.get_workflow_handle("box-2").describe()).status == "RUNNING"


async def test_a_bad_id_is_refused_in_workflow_code() -> None:
    @workflow.defn(name="BadTarget")
    class BadTarget:
        @workflow.run
        async def run(self) -> str:
            try:
                workflow.get_external_workflow_handle("")
            except InvalidArgumentError as err:
                return str(err)
            return "accepted"

    async with WorkflowEnvironment.start_time_skipping(workflows=[BadTarget]) as env:
        out = await env.client.execute_workflow(BadTarget.run, id="bad-target")
    assert out.startswith("get_external_workflow_handle: ") and "workflow id" in out
