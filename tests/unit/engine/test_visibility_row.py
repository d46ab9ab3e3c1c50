"""The visibility row of a continue-as-new chain describes the current run (as Temporal lists an
execution): its start time and task queue, not the first run's."""

from __future__ import annotations

import json

from aion import workflow
from aion.exceptions import ApplicationError
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


@workflow.defn
class Tagged:
    @workflow.run
    async def run(self, fail: bool) -> str:
        workflow.upsert_search_attributes({"Stage": ["waiting"]})
        await workflow.sleep(1)
        if fail:
            raise ApplicationError("no")
        return "ok"


def test_the_engines_row_of_an_execution_is_the_row_read_through_getattr() -> None:
    """``visibility_row`` reads an execution's fields directly; ``_visibility_row_of`` (any
    object) through getattr: the same bytes at every point of a run's life."""
    from aion.bench.chain import build
    from aion.engine._store import _visibility_row_of

    conv = default_converter()
    reg = Registry(workflows=[Tagged, Hops])
    seen = []
    for wid, fail in (("ok", False), ("bad", True)):
        ex = WorkflowExecution.new(reg, wid)
        seen.append(ex)
        assert visibility_row(ex) == _visibility_row_of(ex)  # nothing recorded yet
        step = ex.handle(Command("c1", wid, 1_000, StartWorkflow("Tagged", conv.to_payloads([fail]), task_queue="q",
                                                                 search_attributes={"Team": "a"},
                                                                 search_attribute_types={"Team": "Keyword"})), 1_000)
        assert visibility_row(ex) == _visibility_row_of(ex)
        timer = next(e for e in step.effects if isinstance(e, ScheduleTimer))
        ex.handle(Command("c2", wid, 2_000, FireTimer(run_id=timer.run_id, timer_id=timer.timer_id,
                                                      fire_at_ms=timer.fire_at_ms)), 2_000)
        assert ex.status == ("FAILED" if fail else "COMPLETED")
        assert visibility_row(ex) == _visibility_row_of(ex)
        row = json.loads(visibility_row(ex))
        assert (row["closed_at_ms"], row["search_attributes"]["Team"]) == (2_000, "a")
    chain = build(run=4, timers=2)  # a continue-as-new chain, its current run under way
    assert visibility_row(chain) == _visibility_row_of(chain)
    assert json.loads(visibility_row(chain))["load_from_seq"] > 1
