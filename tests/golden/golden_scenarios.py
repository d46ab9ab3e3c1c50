"""How each golden history is produced (a live run on the in-test engine) and checked.

Each scenario drives :class:`runtime_sim.Sim`, asserts its live outcome, and names the
workflow ids whose histories are pinned. ``divergence`` says, for the mutated workflow, at
which event the replay must report the divergence (a predicate over the recorded events).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import golden_workflows as g
from runtime_sim import Hang, NoStart, Sim

from aion.exceptions import ApplicationError
from aion.model import (
    Command, Event, Failure, GetResult, PauseWorkflow, ReopenWorkflow, ResumeWorkflow, UpdateWorkflow,
)


@dataclass
class Scenario:
    name: str
    mutation: str
    drive: Callable[[], Sim]
    #: workflow id of the history that must diverge when mutated -> predicate picking the event
    diverges: tuple[str, Callable[[Event], bool]]
    ids: tuple[str, ...] = ("wf-1",)


def first(type_name: str, **fields: Any) -> Callable[[Event], bool]:
    def pred(ev: Event) -> bool:
        return ev.type == type_name and all(getattr(ev.body, k) == v for k, v in fields.items())
    return pred


def strip_stacks(ev: Event) -> Event:
    def fix(v: Any) -> Any:
        if isinstance(v, Failure):
            return dataclasses.replace(v, stack="", cause=fix(v.cause))
        return v
    body = ev.body
    changes = {f.name: fix(getattr(body, f.name)) for f in dataclasses.fields(body)
               if isinstance(getattr(body, f.name), Failure)}
    return dataclasses.replace(ev, body=dataclasses.replace(body, **changes)) if changes else ev


# ------------------------------------------------------------------ scenarios


def reopen(s: Sim, wf_id: str = "wf-1") -> None:
    """An operator reopens ``wf_id``, then asks for its result again (the start's was answered)."""
    s.send(Command(s.cid("reopen"), wf_id, s.now, ReopenWorkflow("fixed"), reply_to="replies:0"))
    s.send(Command(s.cid("result"), wf_id, s.now, GetResult(), reply_to="replies:0"))


def one_activity() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES)
    s.start(g.OneActivity, "World")
    s.run()
    assert s.value() == "Hello, World!"
    return s


def retries_then_success() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES, script={"flaky": [RuntimeError("boom 1"), RuntimeError("boom 2"), "third time"]})
    s.start(g.Retries, 1)
    s.run()
    assert s.value() == "third time"
    assert s.types().count("ActivityFailed") == 2
    return s


def retries_exhausted() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES, script={"flaky": [RuntimeError("always down")]})
    s.start(g.Retries, 1)
    s.run()
    r = s.result()
    assert r.status == "FAILED" and r.failure is not None
    assert r.failure.type == "ActivityError" and r.failure.cause is not None
    assert r.failure.cause.type == "RuntimeError"
    assert s.types().count("ActivityFailed") == 3
    return s


def reopen_after_exhausted_retries() -> Sim:
    down = [RuntimeError("down 1"), RuntimeError("down 2"), RuntimeError("down 3")]
    s = Sim(g.WORKFLOWS, g.ACTIVITIES, script={"flaky": [*down, "fourth time"]})
    s.start(g.Retries, 1)
    s.run()
    assert s.result().status == "FAILED"
    reopen(s)
    s.run()
    assert s.value() == "fourth time"
    assert [e.body.attempt for e in s.history() if e.type == "ActivityStarted"] == [1, 2, 3, 4]  # type: ignore[union-attr]
    return s


def reopen_after_cancel() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES)
    s.start(g.Stages, "vase")
    s.settle()  # reserved; its five-minute timer pending
    s.cancel("wf-1")
    s.settle()
    assert s.result().status == "CANCELLED"
    reopen(s)
    s.run()  # the timer armed again fires; the workflow records and completes
    assert s.result().status == "COMPLETED"
    assert s.types().count("TimerFired") == 1 and s.types().count("WorkflowReopened") == 1
    return s


def pause_and_resume() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES)
    s.start(g.Stages, "lamp")
    s.settle()  # reserved; its five-minute timer pending
    s.send(Command(s.cid("pause"), "wf-1", s.now, PauseWorkflow("maintenance"), reply_to="replies:0"))
    s.run()  # the timer fires and the code schedules `record`: held, not dispatched
    types = s.types()
    assert types[-1] == "ActivityScheduled" and "WorkflowPaused" in types and not s.tasks
    s.send(Command(s.cid("resume"), "wf-1", s.now, ResumeWorkflow("done"), reply_to="replies:0"))
    s.run()
    assert s.result().status == "COMPLETED"
    assert s.types().index("WorkflowResumed") < len(s.types()) - 1 - s.types()[::-1].index("ActivityStarted")
    return s


def fan_out_all() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES, auto_activities=False)
    s.start(g.FanOutAll, [1, 2, 3])
    s.settle()
    tasks = list(s.tasks)
    s.tasks.clear()
    for t in reversed(tasks):  # complete in reverse order
        s.run_task(t)
        s.settle()
    s.run()
    assert s.value(hint=g.FanOutResult) == g.FanOutResult([1, 4, 9])
    return s


def race() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES, script={"slow": [Hang]})
    s.start(g.Race)
    s.run()
    assert s.value() == "greet: Hello, fast!"
    assert "ActivityCancelRequested" in s.types()
    assert [c.activity_id for c in s.cancels] == ["2"]
    return s


def settle_all() -> Sim:
    def flaky(task: Any, args: list[Any]) -> Any:
        return ApplicationError(f"no {args[0]}", type="Nope") if args[0] == 2 else f"ok-{args[0]}"
    s = Sim(g.WORKFLOWS, g.ACTIVITIES, script={"flaky": flaky})
    s.start(g.SettleAll, [1, 2, 3])
    s.run()
    assert s.value() == ["ok: ok-1", "error: no 2", "ok: ok-3"]
    return s


def signals_buffered() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES)
    s.start(g.Signals)
    s.settle()
    for item in ("a", "b", "c"):
        s.signal("wf-1", "add", item)
        s.settle()
    assert s.query("wf-1", "count") == 3
    s.signal("wf-1", "finish")
    s.run()
    assert s.value() == ["a", "b", "c"]
    return s


def query_stages() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES, auto_activities=False)
    s.start(g.Stages, "book")
    s.settle()
    assert s.query("wf-1", "stage_name") == "reserving"
    s.run_task(s.tasks.popleft())
    s.settle()
    assert s.query("wf-1", "stage_name") == "waiting"
    s.fire_next_timer()
    s.settle()
    assert s.query("wf-1", "stage_name") == "recording"
    s.run_task(s.tasks.popleft())
    s.settle()
    assert s.query("wf-1", "stage_name") == "done"
    assert s.value() == "rsv-book"
    return s


def timer_cancelled() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES)
    s.start(g.TimerCancel)
    s.run()
    assert s.value() == "Hello, timer! (timer cancelled)"
    assert "TimerFired" not in s.types() and "TimerCancelled" in s.types()
    return s


def timeout_race_timer_wins() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES, script={"slow": [Hang]})
    s.start(g.TimeoutRace, 5)
    s.run()
    assert s.value() == "deadline passed"
    assert "TimerFired" in s.types() and "ActivityCancelRequested" in s.types()
    return s


def timeout_race_body_wins() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES)
    s.start(g.TimeoutRace, 3600)
    s.run()
    assert s.value() == 7
    assert "TimerCancelled" in s.types() and "TimerFired" not in s.types()
    return s


def child_completed_and_failed() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES)
    s.start(g.Parent, 3)
    s.run()
    assert s.value() == ["child ok: 9", "child failed: FAILED negative input -3"]
    assert s.ex("child-ok").status == "COMPLETED" and s.ex("child-bad").status == "FAILED"
    return s


def continue_as_new() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES)
    s.start(g.Counter, 1, 3)
    s.run()
    assert s.value() == 3
    assert s.types().count("WorkflowContinuedAsNew") == 2
    assert len({e.run_id for e in s.history()}) == 3
    return s


def cancellation_with_compensation() -> Sim:
    s = Sim(g.WORKFLOWS, g.ACTIVITIES)
    s.start(g.Saga, "room")
    s.settle()
    assert s.query("wf-1", "status") == "waiting"
    s.cancel("wf-1")
    s.run()
    assert s.result().status == "CANCELLED"
    assert s.query("wf-1", "status") == "cancelled"
    types = s.types()
    assert types.index("WorkflowCancelRequested") < types.index("TimerCancelled")
    return s


def side_effect() -> Sim:
    g._calls["n"] = 0
    s = Sim(g.WORKFLOWS, g.ACTIVITIES)
    s.start(g.SideEffect)
    s.run()
    assert s.value().startswith("token-")
    assert "MarkerRecorded" in s.types()
    return s


def patched_new() -> Sim:
    g.PATCH_VERSION["v"] = "v2"
    s = Sim(g.WORKFLOWS, g.ACTIVITIES)
    s.start(g.Patched, "pat")
    s.run()
    assert s.value() == "Hello, pat! HELLO, PAT!"
    return s


def patched_old() -> Sim:
    g.PATCH_VERSION["v"] = "v1"
    try:
        s = Sim(g.WORKFLOWS, g.ACTIVITIES)
        s.start(g.Patched, "pat")
        s.run()
    finally:
        g.PATCH_VERSION["v"] = "v2"
    assert s.value() == "Hello, pat! old"
    assert "MarkerRecorded" not in s.types()
    return s


def updates() -> Sim:
    from runtime_sim import CONV

    s = Sim(g.WORKFLOWS, g.ACTIVITIES, auto_activities=False)
    s.start(g.Updatable)
    s.settle()

    def update(uid: str, name: str, *args: Any) -> None:
        s.send(Command(f"cmd-{uid}", "wf-1", s.now, UpdateWorkflow(uid, name, CONV.to_payloads(list(args))),
                       reply_to="replies:0"))

    update("u-1", "add", 2)
    update("u-2", "add", -1)  # rejected by the validator: nothing recorded
    update("u-3", "add_squared", 3)  # in flight: its activity waits
    update("u-4", "refuse")  # fails the update, not the workflow
    update("u-1", "add", 2)  # the same update id: the recorded outcome
    s.settle()
    s.signal("wf-1", "finish")
    s.settle()
    s.run_task(s.tasks.popleft())
    s.run()
    assert s.value() == 11
    done = {r.command_id: r for r in s.replies if r.kind == "UPDATE"}
    assert set(done) == {"cmd-u-1", "cmd-u-3", "cmd-u-4"}
    assert [r.kind for r in s.replies if r.command_id == "cmd-u-2"] == ["ERROR"]
    assert s.types().count("WorkflowUpdateAccepted") == 3 and s.types().count("WorkflowUpdateCompleted") == 3
    return s


SCENARIOS = [
    Scenario("one_activity", "one_activity", one_activity, ("wf-1", first("ActivityScheduled"))),
    Scenario("retries_then_success", "retries", retries_then_success, ("wf-1", first("ActivityScheduled"))),
    Scenario("retries_exhausted", "retries", retries_exhausted, ("wf-1", first("ActivityScheduled"))),
    Scenario("fan_out_all", "fan_out", fan_out_all, ("wf-1", first("ActivityScheduled", activity_id="3"))),
    Scenario("race", "race", race, ("wf-1", first("ActivityScheduled", activity_id="2"))),
    Scenario("settle_all", "settle_all", settle_all, ("wf-1", first("WorkflowCompleted"))),
    Scenario("signals_buffered", "signals", signals_buffered, ("wf-1", first("ActivityScheduled"))),
    Scenario("query_stages", "stages", query_stages, ("wf-1", first("TimerStarted"))),
    Scenario("timer_cancelled", "timer_cancelled", timer_cancelled, ("wf-1", first("TimerCancelled"))),
    Scenario("timeout_race_timer_wins", "timeout_race", timeout_race_timer_wins, ("wf-1", first("ActivityScheduled"))),
    Scenario("timeout_race_body_wins", "timeout_race", timeout_race_body_wins, ("wf-1", first("ActivityScheduled"))),
    Scenario("child_completed_and_failed", "child", child_completed_and_failed,
             ("wf-1", first("ChildWorkflowStarted", child_workflow_id="child-bad")), ("wf-1", "child-ok", "child-bad")),
    Scenario("continue_as_new", "continue_as_new", continue_as_new, ("wf-1", first("WorkflowContinuedAsNew"))),
    Scenario("cancellation_with_compensation", "cancellation", cancellation_with_compensation,
             ("wf-1", first("ActivityScheduled", activity_id="2"))),
    Scenario("side_effect", "side_effect", side_effect, ("wf-1", first("MarkerRecorded"))),
    Scenario("patched_new", "patched", patched_new, ("wf-1", first("WorkflowCompleted"))),
    Scenario("patched_old", "patched", patched_old, ("wf-1", first("WorkflowCompleted"))),
    Scenario("updates", "updates", updates, ("wf-1", first("ActivityScheduled"))),
    Scenario("reopen_after_exhausted_retries", "retries", reopen_after_exhausted_retries,
             ("wf-1", first("ActivityScheduled"))),
    Scenario("reopen_after_cancel", "stages", reopen_after_cancel, ("wf-1", first("TimerStarted"))),
    Scenario("pause_and_resume", "stages", pause_and_resume, ("wf-1", first("TimerStarted"))),
]
