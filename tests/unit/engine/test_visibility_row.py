"""The visibility row of a continue-as-new chain describes the current run (as Temporal lists an
execution): its start time and task queue, not the first run's."""

from __future__ import annotations

import json

from aion import workflow
from aion.converter import default_converter
from aion.engine._store import visibility_row
from aion.model import Command, FireTimer, StartWorkflow
from aion.runtime import Registry, WorkflowExecution
from aion.runtime.effects import ScheduleTimer


@workflow.defn
class Hops:
    @workflow.run
    async def run(self, left: int) -> str:
        await workflow.sleep(1)
        if left:
            workflow.continue_as_new(left - 1)
        return "done"


def test_a_chain_is_listed_with_its_current_run() -> None:
    conv = default_converter()
    ex = WorkflowExecution.new(Registry(workflows=[Hops]), "hops")
    step = ex.handle(Command("c1", "hops", 1_000, StartWorkflow("Hops", conv.to_payloads([1]), task_queue="q1")), 1_000)
    first = json.loads(visibility_row(ex))
    assert (first["started_at_ms"], first["task_queue"], first["status"]) == (1_000, "q1", "RUNNING")
    timer = next(e for e in step.effects if isinstance(e, ScheduleTimer))
    ex.handle(Command("c2", "hops", 5_000, FireTimer(run_id=timer.run_id, timer_id=timer.timer_id,
                                                      fire_at_ms=timer.fire_at_ms)), 5_000)
    row = json.loads(visibility_row(ex))
    assert row["run_id"] != first["run_id"] and row["status"] == "RUNNING"
    assert row["started_at_ms"] == 5_000  # the second run's start, not the chain's
    assert row["task_queue"] == "q1"
