"""workflow.unsafe and the @workflow.defn options of code ported from Temporal."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aion import workflow
from aion.exceptions import WorkflowFailureError
from aion.testing import WorkflowEnvironment, WorkflowTaskFailedError
from aion.workflow import FailurePolicy, NotInWorkflowError

with workflow.unsafe.imports_passed_through():
    import json as passed_json  # an ordinary import: there is no sandbox to pass through

#: What the workflow saw of replay, in the order its code ran (live and replayed runs alike).
SEEN: list[tuple[str, bool]] = []


@workflow.defn(sandboxed=False)
class Ported:
    @workflow.run
    async def run(self, n: int) -> str:
        with workflow.unsafe.imports_passed_through():
            import decimal
        with workflow.unsafe.sandbox_unrestricted():
            SEEN.append(("start", workflow.unsafe.is_replaying()))
        await workflow.sleep(timedelta(minutes=n))
        SEEN.append(("end", workflow.unsafe.is_replaying_history_events()))
        return passed_json.dumps({"n": str(decimal.Decimal(n)), "sandbox": workflow.unsafe.in_sandbox(),
                                  "unrestricted": workflow.unsafe.is_sandbox_unrestricted()})


async def test_unsafe_helpers_work_in_workflow_code_and_report_replay() -> None:
    SEEN.clear()
    async with WorkflowEnvironment.start_time_skipping(workflows=[Ported], resident=False) as env:
        out = await env.client.execute_workflow(Ported.run, 3, id="ported-1")
    assert passed_json.loads(out) == {"n": "3", "sandbox": False, "unrestricted": True}
    # the first pass is live; every later pass of "start" re-runs recorded history
    assert SEEN[0] == ("start", False)
    starts = [r for step, r in SEEN if step == "start"]
    assert len(starts) >= 2 and all(starts[1:])
    assert SEEN[-1] == ("end", False)  # the step that recorded the completion was live


def test_unsafe_is_replaying_outside_a_workflow_raises() -> None:
    with pytest.raises(NotInWorkflowError):
        workflow.unsafe.is_replaying()


class Declined(Exception):
    pass


@workflow.defn(failure_exception_types=[Declined])
class Picky:
    @workflow.run
    async def run(self, kind: str) -> None:
        if kind == "declined":
            raise Declined("card declined")
        raise KeyError("a bug")


async def test_failure_exception_types_fail_the_workflow_and_other_errors_hold_it() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Picky]) as env:
        with pytest.raises(WorkflowFailureError) as failed:
            await env.client.execute_workflow(Picky.run, "declined", id="picky-1")
        assert "card declined" in str(failed.value.__cause__)
        with pytest.raises(WorkflowTaskFailedError) as held:
            await env.client.execute_workflow(Picky.run, "bug", id="picky-2")
        assert held.value.failure.type == "KeyError"


def test_failure_exception_types_and_failure_policy_are_exclusive() -> None:
    with pytest.raises(TypeError, match="not both"):
        @workflow.defn(failure_policy=FailurePolicy(), failure_exception_types=[Declined])
        class Both:
            @workflow.run
            async def run(self) -> None:
                pass
    with pytest.raises(TypeError, match="exception classes"):
        workflow.defn(failure_exception_types=["Declined"])  # type: ignore[list-item]
