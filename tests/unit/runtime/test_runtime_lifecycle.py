"""Starts, refusals, de-duplication, signals, cancel/terminate, timeouts, children, waiters."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from runtime_sim import CONV, Sim

from aion import activity, workflow
from aion.exceptions import ChildWorkflowError
from aion.model import (
    Command,
    FireTimer,
    GetResult,
    QueryWorkflow,
    SignalWithStart,
    SignalWorkflow,
    StartWorkflow,
)
from aion.runtime import WorkflowExecution, effects
from aion.workflow import ParentClosePolicy


@activity.defn
async def echo(v: str) -> str:
    return v


@workflow.defn
class Waits:
    def __init__(self) -> None:
        self.msgs: list[str] = []

    @workflow.run
    async def run(self, n: int) -> list[str]:
        await workflow.wait_condition(lambda: len(self.msgs) >= n)
        return self.msgs

    @workflow.signal
    def msg(self, m: str) -> None:
        self.msgs.append(m)

    @workflow.query
    def count(self, plus: int = 0) -> int:
        return len(self.msgs) + plus


def start_cmd(cid: str, wf: str = "w", reply: str | None = "r:0", n: int = 1, **kw: object) -> Command:
    return Command(cid, wf, 0, StartWorkflow("Waits", CONV.to_payloads([n]), **kw), reply_to=reply)  # type: ignore[arg-type]


def replies(step: object) -> list[tuple[str, str | None]]:
    return [(e.reply.kind, e.reply.failure.type if e.reply.failure else None)
            for e in step.effects if isinstance(e, effects.SendReply)]  # type: ignore[attr-defined]


def test_duplicate_start_command_and_request_id_are_accepted_again_without_events() -> None:
    s = Sim([Waits])
    ex = WorkflowExecution.new(s.registry, "w")
    st = ex.handle(start_cmd("c1", request_id="req"), 10)
    assert [e.type for e in st.events] == ["WorkflowStarted"] and replies(st) == [("ACCEPTED", None)]
    again = ex.handle(start_cmd("c1", request_id="req"), 11)
    assert again.events == [] and replies(again) == [("ACCEPTED", None)]
    assert again.replies[0].reply.run_id == ex.run_id
    same_req = ex.handle(start_cmd("c2", request_id="req"), 12)
    assert same_req.events == [] and replies(same_req) == [("ACCEPTED", None)]
    other = ex.handle(start_cmd("c3", request_id="other"), 13)
    assert other.events == [] and replies(other) == [("ERROR", "WorkflowAlreadyStartedError")]
    assert "already running" in other.replies[0].reply.failure.message  # type: ignore[union-attr]


def test_refusals_name_the_error_class() -> None:
    s = Sim([Waits])
    ex = WorkflowExecution.new(s.registry, "w")
    for body in (SignalWorkflow("msg", []), GetResult(), QueryWorkflow("count", [])):
        st = ex.handle(Command("x", "w", 0, body, reply_to="r:0"), 1)
        assert st.events == [] and replies(st) == [("ERROR", "WorkflowNotFoundError")]
    st = ex.handle(Command("t", "w", 0, StartWorkflow("Nope", []), reply_to="r:0"), 1)
    assert st.events == [] and replies(st) == [("ERROR", "WorkflowTypeNotFoundError")]
    assert "registered: Waits" in st.replies[0].reply.failure.message  # type: ignore[union-attr]
    ex.handle(start_cmd("s"), 1)
    st = ex.handle(Command("sg", "w", 0, SignalWorkflow("typo", []), reply_to="r:0"), 2)
    assert st.events == [] and replies(st) == [("ERROR", "SignalNotFoundError")]
    q = ex.query(Command("q", "w", 0, QueryWorkflow("nope", [])))
    assert q.kind == "ERROR" and q.failure is not None and q.failure.type == "QueryError"


def test_signals_queries_and_closed_workflow() -> None:
    s = Sim([Waits])
    s.start(Waits, 2, id="w")
    s.settle()
    s.signal("w", "msg", "a")
    s.settle()
    assert s.query("w", "count") == 1 and s.query("w", "count", 10) == 11
    s.signal("w", "msg", "b")
    s.settle()
    assert s.value("w") == ["a", "b"]
    assert s.query("w", "count") == 2  # queries work after close
    s.signal("w", "msg", "late")
    s.settle()
    assert (s.replies[-1].kind, s.replies[-1].failure.type) == ("ERROR", "WorkflowNotFoundError")  # type: ignore[union-attr]
    # a closed workflow answers queries even when rebuilt from its history
    ex = WorkflowExecution.from_history(s.registry, "w", s.history("w"))
    r = ex.query(Command("q", "w", 0, QueryWorkflow("count", [])))
    assert CONV.from_payload(r.result) == 2  # type: ignore[arg-type]


def test_id_reuse_policies() -> None:
    s = Sim([Waits])
    ex = WorkflowExecution.new(s.registry, "w")
    ex.handle(start_cmd("c1", n=0), 1)
    assert ex.status == "COMPLETED"
    first = ex.run_id
    st = ex.handle(start_cmd("c2", n=0, id_reuse_policy="REJECT_DUPLICATE"), 2)
    assert replies(st) == [("ERROR", "WorkflowAlreadyStartedError")]
    st = ex.handle(start_cmd("c3", n=0, id_reuse_policy="ALLOW_DUPLICATE_FAILED_ONLY"), 3)
    assert replies(st) == [("ERROR", "WorkflowAlreadyStartedError")]
    st = ex.handle(start_cmd("c4", n=1), 4)
    assert [e.type for e in st.events] == ["WorkflowStarted"] and ex.run_id != first
    st = ex.handle(start_cmd("c5", n=0, id_reuse_policy="TERMINATE_IF_RUNNING"), 5)
    assert [e.type for e in st.events] == ["WorkflowTerminated", "WorkflowStarted", "WorkflowCompleted"]
    assert [e.seq for e in ex.history] == list(range(1, len(ex.history) + 1))


def test_signal_with_start_and_get_result_waiters() -> None:
    s = Sim([Waits])
    body = SignalWithStart(StartWorkflow("Waits", CONV.to_payloads([2])), "msg", CONV.to_payloads(["first"]))
    s.send(Command("sws1", "w", s.now, body, reply_to="r:0"))
    s.send(Command("sws2", "w", s.now, SignalWithStart(body.start, "msg", CONV.to_payloads(["second"])), reply_to="r:0"))
    s.send(Command("wait", "w", s.now, GetResult(), reply_to="r:9"))
    s.settle()
    assert s.types("w") == ["WorkflowStarted", "SignalReceived", "SignalReceived", "WorkflowCompleted"]
    res = [r for r in s.replies if r.kind == "RESULT"]
    assert [r.command_id for r in res] == ["wait"]
    assert CONV.from_payload(res[0].result) == ["first", "second"]  # type: ignore[arg-type]
    # GetResult on a closed workflow answers at once
    s.send(Command("wait2", "w", s.now, GetResult(), reply_to="r:9"))
    s.settle()
    assert s.replies[-1].command_id == "wait2" and s.replies[-1].status == "COMPLETED"


def test_cancel_and_terminate() -> None:
    s = Sim([Waits])
    s.start(Waits, 5, id="c")
    s.start(Waits, 5, id="t")
    s.settle()
    s.cancel("c")
    s.cancel("c")  # a second request is accepted, recorded once
    s.terminate("t")
    s.settle()
    assert s.types("c") == ["WorkflowStarted", "WorkflowCancelRequested", "WorkflowCancelled"]
    assert s.result("c").status == "CANCELLED" and s.result("c").failure.type == "CancelledError"  # type: ignore[union-attr]
    assert s.types("t") == ["WorkflowStarted", "WorkflowTerminated"]
    assert s.result("t").status == "TERMINATED"


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self, seconds: float) -> str:
        await workflow.sleep(seconds)
        workflow.continue_as_new(seconds) if seconds > 50 else None
        return "woke"


def test_execution_timeout_spans_continue_as_new_and_run_timeout_is_per_run() -> None:
    s = Sim([Sleeper])
    s.start(Sleeper, 60.0, id="e", execution_timeout_ms=150_000)
    s.run()
    assert s.result("e").status == "TIMED_OUT"
    assert s.types("e").count("WorkflowContinuedAsNew") == 2
    assert s.history("e")[-1].body.timeout_type == "EXECUTION"
    assert s.history("e")[-1].recorded_at_ms - s.history("e")[0].recorded_at_ms == 150_000
    s.start(Sleeper, 60.0, id="r", run_timeout_ms=30_000)
    s.run()
    assert s.result("r").status == "TIMED_OUT" and s.history("r")[-1].body.timeout_type == "RUN"


def test_stale_timer_fires_are_ignored() -> None:
    s = Sim([Sleeper])
    s.start(Sleeper, 5.0, id="z")
    s.run()
    ex = s.ex("z")
    n = len(ex.history)
    for tid in ("1", "nope", "a/1/1/s2c", "task/1", "wf/exec"):
        st = ex.handle(Command(f"f-{tid}", "z", s.now, FireTimer(ex.run_id or "", tid, s.now)), s.now)
        assert st.events == [] and st.effects == []
    assert len(ex.history) == n


# ------------------------------------------------------------------ children


@workflow.defn
class Kid:
    def __init__(self) -> None:
        self.released = False

    @workflow.run
    async def run(self, hold: bool) -> str:
        if hold:
            await workflow.wait_condition(lambda: self.released)
        return await workflow.execute_activity(echo, "kid done")

    @workflow.signal
    def release(self) -> None:
        self.released = True


@workflow.defn
class Mom:
    @workflow.run
    async def run(self, mode: str) -> str:
        if mode == "signal":
            h = await workflow.start_child_workflow(Kid.run, True, id="kid")
            await h.signal(Kid.release)
            return await h
        if mode == "cancel":
            h = await workflow.start_child_workflow(Kid.run, True, id="kid")
            await workflow.sleep(1)
            h.cancel()
            try:
                await h
            except asyncio.CancelledError:
                return "child cancelled"
            return "?"
        if mode == "duplicate":
            await workflow.start_child_workflow(Kid.run, True, id="kid")
            try:
                await workflow.execute_child_workflow(Kid.run, True, id="kid2")
                await workflow.execute_child_workflow("Kid", False, id="kid2")
            except ChildWorkflowError as e:
                return f"{e.status}: {type(e.cause).__name__}"
        policy = ParentClosePolicy(mode)
        await workflow.start_child_workflow(Kid.run, True, id="kid", parent_close_policy=policy)
        await workflow.sleep(1)
        return "parent done"


def test_child_signal_and_result() -> None:
    s = Sim([Mom, Kid], [echo])
    s.start(Mom, "signal", id="mom")
    s.run()
    assert s.value("mom") == "kid done"
    assert "SignalSent" in s.types("mom") and "SignalReceived" in s.types("kid")
    kid_start = s.history("kid")[0].body
    assert kid_start.parent_workflow_id == "mom" and kid_start.parent_run_id == s.ex("mom").run_id


def test_child_cancel_waits_for_the_child_to_end() -> None:
    s = Sim([Mom, Kid], [echo])
    s.start(Mom, "cancel", id="mom")
    s.run()
    assert s.value("mom") == "child cancelled"
    assert s.types("kid")[-1] == "WorkflowCancelled"
    assert s.types("mom")[-2:] == ["ChildWorkflowCancelled", "WorkflowCompleted"]


def test_refused_child_start_fails_the_child_handle() -> None:
    s = Sim([Mom, Kid], [echo])
    s.start(Kid, True, id="kid2")  # already running elsewhere
    s.start(Mom, "duplicate", id="mom")
    s.run(max_steps=50)
    assert s.value("mom") == "FAILED: WorkflowAlreadyStartedError"


@pytest.mark.parametrize("policy,kid_status", [("TERMINATE", "TERMINATED"), ("REQUEST_CANCEL", "CANCELLED"),
                                               ("ABANDON", "RUNNING")])
def test_parent_close_policy(policy: str, kid_status: str) -> None:
    s = Sim([Mom, Kid], [echo])
    s.start(Mom, policy, id="mom")
    s.run()
    assert s.value("mom") == "parent done"
    assert s.ex("kid").status == kid_status


@workflow.defn
class Looper:
    @workflow.run
    async def run(self, n: int) -> str:
        await workflow.start_child_workflow(Kid.run, True, id=f"kid-{n}")  # parent_close_policy TERMINATE
        await workflow.sleep(1)
        if n < 1:
            workflow.continue_as_new(n + 1)
        return "looped"


def test_recovery_re_sends_the_close_commands_of_the_run_continued_in_the_last_step() -> None:
    """A crash after the continue-as-new step was recorded but before its effects went out:
    the taker-over re-sends the old run's parent-close commands (TERMINATE of its open child)
    — and only while that step is the history's last (a later step means they went out)."""
    s = Sim([Looper, Kid], [echo])
    s.start(Looper, 0, id="loop")
    s.run()
    assert s.value("loop") == "looped"
    assert s.ex("kid-0").status == "TERMINATED" and s.ex("kid-1").status == "TERMINATED"
    full = s.history("loop")
    can = next(i for i, e in enumerate(full) if e.type == "WorkflowContinuedAsNew")
    end_of_step = max(i for i, e in enumerate(full) if e.command_id == full[can].command_id) + 1
    ex = WorkflowExecution.from_history(s.registry, "loop", full[:end_of_step])
    sent = [e.command for e in ex.recovery_effects(0) if isinstance(e, effects.SendCommand)]
    assert [(c.workflow_id, type(c.body).__name__) for c in sent if c.workflow_id == "kid-0"] == [
        ("kid-0", "TerminateWorkflow")]
    later = WorkflowExecution.from_history(s.registry, "loop", full[:end_of_step + 1])
    assert not [e for e in later.recovery_effects(0)
                if isinstance(e, effects.SendCommand) and e.command.workflow_id == "kid-0"]
