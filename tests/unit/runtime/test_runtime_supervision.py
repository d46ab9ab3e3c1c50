"""Supervision: workflow failures vs task failures (held + retried), deadlocks, divergence."""

from __future__ import annotations

import time
from datetime import timedelta

from runtime_sim import CONV, Sim

from aion import activity, workflow
from aion.exceptions import ApplicationError, DeadlockError, FailureError, NondeterminismError, failure_to_exception
from aion.model import Command, FireTimer, QueryWorkflow, SignalWorkflow
from aion.runtime import Registry, WorkflowExecution
from aion.workflow import FailurePolicy, RetryPolicy

STATE = {"bug": True, "spin": 0.0, "variant": "a", "spins": 0}


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
            STATE["spins"] += 1
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


@workflow.defn(failure_policy=FailurePolicy(workflow_failure_types=(Exception,)))
class FailsOnAnyError:
    @workflow.run
    async def run(self) -> str:
        return str(1 / 0)


@workflow.defn(failure_exception_types=[Exception])  # Temporal's spelling of the same policy
class FailsOnAnyErrorTemporalStyle:
    @workflow.run
    async def run(self) -> str:
        return str(1 / 0)


def setup_function() -> None:
    STATE.update(bug=True, spin=0.0, variant="a", spins=0)


def test_exception_escaping_run_fails_the_workflow_with_the_chain() -> None:
    s = Sim([FailsOnPurpose, RaisesBug, FailsOnAnyError, FailsOnAnyErrorTemporalStyle], [])
    s.start(FailsOnPurpose)
    s.start(RaisesBug, id="wf-2")
    s.start(FailsOnAnyError, id="wf-3")
    s.start(FailsOnAnyErrorTemporalStyle, id="wf-4")
    s.settle()
    r = s.result()
    assert r.status == "FAILED" and r.failure is not None
    err = failure_to_exception(r.failure)
    assert isinstance(err, ApplicationError) and err.type == "Rule" and err.details == ({"order": 1},)
    assert err.non_retryable
    # default policy (as Temporal's): only a FailureError fails the workflow; a bug holds it
    ex2 = s.ex("wf-2")
    assert ex2.status == "RUNNING" and ex2.held
    assert [e.body.failure.type for e in s.history("wf-2") if e.type == "WorkflowTaskFailed"] == ["ZeroDivisionError"]
    # failing on every exception is an explicit policy, in either spelling
    for wid in ("wf-3", "wf-4"):
        r3 = s.result(wid)
        assert r3.status == "FAILED" and r3.failure is not None and r3.failure.type == "ZeroDivisionError"


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


@workflow.defn
class Ticker:
    @workflow.run
    async def run(self, n: int) -> int:
        for _ in range(n):
            await workflow.sleep(timedelta(seconds=30))
        return n


def test_deadlocked_step_is_interrupted_and_not_rerun_by_its_retry_timer() -> None:
    """A deadlocking step stalls the engine for as long as it runs: it runs once per code, not
    at every task retry, while the other workflows of the engine go on."""
    STATE.update(bug=False, spin=30.0)
    s = Sim([Buggy, Ticker], [step])
    t = time.monotonic()
    s.start(Buggy)
    s.start(Ticker, 20, id="ticker")
    s.settle()
    assert time.monotonic() - t < 5
    wtf = [e.body for e in s.history() if e.type == "WorkflowTaskFailed"]
    assert len(wtf) == 1 and wtf[0].failure.type == "DeadlockError"
    assert "did not yield" in wtf[0].failure.message and "Not retried on this code" in wtf[0].failure.message
    err = failure_to_exception(wtf[0].failure)
    assert isinstance(err, DeadlockError) and err.code_id == s.registry.code_id
    assert STATE["spins"] == 1
    # Ten minutes of workflow time: the ticker's 20 timers and the held task's retry timer fire.
    for _ in range(200):
        if s.ex("ticker").status != "RUNNING":
            break
        s.fire_next_timer()
        s.settle()
    assert s.value("ticker") == 20
    task_fires = [c for c, _ in s.processed if isinstance(c.body, FireTimer) and c.body.timer_id == "task/1"]
    assert len(task_fires) >= 5  # 10 s, 20 s, 40 s, 80 s, 160 s, 320 s after the deadlock ...
    assert STATE["spins"] == 1  # ... and none of them ran the blocking step again
    assert s.types()[-1] == "WorkflowTaskFailed" and s.ex("wf-1").held  # nothing recorded by them
    assert any(k[2] == "task/1" for k in s.timers)  # the timer is re-armed, not dropped
    # inputs are still recorded while held
    s.signal("wf-1", "go", "y")
    s.settle()
    assert s.types()[-1] == "SignalReceived" and STATE["spins"] == 1
    # an explicit resume retries at once, even on the same code
    st = s.ex("wf-1").resume("operator-1", s.now)
    for ev in st.events:
        s.log["wf-1"].append(ev)
    for eff in st.effects:
        s.perform(eff)
    assert STATE["spins"] == 2
    assert [e.body.attempt for e in s.history() if e.type == "WorkflowTaskFailed"] == [1, 2]
    # deploy the fix: a new engine process (a new Registry, i.e. other code) rebuilds the
    # workflow from its history, and the next fire of the task timer retries it
    STATE["spin"] = 0.0
    s.registry = Registry([Buggy, Ticker], [step])
    s.resident = False
    s.run()
    assert s.value() == "did one, did two, ['y']"
    assert STATE["spins"] == 2


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
    # PayloadConversionError is not a FailureError: the task fails and the workflow is held
    assert s.types() == ["WorkflowStarted", "WorkflowTaskFailed"]
    assert s.history()[-1].body.failure.type == "PayloadConversionError"
    assert s.ex("wf-1").held
