"""A step cut short by a crash: the history ends inside a step (the engine died while the
step's events were on their way to Kafka in two produce requests, so the log kept a prefix).

``from_history(repair=True)`` + the next ``handle`` (the step's own command, re-delivered)
must record exactly what the step still owes, with the step's command id, and the workflow
must go on as if nothing happened. Checked at every cut point of every multi-event step of
a few workflows that cover activities, parallel activities, side effects, timers, signals,
children and continue-as-new.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from itertools import groupby

import pytest
from runtime_sim import CONV, Sim

from aion import activity, workflow
from aion.exceptions import ApplicationError, NondeterminismError
from aion.model import Command, Event, FireTimer, RetryPolicy, WorkflowFailed, WorkflowTaskFailed
from aion.runtime import WorkflowExecution, effects

T = timedelta(seconds=30)


@activity.defn
async def echo(v: str) -> str:
    return v


@workflow.defn
class Busy:
    @workflow.run
    async def run(self, n: int) -> str:
        a, b = await asyncio.gather(
            workflow.execute_activity(echo, "a", start_to_close_timeout=T),
            workflow.execute_activity(echo, "b", start_to_close_timeout=T))
        x = workflow.side_effect(lambda: 7)
        await workflow.sleep(5)
        c = await workflow.execute_activity(echo, "c", start_to_close_timeout=T)
        if n > 0:
            workflow.continue_as_new(n - 1)
        return f"{a}{b}{c}{x}"


@workflow.defn
class Child:
    @workflow.run
    async def run(self, v: int) -> int:
        await workflow.sleep(1)
        return v + 1


@workflow.defn
class Parent:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.go)
        one = await workflow.execute_child_workflow(Child.run, 1, id="kid-1")
        two = await workflow.execute_child_workflow(Child.run, 2, id="kid-2")
        return one + two

    @workflow.signal
    def start(self) -> None:
        self.go = True


@workflow.defn
class Flaky:
    """Fails its first two attempts: its retry policy starts the next run in the closing step."""

    @workflow.run
    async def run(self) -> int:
        if workflow.info().attempt < 3:
            raise ApplicationError(f"attempt {workflow.info().attempt}")
        return workflow.info().attempt


def _full_run(wf: object, *args: object, signal: str | None = None, **start: object) -> Sim:
    s = Sim([Busy, Child, Parent, Flaky], [echo])
    s.start(wf, *args, id="wf-1", **start)
    if signal:
        s.settle()
        s.signal("wf-1", signal)
    s.run()
    return s


def _steps(history: list[Event]) -> list[list[Event]]:
    return [list(g) for _, g in groupby(history, key=lambda e: e.command_id)]


def _same(a: Event, b: Event) -> bool:
    return (a.seq, a.run_id, a.command_id, a.body) == (b.seq, b.run_id, b.command_id, b.body)


SCENARIOS = [
    pytest.param(Busy, (1,), None, "abc7", {}, id="activities-timer-side-effect-continue-as-new"),
    pytest.param(Parent, (), "start", 5, {}, id="signal-children"),
    # a failed run's close and the next run's start are one step
    pytest.param(Flaky, (), None, 3, {"retry_policy": RetryPolicy(initial_interval_ms=10, maximum_attempts=5)},
                 id="workflow-retry-policy"),
]


@pytest.mark.parametrize("wf,args,signal,result,start", SCENARIOS)
def test_every_cut_inside_a_step_is_repaired_by_the_redelivered_command(
        wf: object, args: tuple[object, ...], signal: str | None, result: object, start: dict[str, object]) -> None:
    s = _full_run(wf, *args, signal=signal, **start)
    assert s.value("wf-1") == result
    full = s.history("wf-1")
    commands = {cmd.command_id: (cmd, at) for cmd, at in s.processed if cmd.workflow_id == "wf-1"}
    cuts = 0
    for step in _steps(full):
        for keep in range(1, len(step)):
            cut = step[0].seq - 1 + keep  # events kept: full[:cut]
            ex = WorkflowExecution.from_history(s.registry, "wf-1", full[:cut], repair=True)
            assert not ex.held, f"cut after seq {cut}: {ex.load_failure}"
            cmd, at = commands[step[0].command_id]
            repaired = ex.handle(cmd, at)
            owed = step[keep:]
            assert len(repaired.events) == len(owed), (cut, [e.type for e in repaired.events], [e.type for e in owed])
            assert all(_same(a, b) for a, b in zip(repaired.events, owed)), (
                cut, [(e.seq, e.body) for e in repaired.events], [(e.seq, e.body) for e in owed])
            # The effects of what was owed are performed now (they never were).
            kinds = {type(e).__name__ for e in repaired.effects}
            if any(e.type == "ActivityScheduled" for e in owed):
                assert "DispatchActivity" in kinds
            if any(e.type == "TimerStarted" for e in owed):
                assert "ScheduleTimer" in kinds
            if any(e.type == "ChildWorkflowStarted" for e in owed):
                assert "SendCommand" in kinds
            cuts += 1
    assert cuts >= 3  # the scenario really has multi-event steps


def test_a_repaired_workflow_runs_to_the_same_end() -> None:
    """Cut the first step (start + two activities) after WorkflowStarted, repair, then let the
    simulation drive the rest: the same result and the same history as the uncut run."""
    full_sim = _full_run(Busy, 0)
    full = full_sim.history("wf-1")
    s = Sim([Busy, Child, Parent], [echo])
    start = s.start(Busy, 0, id="wf-1")
    s.process(s.commands.popleft())
    s.log["wf-1"] = s.log["wf-1"][:1]  # the crash: only WorkflowStarted reached the log
    s.tasks.clear()  # ... and no effect left the engine
    s.execs["wf-1"] = WorkflowExecution.from_history(s.registry, "wf-1", s.log["wf-1"], repair=True)
    s.send(start)  # re-delivered: its offset was never committed
    s.run()
    assert s.value("wf-1") == "abc7"
    assert [e.body for e in s.history("wf-1")] == [e.body for e in full]


def test_without_repair_a_cut_history_replays_as_a_divergence() -> None:
    """``aion replay check`` and the testing tools keep the strict reading."""
    full = _full_run(Busy, 0).history("wf-1")
    first = _steps(full)[0]
    assert len(first) == 3  # WorkflowStarted + two ActivityScheduled
    ex = WorkflowExecution.from_history(Sim([Busy], [echo]).registry, "wf-1", full[:2])
    assert ex.held and isinstance(ex.load_failure, NondeterminismError)


def test_a_history_cut_after_the_last_task_failure_owes_the_workflow_failure() -> None:
    @workflow.defn(name="Broken", failure_policy=workflow.FailurePolicy(
        workflow_failure_types=(), task_retry=workflow.RetryPolicy(maximum_attempts=1)))
    class Broken:
        @workflow.run
        async def run(self) -> None:
            raise KeyError("a bug")

    s = Sim([Broken])
    s.start(Broken, id="wf-1")
    s.run()
    full = s.history("wf-1")
    assert [e.type for e in full][-2:] == ["WorkflowTaskFailed", "WorkflowFailed"]
    cut = full[:-1]
    assert isinstance(cut[-1].body, WorkflowTaskFailed) and cut[-1].body.retry_at_ms is None
    ex = WorkflowExecution.from_history(s.registry, "wf-1", cut, repair=True)
    cmd, at = next((c, t) for c, t in s.processed if c.command_id == full[-1].command_id)
    step = ex.handle(cmd, at)
    assert [type(e.body) for e in step.events] == [WorkflowFailed]
    assert step.events[0].command_id == full[-1].command_id
    assert ex.status == "FAILED"


def test_repair_waits_for_any_next_command_and_a_timer_fire_also_triggers_it() -> None:
    """The owed events are recorded before whatever command comes first (a query excepted)."""
    full_sim = _full_run(Busy, 0)
    full = full_sim.history("wf-1")
    ex = WorkflowExecution.from_history(full_sim.registry, "wf-1", full[:1], repair=True)
    stale_fire = Command("fire:x", "wf-1", 0, FireTimer(full[0].run_id, "no-such-timer", 0))
    step = ex.handle(stale_fire, full[0].recorded_at_ms)
    assert [e.type for e in step.events] == ["ActivityScheduled", "ActivityScheduled"]
    assert {e.command_id for e in step.events} == {full[0].command_id}
    assert sum(isinstance(e, effects.DispatchActivity) for e in step.effects) == 2
    assert ex.handle(stale_fire, full[0].recorded_at_ms).events == []  # owed once, not twice
    assert CONV is not None
