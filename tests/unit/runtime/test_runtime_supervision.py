"""Supervision: workflow failures vs task failures (held + retried), deadlocks, divergence."""

from __future__ import annotations

import time
from datetime import timedelta

from runtime_sim import CONV, Sim

from aion import activity, workflow
from aion.exceptions import ApplicationError, FailureError, NondeterminismError, failure_to_exception
from aion.model import Command, FireTimer, QueryWorkflow, SignalWorkflow
from aion.runtime import Registry, WorkflowExecution
from aion.workflow import FailurePolicy, RetryPolicy

STATE = {"bug": True, "spin": 0.0, "variant": "a"}


@activity.defn
async def step(name: str) -> str:
    return f"did {name}"


HOLD = FailurePolicy(
    workflow_failure_types=(FailureError,),
    task_retry=RetryPolicy(initial_interval=timedelta(seconds=10), maximum_attempts=3),
    deadlock_timeout=timedelta(milliseconds=200),
)


@workflow.defn(failure_policy=HOLD)
class Buggy:
    def __init__(self) -> None:
        self.signals: list[str] = []

    @workflow.run
    async def run(self) -> str:
        a = await workflow.execute_activity(step, "one")
        if STATE["bug"]:
            {}["missing"]  # a bug: KeyError is not a FailureError -> the task fails, the workflow is held
        if STATE["spin"]:
            end = time.monotonic() + STATE["spin"]
            while time.monotonic() < end:  # blocks the engine: the watchdog interrupts it
                pass
        await workflow.wait_condition(lambda: len(self.signals) >= 1)
        b = await workflow.execute_activity(step, "two")
        return f"{a}, {b}, {self.signals}"

    @workflow.signal
    def go(self, v: str) -> None:
        self.signals.append(v)

    @workflow.query
    def seen(self) -> list[str]:
        return self.signals


@workflow.defn
class FailsOnPurpose:
    @workflow.run
    async def run(self) -> str:
        raise ApplicationError("business rule", {"order": 1}, type="Rule", non_retryable=True)


@workflow.defn
class RaisesBug:
    @workflow.run
    async def run(self) -> str:
        return str(1 / 0)


def setup_function() -> None:
    STATE.update(bug=True, spin=0.0, variant="a")


def test_exception_escaping_run_fails_the_workflow_with_the_chain() -> None:
    s = Sim([FailsOnPurpose, RaisesBug], [])
    s.start(FailsOnPurpose)
    s.start(RaisesBug, id="wf-2")
    s.run()
    r = s.result()
    assert r.status == "FAILED" and r.failure is not None
    err = failure_to_exception(r.failure)
    assert isinstance(err, ApplicationError) and err.type == "Rule" and err.details == ({"order": 1},)
    assert err.non_retryable
    r2 = s.result("wf-2")  # default policy: any exception fails the workflow
    assert r2.status == "FAILED" and r2.failure is not None and r2.failure.type == "ZeroDivisionError"


def test_bug_holds_the_workflow_and_a_fixed_deploy_resumes_it() -> None:
    s = Sim([Buggy], [step])
    s.start(Buggy)
    s.settle()
    ex = s.ex("wf-1")
    assert ex.status == "RUNNING" and ex.held
    wtf = [e.body for e in s.history() if e.type == "WorkflowTaskFailed"]
    assert len(wtf) == 1 and wtf[0].failure.type == "KeyError" and wtf[0].attempt == 1
    # inputs are still recorded while held; queries say why they cannot be answered
    s.signal("wf-1", "go", "x")
    s.settle()
    assert s.types()[-1] == "SignalReceived"
    r = ex.query(Command("q", "wf-1", s.now, QueryWorkflow("seen", [])))
    assert r.kind == "ERROR" and r.failure is not None and "held" in r.failure.message
    # the retry timer fires with the bug still there: attempt 2
    s.fire_next_timer()
    s.settle()
    assert [e.body.attempt for e in s.history() if e.type == "WorkflowTaskFailed"] == [1, 2]
    # deploy the fix; the next retry replays, resumes, and the workflow completes
    STATE["bug"] = False
    s.run()
    assert s.value() == "did one, did two, ['x']"
    types = s.types()
    assert types.count("MarkerRecorded") == 2  # two resumes
    # and the whole history replays with the fixed code
    from aion.runtime import replay_history
    assert replay_history(s.registry, s.history(), strict=True).ok


def test_task_failures_exhaust_and_fail_the_workflow() -> None:
    s = Sim([Buggy], [step])
    s.start(Buggy)
    s.run()
    r = s.result()
    assert r.status == "FAILED" and r.failure is not None and r.failure.type == "KeyError"
    assert [e.body.attempt for e in s.history() if e.type == "WorkflowTaskFailed"] == [1, 2, 3]
    assert s.types()[-1] == "WorkflowFailed"


def test_deadlocked_step_is_interrupted_and_retried() -> None:
    STATE.update(bug=False, spin=30.0)
    s = Sim([Buggy], [step])
    t = time.monotonic()
    s.start(Buggy)
    s.settle()
    assert time.monotonic() - t < 5
    wtf = [e.body for e in s.history() if e.type == "WorkflowTaskFailed"]
    assert len(wtf) == 1 and wtf[0].failure.type == "DeadlockError"
    assert "did not yield" in wtf[0].failure.message
    STATE["spin"] = 0.0
    s.signal("wf-1", "go", "y")
    s.run()
    assert s.value() == "did one, did two, ['y']"


def test_divergence_at_load_holds_then_resumes_after_the_code_is_fixed() -> None:
    @workflow.defn(name="Versioned")
    class V1:
        @workflow.run
        async def run(self) -> str:
            await workflow.execute_activity(step, "a")
            await workflow.sleep(60)
            return await workflow.execute_activity(step, "b")

    @workflow.defn(name="Versioned")
    class V2:
        @workflow.run
        async def run(self) -> str:
            await workflow.sleep(5)  # a different first command
            return await workflow.execute_activity(step, "b")

    s = Sim([V1], [step])
    s.start("Versioned")
    s.settle()
    history = list(s.history())
    assert history[-1].type == "TimerStarted"
    # a new deploy with incompatible code
    reg2 = Registry([V2], [step])
    ex = WorkflowExecution.from_history(reg2, "wf-1", history)
    assert ex.held and isinstance(ex.load_failure, NondeterminismError)
    d = ex.load_failure
    assert d.seq == 2 and "ActivityScheduled" in d.expected and "TimerStarted" in d.found
    # the next step records the task failure first, then the input
    step_ = ex.handle(Command("sig", "wf-1", s.now, SignalWorkflow("nope", [])), s.now)
    assert [e.type for e in step_.events] == ["WorkflowTaskFailed"]
    assert step_.events[0].body.failure.type == "NondeterminismError"
    # roll back to compatible code: from_history replays fine; resume() continues right away
    ex3 = WorkflowExecution.from_history(s.registry, "wf-1", history + step_.events)
    assert ex3.held and ex3.load_failure is None
    now = s.now + 1000
    st = ex3.resume("deploy-1", now)
    assert [e.type for e in st.events] == ["MarkerRecorded"]
    assert ex3.status == "RUNNING" and not ex3.held


def test_runtime_bug_in_a_step_never_escapes_handle() -> None:
    @workflow.defn
    class BadArgs:
        @workflow.run
        async def run(self, n: int) -> int:
            return n

    s = Sim([BadArgs], [])
    # a payload that cannot be decoded as JSON: the start step fails as a task, not as an exception
    from aion.model import Payload, StartWorkflow
    s.send(Command("s", "wf-1", s.now, StartWorkflow("BadArgs", [Payload("application/json", b"{not json")])))
    s.settle()
    assert s.types() == ["WorkflowStarted", "WorkflowFailed"]  # PayloadConversionError is an Exception
