"""Command ids: a re-used id with another body is refused, a re-delivery is not; result waiters
are one per (command id, reply_to) and capped per workflow (issue 14)."""

from __future__ import annotations

from typing import Any

import pytest
from runtime_sim import CONV, Sim

from aion import workflow
from aion.model import (
    ActivityTaskCompleted,
    CancelWorkflow,
    Command,
    CommandBody,
    FireTimer,
    GetResult,
    SignalWithStart,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
)
from aion.runtime import MAX_WAITERS, Step, WorkflowExecution


@workflow.defn
class Inbox:
    def __init__(self) -> None:
        self.got: list[str] = []

    @workflow.run
    async def run(self, n: int) -> list[str]:
        await workflow.wait_condition(lambda: len(self.got) >= n)
        return self.got

    @workflow.signal
    def msg(self, m: str) -> None:
        self.got.append(m)

    @workflow.signal
    def note(self, m: str) -> None:
        self.got.append(f"note:{m}")


@workflow.defn
class Other:
    @workflow.run
    async def run(self, n: int) -> int:
        await workflow.wait_condition(lambda: False)
        return n


def cmd(cid: str, body: CommandBody, reply: str | None = "r:0", wf: str = "w") -> Command:
    return Command(cid, wf, 0, body, reply_to=reply)


def start(n: int = 2, wf_type: str = "Inbox", **kw: Any) -> StartWorkflow:
    return StartWorkflow(wf_type, CONV.to_payloads([n]), **kw)


def sig(m: str, name: str = "msg") -> SignalWorkflow:
    return SignalWorkflow(name, CONV.to_payloads([m]))


def answers(step: Step) -> list[tuple[str, str | None]]:
    return [(r.reply.kind, r.reply.failure.type if r.reply.failure else None) for r in step.replies]


def refused_as_reused(step: Step, cid: str) -> bool:
    """No event, one ERROR CommandIdReusedError naming the id."""
    if step.events or answers(step) != [("ERROR", "CommandIdReusedError")]:
        return False
    f = step.replies[0].reply.failure
    assert f is not None and step.refusal == f
    return repr(cid) in f.message


def got(ex: WorkflowExecution) -> list[str]:
    return [CONV.from_payloads(e.body.args)[0] for e in ex.history if e.type == "SignalReceived"]


def new(s: Sim, *steps: tuple[str, CommandBody]) -> WorkflowExecution:
    ex = WorkflowExecution.new(s.registry, "w")
    for cid, body in steps:
        st = ex.handle(cmd(cid, body), 1)
        assert st.events and st.refusal is None, (cid, answers(st))
    return ex


@pytest.mark.parametrize("rebuilt", [False, True], ids=["resident", "from_history"])
def test_a_signal_id_reused_with_another_signal_is_refused_and_a_re_delivery_is_accepted(rebuilt: bool) -> None:
    s = Sim([Inbox])
    ex = new(s, ("start", start(2)), ("sig-1", sig("yes")))
    if rebuilt:  # the ids that produced events are rebuilt from the history (replay, hand-over)
        ex = WorkflowExecution.from_history(s.registry, "w", ex.history)
    before = len(ex.history)
    assert refused_as_reused(ex.handle(cmd("sig-1", sig("no")), 2), "sig-1")  # other arguments
    assert refused_as_reused(ex.handle(cmd("sig-1", sig("yes", name="note")), 3), "sig-1")  # other name
    st = ex.handle(cmd("sig-1", sig("yes")), 4)  # the same command again: a re-delivery
    assert st.events == [] and answers(st) == [("ACCEPTED", None)] and st.refusal is None
    assert len(ex.history) == before and got(ex) == ["yes"]
    # The first signal's effect is intact and the workflow goes on.
    st = ex.handle(cmd("sig-2", sig("later")), 5)
    assert [e.type for e in st.events] == ["SignalReceived", "WorkflowCompleted"]
    assert CONV.from_payload(st.events[-1].body.result) == ["yes", "later"]


def test_without_reply_to_the_refusal_has_a_reason_for_the_dead_letter_queue_and_no_effect() -> None:
    s = Sim([Inbox])
    ex = new(s, ("start", start(2)), ("sig-1", sig("yes")))
    st = ex.handle(cmd("sig-1", sig("no"), reply=None), 2)
    assert st.events == [] and st.effects == []
    assert st.refusal is not None and st.refusal.type == "CommandIdReusedError"
    assert "'sig-1'" in st.refusal.message and "'w'" in st.refusal.message
    # A re-delivery without reply_to is no refusal (nothing to dead-letter).
    st = ex.handle(cmd("sig-1", sig("yes"), reply=None), 3)
    assert st.events == [] and st.effects == [] and st.refusal is None


def test_a_start_id_reused_with_another_type_input_or_queue_is_refused() -> None:
    s = Sim([Inbox, Other])
    ex = new(s, ("start", start(2)))
    run_id = ex.run_id
    for body in (start(3), start(2, wf_type="Other"), start(2, task_queue="elsewhere"),
                 SignalWithStart(start(2), "msg", CONV.to_payloads(["x"]))):
        assert refused_as_reused(ex.handle(cmd("start", body), 2), "start"), body
    st = ex.handle(cmd("start", start(2)), 3)
    assert st.events == [] and answers(st) == [("ACCEPTED", None)]
    assert st.replies[0].reply.run_id == run_id and ex.run_id == run_id and len(ex.history) == 1


def test_a_child_start_refused_for_its_reused_id_does_not_fail_the_parent_s_child() -> None:
    s = Sim([Inbox])
    ex = new(s, ("start-child", start(2, parent_workflow_id="mom", parent_run_id="r1")))
    st = ex.handle(cmd("start-child", start(9, parent_workflow_id="mom", parent_run_id="r1"), reply=None), 2)
    assert st.events == [] and st.effects == []  # no failed ChildWorkflowResult to the parent
    assert st.refusal is not None and st.refusal.type == "CommandIdReusedError"
    assert ex.status == "RUNNING"


def test_signal_with_start_is_compared_with_the_start_and_the_signal_it_recorded() -> None:
    s = Sim([Inbox])
    sws = SignalWithStart(start(3), "msg", CONV.to_payloads(["a"]))
    ex = new(s, ("sws-1", sws))
    assert [e.type for e in ex.history] == ["WorkflowStarted", "SignalReceived"]
    assert refused_as_reused(ex.handle(cmd("sws-1", SignalWithStart(start(3), "msg", CONV.to_payloads(["b"]))), 2), "sws-1")
    assert refused_as_reused(ex.handle(cmd("sws-1", SignalWithStart(start(4), "msg", CONV.to_payloads(["a"]))), 2), "sws-1")
    assert refused_as_reused(ex.handle(cmd("sws-1", start(3)), 2), "sws-1")  # a plain start on its id
    assert refused_as_reused(ex.handle(cmd("sws-1", sig("a")), 2), "sws-1")  # a plain signal on its id
    st = ex.handle(cmd("sws-1", sws), 3)
    assert st.events == [] and answers(st) == [("ACCEPTED", None)]
    # Delivered to the running workflow, a signal-with-start records its signal only.
    sws2 = SignalWithStart(start(3), "msg", CONV.to_payloads(["b"]))
    assert [e.type for e in ex.handle(cmd("sws-2", sws2), 4).events] == ["SignalReceived"]
    assert refused_as_reused(ex.handle(cmd("sws-2", SignalWithStart(start(3), "note", CONV.to_payloads(["b"]))), 5), "sws-2")
    st = ex.handle(cmd("sws-2", sws2), 6)
    assert st.events == [] and answers(st) == [("ACCEPTED", None)]
    assert got(ex) == ["a", "b"]
    # A signal-with-start whose workflow closed in its first activation recorded no signal: its
    # re-delivery is still one.
    quick = SignalWithStart(start(0), "msg", CONV.to_payloads(["z"]))
    ex = new(s, ("sws-3", quick))
    assert [e.type for e in ex.history] == ["WorkflowStarted", "WorkflowCompleted"]
    st = ex.handle(cmd("sws-3", quick), 7)
    assert st.events == [] and answers(st) == [("ACCEPTED", None)]


def test_a_client_command_on_the_id_of_another_kind_of_command_is_refused() -> None:
    s = Sim([Inbox])
    ex = new(s, ("start", start(5)), ("sig-1", sig("a")))
    cases: list[tuple[str, CommandBody]] = [
        ("start", sig("a")), ("start", CancelWorkflow()), ("start", TerminateWorkflow()),
        ("sig-1", start(5)), ("sig-1", CancelWorkflow()), ("sig-1", TerminateWorkflow()),
    ]
    for cid, body in cases:
        assert refused_as_reused(ex.handle(cmd(cid, body), 2), cid), (cid, body)
    assert ex.status == "RUNNING" and got(ex) == ["a"] and len(ex.history) == 2
    assert [e.type for e in ex.handle(cmd("cancel-1", CancelWorkflow("stop")), 3).events] == [
        "WorkflowCancelRequested", "WorkflowCancelled"]
    for body in (sig("a"), TerminateWorkflow(), start(5)):
        assert refused_as_reused(ex.handle(cmd("cancel-1", body), 4), "cancel-1"), body
    # A re-delivered cancel is accepted (its reason is not recorded, its kind is).
    st = ex.handle(cmd("cancel-1", CancelWorkflow("another reason")), 5)
    assert st.events == [] and answers(st) == [("ACCEPTED", None)]

    ex = new(s, ("start", start(5)), ("term-1", TerminateWorkflow("bye")))
    assert refused_as_reused(ex.handle(cmd("term-1", CancelWorkflow()), 5), "term-1")
    assert refused_as_reused(ex.handle(cmd("term-1", sig("a")), 5), "term-1")
    st = ex.handle(cmd("term-1", TerminateWorkflow("bye")), 6)
    assert st.events == [] and answers(st) == [("ACCEPTED", None)]
    assert [e.type for e in ex.history] == ["WorkflowStarted", "WorkflowTerminated"]


@workflow.defn
class Napper:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(10)
        await workflow.sleep(10)
        return "rested"


def test_engine_inputs_keep_their_de_duplication_and_their_ids_refuse_client_commands() -> None:
    s = Sim([Napper, Inbox])
    ex = WorkflowExecution.new(s.registry, "w")
    ex.handle(cmd("start", StartWorkflow("Napper", [])), 1)
    run_id = ex.run_id
    assert run_id is not None
    fire = Command("timer:w:1", "w", 0, FireTimer(run_id, "1", 10_001))
    assert [e.type for e in ex.handle(fire, 10_001).events] == ["TimerFired", "TimerStarted"]
    again = ex.handle(fire, 10_002)  # a re-delivered fire: nothing, as before
    assert again.events == [] and again.effects == [] and again.refusal is None
    # An activity report re-using a known id is an engine re-delivery: dropped without a word.
    report = Command("start", "w", 0, ActivityTaskCompleted(run_id, "1", 1, CONV.to_payload("x")))
    st = ex.handle(report, 10_003)
    assert st.events == [] and st.effects == [] and st.refusal is None
    # A client command on a timer fire's id is not its re-delivery.
    assert refused_as_reused(ex.handle(cmd("timer:w:1", TerminateWorkflow()), 10_004), "timer:w:1")
    assert ex.status == "RUNNING"


def test_a_fire_of_an_earlier_arming_of_a_timer_does_not_fire_it_early() -> None:
    """A worker that died before its transaction committed can leave a timer row at the time
    it armed the timer; the next owner armed it again, later. That old row's fire is ignored;
    the timer fires at the time its TimerStarted says."""
    s = Sim([Napper])
    ex = WorkflowExecution.new(s.registry, "w")
    ex.handle(cmd("start", StartWorkflow("Napper", [])), 1)
    run_id = ex.run_id
    assert run_id is not None
    started = [e for e in ex.history if e.type == "TimerStarted"][0]
    due = started.body.fire_at_ms  # type: ignore[union-attr]
    stale = ex.handle(Command(f"timer:w:1:{due - 3_000}", "w", 0, FireTimer(run_id, "1", due - 3_000)), due - 3_000)
    assert stale.events == [] and stale.effects == []
    on_time = ex.handle(Command(f"timer:w:1:{due}", "w", 0, FireTimer(run_id, "1", due)), due)
    assert [e.type for e in on_time.events] == ["TimerFired", "TimerStarted"]


# ---------------------------------------------------------------------------- result waiters


def results_at_close(ex: WorkflowExecution) -> list[str]:
    st = ex.handle(cmd("close", sig("last")), 99)
    assert ex.status == "COMPLETED"
    return [r.reply.command_id for r in st.replies if r.reply.kind == "RESULT"]


def test_one_waiting_client_is_one_waiter_and_waiters_are_capped_per_workflow() -> None:
    s = Sim([Inbox])
    ex = new(s, ("start", start(1)))
    for i in range(5_000):  # one result() re-sending every 5 s for ~7 hours: one waiter
        st = ex.handle(cmd("wait-0", GetResult(), reply="r:3"), 2 + i)
        assert st.events == [] and st.effects == [] and st.refusal is None
    for i in range(1, MAX_WAITERS):
        st = ex.handle(cmd(f"wait-{i}", GetResult(), reply=f"r:{i % 4}"), 6_000)
        assert st.effects == [] and st.refusal is None
    over = ex.handle(cmd("wait-over", GetResult(), reply="r:0"), 6_001)
    assert over.events == [] and answers(over) == [("ERROR", "TooManyWaitersError")]
    msg = over.replies[0].reply.failure.message  # type: ignore[union-attr]
    assert "'w'" in msg and str(MAX_WAITERS) in msg
    # A re-send of a waiting one is no new waiter: not refused.
    resent = ex.handle(cmd("wait-7", GetResult(), reply="r:3"), 6_002)
    assert resent.effects == [] and resent.refusal is None
    answered = results_at_close(ex)
    assert len(answered) == MAX_WAITERS == len(set(answered)) and "wait-over" not in answered
    # After the close a GetResult is answered at once (no waiter kept, none refused).
    late = ex.handle(cmd("late", GetResult(), reply="r:0"), 7_000)
    assert answers(late) == [("RESULT", None)]


def test_a_get_result_on_an_id_that_recorded_events_still_waits() -> None:
    """A GetResult records nothing itself; its id may have recorded a task failure found at
    load (or be a start's id): a re-send must still wait, and be answered at the close."""
    s = Sim([Inbox])
    ex = new(s, ("start", start(1)))
    st = ex.handle(cmd("start", GetResult(), reply="r:5"), 2)
    assert st.events == [] and st.refusal is None
    replies = [r for r in ex.handle(cmd("close", sig("x")), 3).replies if r.reply.kind == "RESULT"]
    assert [(r.reply.command_id, r.reply_to) for r in replies] == [("start", "r:5")]


def test_a_get_result_waits_after_the_workflow_is_rebuilt_from_its_history() -> None:
    """Waiters are memory only: a hand-over forgets them, the client's re-send (same id) waits
    again. (Behaviour the same-id re-send of ``handle.result()`` relies on; it held before.)"""
    s = Sim([Inbox])
    ex = new(s, ("start", start(1)))
    ex.handle(cmd("wait-1", GetResult(), reply="r:1"), 2)
    ex = WorkflowExecution.from_history(s.registry, "w", ex.history)
    ex.handle(cmd("wait-1", GetResult(), reply="r:1"), 3)
    ex.handle(cmd("wait-1", GetResult(), reply="r:1"), 4)
    assert results_at_close(ex) == ["wait-1"]
