"""Plain asyncio in workflow code: deterministic, and durable where it waits."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from runtime_sim import Hang, Sim

from aion import RetryPolicy, activity, workflow
from aion.exceptions import ActivityError, TimeoutError
from aion.runtime import replay_history
from aion.runtime._loop import WorkflowLoopError

T = timedelta(seconds=30)


@activity.defn
async def act(n: int) -> int:
    return n


@workflow.defn
class AsyncioBits:
    @workflow.run
    async def run(self, mode: str) -> object:
        if mode == "asyncio.sleep":
            t0 = workflow.now()
            await asyncio.sleep(90)
            return (workflow.now() - t0).total_seconds()
        if mode == "asyncio.timeout":
            try:
                async with asyncio.timeout(5):
                    await workflow.execute_activity(act, 1)
            except asyncio.TimeoutError:
                return "asyncio timeout"
        if mode == "wait_for":
            try:
                await asyncio.wait_for(workflow.execute_activity(act, 1), timeout=3)
            except asyncio.TimeoutError:
                return "wait_for timeout"
        if mode == "as_completed":
            hs = [workflow.start_activity(act, n, start_to_close_timeout=T) for n in (1, 2, 3)]
            return [await f for f in asyncio.as_completed(hs)]
        if mode == "taskgroup":
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(workflow.execute_activity(act, 1, start_to_close_timeout=T))
                    tg.create_task(workflow.execute_activity(act, -1, start_to_close_timeout=T,
                                                             retry_policy=RetryPolicy(maximum_attempts=1)))
            except BaseExceptionGroup as eg:
                return f"fail-fast: {len(eg.exceptions)} error(s) {type(eg.exceptions[0]).__name__}"
        if mode == "wait_condition_timeout":
            try:
                await workflow.wait_condition(lambda: False, timeout=timedelta(minutes=1))
            except TimeoutError:
                return "condition timed out"
        if mode == "io":
            await asyncio.get_running_loop().getaddrinfo("example.com", 80)
        if mode == "nested_tasks":
            async def child(n: int) -> int:
                await workflow.sleep(n)
                return n * 10
            tasks = [asyncio.create_task(child(n)) for n in (3, 1, 2)]
            return list(await asyncio.gather(*tasks))
        if mode == "info":
            i = workflow.info()
            return [i.workflow_id, i.workflow_type, i.attempt, i.history_length, i.continue_as_new_suggested,
                    workflow.in_workflow()]
        return "?"


def run(mode: str, script: dict | None = None, **kw: object) -> Sim:
    s = Sim([AsyncioBits], [act], script=script or {}, **kw)  # type: ignore[arg-type]
    s.start(AsyncioBits, mode)
    s.run()
    res = replay_history(s.registry, s.history(), strict=True)
    assert res.ok, str(res)
    return s


def test_asyncio_sleep_is_a_durable_timer() -> None:
    s = run("asyncio.sleep")
    assert s.value() == 90.0
    assert s.types() == ["WorkflowStarted", "TimerStarted", "TimerFired", "WorkflowCompleted"]


def test_asyncio_timeout_and_wait_for_use_durable_timers() -> None:
    s = run("asyncio.timeout", {"act": [Hang]})
    assert s.value() == "asyncio timeout"
    assert s.types()[:3] == ["WorkflowStarted", "TimerStarted", "ActivityScheduled"]
    assert "ActivityCancelRequested" in s.types()
    s = run("wait_for", {"act": [Hang]})
    assert s.value() == "wait_for timeout"


def test_as_completed_yields_in_completion_order() -> None:
    s = Sim([AsyncioBits], [act], auto_activities=False)
    s.start(AsyncioBits, "as_completed")
    s.settle()
    tasks = list(s.tasks)
    s.tasks.clear()
    for t in (tasks[1], tasks[2], tasks[0]):
        s.run_task(t)
        s.settle()
    assert s.value() == [2, 3, 1]
    assert replay_history(s.registry, s.history(), strict=True).ok


def test_taskgroup_fails_fast_and_cancels_the_sibling() -> None:
    def outcome(task: object, args: list) -> object:
        return RuntimeError("neg") if args[0] < 0 else Hang

    s = Sim([AsyncioBits], [act], script={"act": outcome})
    s.start(AsyncioBits, "taskgroup")
    s.run()
    assert s.value() == "fail-fast: 1 error(s) ActivityError"
    assert "ActivityCancelRequested" in s.types()


def test_wait_condition_timeout() -> None:
    assert run("wait_condition_timeout").value() == "condition timed out"


def test_io_in_workflow_code_holds_the_workflow_with_a_clear_error() -> None:
    # WorkflowLoopError is a bug of the workflow code, not a FailureError: the task fails and
    # the workflow is held until fixed code is deployed (the default FailurePolicy)
    s = Sim([AsyncioBits], [act])
    s.start(AsyncioBits, "io")
    s.settle()
    assert s.ex("wf-1").held and s.types() == ["WorkflowStarted", "WorkflowTaskFailed"]
    f = s.history()[-1].body.failure
    assert f.type == "WorkflowLoopError" and "activity" in f.message


def test_tasks_and_gather_are_deterministic() -> None:
    s = run("nested_tasks")
    assert s.value() == [30, 10, 20]
    timers = [e.body.duration_ms for e in s.history() if e.type == "TimerStarted"]
    assert timers == [3000, 1000, 2000]


def test_info() -> None:
    assert run("info").value() == ["wf-1", "AsyncioBits", 1, 1, False, True]


def test_workflow_api_outside_a_workflow_raises() -> None:
    with pytest.raises(workflow.NotInWorkflowError):
        workflow.now()
    assert not workflow.in_workflow()

    async def inner() -> None:
        await workflow.sleep(1)

    with pytest.raises(workflow.NotInWorkflowError):
        asyncio.run(inner())
    assert WorkflowLoopError.__doc__


def test_a_loops_tasks_are_its_own_and_dispose_closes_only_them() -> None:
    """``WorkflowEventLoop.tasks()`` answers what ``asyncio.all_tasks(loop)`` does, from the loop's
    own tasks (``all_tasks`` walks every task of the process: every resident workflow's), and a
    disposed instance closes its pending coroutines — their ``finally`` runs — and no other's."""
    import functools

    from aion.bench.dispose import workflow_loop
    from aion.runtime._instance import WorkflowInstance

    closed: list[str] = []

    async def waits(name: str, fut: asyncio.Future[None]) -> None:
        try:
            await fut
        finally:
            closed.append(name)

    def loop_with(names: list[str]) -> Any:
        return workflow_loop([functools.partial(waits, n) for n in names])

    mine, mine_tasks = loop_with(["a", "b"])
    other, _ = loop_with(["x"])
    assert set(mine.tasks()) == asyncio.all_tasks(mine) == set(mine_tasks)
    inst = WorkflowInstance.__new__(WorkflowInstance)
    inst.disposed, inst.loop = False, mine
    inst.dispose()
    assert sorted(closed) == ["a", "b"] and mine.is_closed() and not other.is_closed()
    assert len(other.tasks()) == 1
    theirs = WorkflowInstance.__new__(WorkflowInstance)
    theirs.disposed, theirs.loop = False, other
    theirs.dispose()  # nothing left pending for the garbage collector to report later
    assert sorted(closed) == ["a", "b", "x"]
