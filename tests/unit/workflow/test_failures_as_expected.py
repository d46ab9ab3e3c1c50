"""Workflow failures that behave as Python and Temporal users expect (issue "Lifecycle
operations", last section)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from aion import workflow
from aion.exceptions import TimeoutError as AionTimeoutError
from aion.testing import WorkflowEnvironment


@workflow.defn
class Impatient:
    @workflow.run
    async def run(self, how: str) -> str:
        try:
            if how == "condition":
                await workflow.wait_condition(lambda: False, timeout=timedelta(seconds=5))
            else:
                async with workflow.timeout(timedelta(seconds=5)):
                    await workflow.sleep(timedelta(hours=1))
        except asyncio.TimeoutError as exc:  # the builtin TimeoutError, as asyncio raises it
            return f"timed out: {type(exc).__name__}"
        return "not reached"


@pytest.mark.parametrize("how", ["condition", "timeout"])
async def test_a_durable_deadline_is_caught_as_the_builtin_timeout_error(how: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Impatient]) as env:
        assert await env.client.execute_workflow(Impatient.run, how, id=f"impatient-{how}") == "timed out: TimeoutError"
    assert issubclass(AionTimeoutError, TimeoutError) and issubclass(AionTimeoutError, asyncio.TimeoutError)


@workflow.defn
class Fragile:
    @workflow.run
    async def run(self, order: dict) -> int:
        return order["cents"]


async def test_a_failure_message_keeps_the_exception_type() -> None:
    from aion.exceptions import WorkflowFailureError

    async with WorkflowEnvironment.start_time_skipping(workflows=[Fragile]) as env:
        with pytest.raises(WorkflowFailureError) as info:
            await env.client.execute_workflow(Fragile.run, {}, id="fragile")
    assert str(info.value).endswith("ended FAILED: KeyError: 'cents'"), str(info.value)
