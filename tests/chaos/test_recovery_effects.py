"""What the engine re-issues for a workflow whose last step was recorded by a worker that died
before performing it (no broker: the runtime on its own)."""

from __future__ import annotations

from aion.converter import default_converter
from aion.model import (ActivityTaskCompleted, ActivityTaskStarted, ChildWorkflowResult, Command, FireTimer,
                        StartWorkflow)
from aion.runtime import Registry, WorkflowExecution
from aion.runtime import effects as fx

import chaos_workflows as cw

conv = default_converter()


def test_a_closed_childs_result_to_its_parent_is_reissued() -> None:
    reg = Registry(workflows=[cw.ChildFlow], activities=[cw.work])
    child = WorkflowExecution.new(reg, "p-child")
    start = StartWorkflow(workflow_type="ChildFlow", input=conv.to_payloads([4]), request_id="r",
                          parent_workflow_id="p", parent_run_id="prun")
    child.handle(Command("start", "p-child", 1000, start), 1000)
    # the activity, then the timer whose fire closes the run
    rid = child.run_id
    assert rid is not None
    child.handle(Command("s", "p-child", 1001, ActivityTaskStarted(rid, "1", 1, "w")), 1001)
    child.handle(Command("c", "p-child", 1002, ActivityTaskCompleted(rid, "1", 1, conv.to_payload("done:child4"), "w")), 1002)
    last = child.handle(Command("f", "p-child", 1200, FireTimer(rid, "1", 1102)), 1200)
    sent = [e.command for e in last.effects if isinstance(e, fx.SendCommand)]
    assert [c.workflow_id for c in sent] == ["p"] and isinstance(sent[0].body, ChildWorkflowResult)

    # A new owner rebuilds the child from its history: the close's command comes again, same id.
    again = WorkflowExecution.from_history(reg, "p-child", child.history).recovery_effects(5000)
    assert [e.command for e in again if isinstance(e, fx.SendCommand)] == sent
