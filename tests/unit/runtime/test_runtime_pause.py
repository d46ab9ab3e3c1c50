"""Pause and resume (``runtime/_lifecycle.py``): while paused, activity attempts and child starts
wait; timers, signals and the code go on; the resume dispatches what was held. Through the
in-process test environment (the same runtime the engine runs) and by replay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aion import activity, workflow
from aion.exceptions import WorkflowNotFoundError, WorkflowStateError
from aion.model import ActivityScheduled, ActivityStarted, TimerFired, WorkflowPaused, WorkflowResumed
from aion.runtime import Registry, WorkflowExecution
from aion.testing import WorkflowEnvironment

ran: list[str] = []


@activity.defn
async def step(name: str) -> str:
    ran.append(name)
    return f"did {name}"


@workflow.defn
class Chores:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.go)
        first = await workflow.execute_activity(step, "one", start_to_close_timeout=timedelta(seconds=10))
        await workflow.sleep(timedelta(minutes=5))
        return [first]


@workflow.defn
class Parent:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(timedelta(minutes=1))
        return await workflow.execute_child_workflow(Kid.run, id=f"{workflow.info().workflow_id}-kid")


@workflow.defn
class Kid:
    @workflow.run
    async def run(self) -> str:
        return "kid done"


def kinds(events) -> list[str]:  # type: ignore[no-untyped-def]
    return [type(e.body).__name__ for e in events]


async def test_a_paused_run_records_signals_and_code_but_dispatches_no_activity_until_resumed() -> None:
    ran.clear()
    async with WorkflowEnvironment.start_time_skipping(workflows=[Chores], activities=[step]) as env:
        h = await env.client.start_workflow(Chores.run, id="chores")
        await h.pause("maintenance")
        assert (await h.describe()).paused
        with pytest.raises(WorkflowStateError, match="already paused"):
            await h.pause()
        await h.signal(Chores.proceed)
        await env.sleep(timedelta(hours=1))
        history = env.history("chores")
        assert "SignalReceived" in kinds(history) and "ActivityScheduled" in kinds(history)
        assert "ActivityStarted" not in kinds(history) and ran == []  # held
        await h.resume("done")
        assert await h.result() == ["did one"] and ran == ["one"]
        history = env.history("chores")
        assert kinds(history).index("WorkflowResumed") < kinds(history).index("ActivityStarted")
        assert not (await h.describe()).paused
        with pytest.raises(WorkflowNotFoundError):
            await h.resume()


async def test_resume_of_a_run_that_is_not_paused_is_refused_and_records_nothing() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Chores], activities=[step]) as env:
        h = await env.client.start_workflow(Chores.run, id="not-paused")
        before = len(env.history("not-paused"))
        with pytest.raises(WorkflowStateError, match="neither paused nor held"):
            await h.resume()
        assert len(env.history("not-paused")) == before
        with pytest.raises(WorkflowNotFoundError):
            await env.client.get_workflow_handle("nobody").pause()


async def test_timers_fire_while_paused_and_a_child_start_waits_for_the_resume() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Parent, Kid]) as env:
        h = await env.client.start_workflow(Parent.run, id="parent")
        await h.pause()
        await env.sleep(timedelta(minutes=10))
        history = env.history("parent")
        assert "TimerFired" in kinds(history) and "ChildWorkflowStarted" in kinds(history)
        assert env.history("parent-kid") == []  # its start is held
        await h.resume()
        assert await h.result() == "kid done"


async def test_a_cancel_and_a_terminate_work_on_a_paused_run() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Chores], activities=[step]) as env:
        h = await env.client.start_workflow(Chores.run, id="paused-terminated")
        await h.pause()
        await h.terminate("gone")
        assert (await h.describe()).status == "TERMINATED"


async def test_a_pause_is_rebuilt_from_the_history_and_the_resume_dispatches_what_was_held() -> None:
    ran.clear()
    async with WorkflowEnvironment.start_time_skipping(workflows=[Chores], activities=[step]) as env:
        h = await env.client.start_workflow(Chores.run, id="replayed")
        await h.pause()
        await h.signal(Chores.proceed)
        history = env.history("replayed")
    # A new owner loads the history: the pause holds, the resume dispatches the held attempt.
    registry = Registry(workflows=[Chores], activities=[step])
    ex = WorkflowExecution.from_history(registry, "replayed", history)
    assert ex.run is not None and ex.run.paused_at_ms is not None
    assert all(type(e).__name__ != "DispatchActivity" for e in ex.recovery_effects(history[-1].recorded_at_ms))
    from aion.model import Command, ResumeWorkflow

    step_ = ex.handle(Command("resume-1", "replayed", history[-1].recorded_at_ms + 10, ResumeWorkflow()), history[-1].recorded_at_ms + 10)
    assert [type(e.body) for e in step_.events] == [WorkflowResumed]
    dispatched = [e for e in step_.effects if type(e).__name__ == "DispatchActivity"]
    assert len(dispatched) == 1 and dispatched[0].task.activity_type == "step"
    assert isinstance(history[-3].body, WorkflowPaused) or any(isinstance(e.body, WorkflowPaused) for e in history)
    assert not any(isinstance(e.body, (ActivityStarted, TimerFired)) for e in history)
    assert sum(isinstance(e.body, ActivityScheduled) for e in history) == 1


broken = {"on": True}


@workflow.defn
class Buggy:
    @workflow.run
    async def run(self) -> str:
        if broken["on"]:
            raise KeyError("cents")  # a bug: held (not failed) under the default FailurePolicy
        return "fixed"


async def test_resume_of_a_held_workflow_retries_its_task_at_once() -> None:
    broken["on"] = True
    async with WorkflowEnvironment.start_time_skipping(workflows=[Buggy]) as env:
        h = await env.client.start_workflow(Buggy.run, id="buggy")
        await env.sleep(timedelta(milliseconds=1))
        assert "WorkflowTaskFailed" in kinds(env.history("buggy"))
        broken["on"] = False  # the fix is deployed
        await h.resume("fix deployed")
        assert await h.result() == "fixed"
        events = env.history("buggy")
        history = kinds(events)
        assert "WorkflowResumed" not in history and history[-2:] == ["MarkerRecorded", "WorkflowCompleted"], history
        failed_at = next(e.recorded_at_ms for e in events if type(e.body).__name__ == "WorkflowTaskFailed")
        assert events[-2].recorded_at_ms - failed_at < 1000  # before the task retry timer (1 s) would fire
