"""Updates (``runtime/_updates.py``): acceptance, validators, de-duplication by update id, replay
of an update in flight, failures that fail the update and not the workflow, limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from runtime_sim import CONV, Hang, Sim

from aion import activity, workflow
from aion.exceptions import ApplicationError
from aion.model import Command, Reply, UpdateWithStart, UpdateWorkflow, WorkflowUpdateAccepted, WorkflowUpdateCompleted
from aion.runtime import MAX_UPDATES_IN_FLIGHT, WorkflowExecution


@activity.defn
async def price(item: str) -> int:
    return len(item) * 100


@workflow.defn
class Cart:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.done = False

    @workflow.update
    def add(self, item: str) -> int:
        self.items.append(item)
        return len(self.items)

    @add.validator
    def _check_add(self, item: str) -> None:
        if not item:
            raise ValueError("an empty item")
        if item in self.items:
            raise ApplicationError(f"{item!r} is in the cart already")

    @workflow.update
    async def priced(self, item: str) -> int:
        cents = await workflow.execute_activity(price, item, start_to_close_timeout=timedelta(seconds=10))
        self.items.append(item)
        return cents

    @workflow.update
    async def later(self, item: str) -> str:
        await workflow.sleep(timedelta(minutes=5))
        self.items.append(item)
        return f"added {item} later"

    @workflow.update
    def refuse(self, why: str) -> None:
        raise ApplicationError(why, type="Refused")

    @workflow.update
    def buggy(self) -> None:
        raise KeyError("cents")

    @workflow.signal
    def checkout(self) -> None:
        self.done = True

    @workflow.query
    def contents(self) -> list[str]:
        return list(self.items)

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.done)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.items


def kinds(events) -> list[str]:  # type: ignore[no-untyped-def]
    return [type(e.body).__name__ for e in events]


def update(s: Sim, name: str, *args: object, uid: str | None = None, stage: str = "COMPLETED",
           wf: str = "wf-1", cid: str | None = None) -> Command:
    cmd = Command(cid or s.cid("upd"), wf, s.now,
                  UpdateWorkflow(uid or s.cid("u"), name, CONV.to_payloads(list(args)), wait_for_stage=stage),
                  reply_to="replies:0")
    s.send(cmd)
    return cmd


def replies(s: Sim, cmd: Command) -> list[Reply]:
    return [r for r in s.replies if r.command_id == cmd.command_id]


def outcome(r: Reply) -> object:
    assert r.kind == "UPDATE" and r.status == "COMPLETED", r
    assert r.failure is None, r.failure
    return CONV.from_payload(r.result)


@pytest.fixture
def sim() -> Sim:
    s = Sim([Cart], [price])
    s.start(Cart)
    s.settle()
    return s


def test_an_accepted_update_runs_its_handler_and_answers_once_with_its_result(sim: Sim) -> None:
    cmd = update(sim, "add", "tea")
    sim.settle()
    [r] = replies(sim, cmd)
    assert outcome(r) == 1
    h = sim.history()
    assert kinds(h)[-2:] == ["WorkflowUpdateAccepted", "WorkflowUpdateCompleted"]
    acc = h[-2].body
    assert isinstance(acc, WorkflowUpdateAccepted) and acc.update_name == "add" and acc.reply_to == "replies:0"
    assert sim.query("wf-1", "contents") == ["tea"]


def test_a_rejected_update_appends_nothing_and_the_sender_gets_the_validators_error(sim: Sim) -> None:
    update(sim, "add", "tea")
    sim.settle()
    before = len(sim.history())
    for arg, why in (("tea", "in the cart already"), ("", "an empty item")):
        cmd = update(sim, "add", arg)
        sim.settle()
        [r] = replies(sim, cmd)
        assert r.kind == "ERROR" and r.failure.type == "WorkflowUpdateFailedError"
        assert "rejected by its validator" in r.failure.message and why in r.failure.message
        assert r.failure.cause is not None and why in r.failure.cause.message
    assert len(sim.history()) == before


def test_unknown_update_names_and_arguments_that_do_not_fit_are_refused_with_nothing_recorded(sim: Sim) -> None:
    before = len(sim.history())
    unknown = update(sim, "remove", "tea")
    too_many = update(sim, "add", "tea", "coffee")
    sim.settle()
    [r] = replies(sim, unknown)
    assert r.kind == "ERROR" and r.failure.type == "UpdateNotFoundError"
    assert "has no update 'remove'" in r.failure.message and "add" in r.failure.message
    [r] = replies(sim, too_many)
    assert r.kind == "ERROR" and r.failure.type == "WorkflowUpdateFailedError" and "but was sent 2" in r.failure.message
    assert len(sim.history()) == before


def test_a_repeated_update_id_gets_the_recorded_outcome_never_a_second_run(sim: Sim) -> None:
    first = update(sim, "add", "tea", uid="once")
    sim.settle()
    again = update(sim, "add", "tea", uid="once")  # another command, the same update id
    resent = Command(first.command_id, "wf-1", sim.now, first.body, reply_to="replies:0")  # the same command
    sim.send(resent)
    sim.settle()
    assert [outcome(r) for r in replies(sim, first)] == [1, 1]
    assert [outcome(r) for r in replies(sim, again)] == [1]
    assert kinds(sim.history()).count("WorkflowUpdateAccepted") == 1
    assert sim.query("wf-1", "contents") == ["tea"]
    other = update(sim, "add", "coffee", uid="once")
    sim.settle()
    [r] = replies(sim, other)
    assert r.kind == "ERROR" and r.failure.type == "InvalidArgumentError" and "other arguments" in r.failure.message


def test_accepted_stage_answers_at_acceptance_and_completed_when_the_handler_returns(sim: Sim) -> None:
    sim.auto_activities = False
    cmd = update(sim, "priced", "milk", stage="ACCEPTED")
    sim.settle()
    [r] = replies(sim, cmd)
    assert r.kind == "UPDATE" and r.status == "ACCEPTED"
    dup = update(sim, "priced", "milk", uid=sim.history()[-2].body.update_id)  # waits for the same handler
    sim.settle()
    assert replies(sim, dup) == []
    sim.run_task(sim.tasks.popleft())
    sim.settle()
    assert [r.status for r in replies(sim, cmd)] == ["ACCEPTED", "COMPLETED"]
    assert outcome(replies(sim, cmd)[-1]) == 400
    assert [outcome(r) for r in replies(sim, dup)] == [400]


def test_an_update_in_flight_is_replayed_at_its_accepted_event_and_answered_by_the_engine_that_takes_over(sim: Sim) -> None:
    cmd = update(sim, "later", "jam")
    sim.settle()
    assert replies(sim, cmd) == []
    history = list(sim.history())
    # another engine: rebuilt from the log alone; the handler waits on its timer again
    ex = WorkflowExecution.from_history(sim.registry, "wf-1", history)
    assert ex.load_failure is None and ex.run.updates[cmd.body.update_id].completed is None
    sim.execs["wf-1"] = ex
    sim.run()
    [r] = replies(sim, cmd)
    assert outcome(r) == "added jam later"
    assert r.command_id == cmd.command_id  # addressed from the accepted event
    h = sim.history()
    i = kinds(h).index("WorkflowUpdateAccepted")
    assert kinds(h)[i:i + 2] == ["WorkflowUpdateAccepted", "TimerStarted"]
    assert kinds(h).count("WorkflowUpdateCompleted") == 1


def test_a_failing_handler_fails_the_update_and_not_the_workflow(sim: Sim) -> None:
    cmd = update(sim, "refuse", "out of stock")
    sim.settle()
    [r] = replies(sim, cmd)
    assert r.kind == "UPDATE" and r.status == "COMPLETED" and r.result is None
    assert r.failure.type == "Refused" and r.failure.message == "out of stock"
    done = sim.history()[-1].body
    assert isinstance(done, WorkflowUpdateCompleted) and done.failure is not None
    assert sim.ex("wf-1").status == "RUNNING" and not sim.ex("wf-1").held
    sim.signal("wf-1", "checkout")
    sim.run()
    assert sim.value() == []


def test_an_unexpected_exception_in_a_handler_holds_the_workflow_task_as_in_run(sim: Sim) -> None:
    cmd = update(sim, "buggy")
    sim.settle()
    assert replies(sim, cmd) == []  # in flight until a fix is deployed
    assert sim.ex("wf-1").held and kinds(sim.history())[-2:] == ["WorkflowUpdateAccepted", "WorkflowTaskFailed"]
    blocked = update(sim, "add", "tea")
    sim.settle()
    [r] = replies(sim, blocked)
    assert r.kind == "ERROR" and r.failure.type == "WorkflowStateError" and "held" in r.failure.message


def test_updates_on_a_closed_run_are_refused_naming_the_status_and_in_flight_ones_are_told(sim: Sim) -> None:
    sim.auto_activities = False
    pending = update(sim, "priced", "bread")
    sim.settle()
    sim.terminate("wf-1")
    sim.settle()
    [r] = replies(sim, pending)
    assert r.status == "COMPLETED" and r.failure.type == "WorkflowStateError"
    assert "ended TERMINATED before the handler of update 'priced'" in r.failure.message
    late = update(sim, "add", "tea")
    sim.settle()
    [r] = replies(sim, late)
    assert r.kind == "ERROR" and r.failure.type == "WorkflowNotFoundError" and "TERMINATED" in r.failure.message


def test_the_in_flight_limit_refuses_with_a_clear_error(sim: Sim) -> None:
    sim.auto_activities = False
    for i in range(MAX_UPDATES_IN_FLIGHT):
        update(sim, "priced", f"item-{i}")
    over = update(sim, "priced", "one-too-many")
    sim.settle()
    [r] = replies(sim, over)
    assert r.kind == "ERROR" and r.failure.type == "TooManyUpdatesError"
    assert f"MAX_UPDATES_IN_FLIGHT = {MAX_UPDATES_IN_FLIGHT}" in r.failure.message
    assert kinds(sim.history()).count("WorkflowUpdateAccepted") == MAX_UPDATES_IN_FLIGHT


def test_update_with_start_starts_then_updates_in_one_step_and_updates_a_running_run() -> None:
    s = Sim([Cart], [price])
    start = s.start(Cart, reply=False)
    s.commands.clear()
    body = UpdateWithStart(start=start.body, update=UpdateWorkflow("u-1", "add", CONV.to_payloads(["tea"])))
    cmd = Command("uws-1", "wf-1", s.now, body, reply_to="replies:0")
    s.send(cmd)
    s.settle()
    [r] = replies(s, cmd)
    assert outcome(r) == 1 and r.run_id == s.ex("wf-1").run_id
    assert kinds(s.history()) == ["WorkflowStarted", "WorkflowUpdateAccepted", "WorkflowUpdateCompleted"]
    # the same command again (a client's retry): the recorded outcome, no second start
    s.send(Command("uws-1", "wf-1", s.now, body, reply_to="replies:0"))
    body2 = UpdateWithStart(start=start.body, update=UpdateWorkflow("u-2", "add", CONV.to_payloads(["jam"])))
    cmd2 = Command("uws-2", "wf-1", s.now, body2, reply_to="replies:0")
    s.send(cmd2)
    s.settle()
    assert [outcome(x) for x in replies(s, cmd)] == [1, 1]
    assert [outcome(x) for x in replies(s, cmd2)] == [2]
    assert kinds(s.history()).count("WorkflowStarted") == 1


def test_a_non_resident_engine_records_the_same_update_history() -> None:
    def drive(resident: bool) -> list:  # type: ignore[type-arg]
        s = Sim([Cart], [price], script={"price": [Hang]} if False else {}, resident=resident)
        s.start(Cart)
        s.settle()
        update(s, "add", "tea", uid="a", cid="c-a")
        update(s, "priced", "milk", uid="b", cid="c-b")
        update(s, "later", "jam", uid="c", cid="c-c")
        s.settle()
        s.signal("wf-1", "checkout")
        s.run()
        assert s.value() == ["tea", "milk", "jam"]
        return s.history()
    assert drive(True) == drive(False)


@pytest.mark.parametrize("body, problem", [
    (UpdateWorkflow("", "add", []), "update id is empty"),
    (UpdateWorkflow("u", "a\x00b", []), "update name 'a\\x00b' holds the control character U+0000"),
    (UpdateWorkflow("u", "add", [], wait_for_stage="SOON"), "update stage (wait_for_stage) 'SOON' is not one of"),
    (UpdateWorkflow("u" * 5000, "add", []), "update id is 5000 UTF-8 bytes long"),
])
def test_the_limits_module_checks_updates_for_the_client_and_the_intake(body: UpdateWorkflow, problem: str) -> None:
    from aion.model.limits import command_problem
    from aion.model import StartWorkflow

    assert problem in (command_problem(Command("c", "wf", 0, body)) or "")
    with_start = UpdateWithStart(StartWorkflow("Cart", [], task_queue="bad queue!"), UpdateWorkflow("u", "add", []))
    assert "task queue" in (command_problem(Command("c", "wf", 0, with_start)) or "")


@workflow.defn
class Rolling:
    def __init__(self) -> None:
        self.n = 0

    @workflow.update
    def bump(self) -> int:
        self.n += 1
        return self.n

    @workflow.signal
    def roll(self) -> None:
        workflow.continue_as_new()

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


def test_a_command_re_delivered_after_its_run_continued_as_new_gets_its_outcome_not_a_second_run() -> None:
    s = Sim([Rolling])
    s.start(Rolling)
    s.settle()
    first = update(s, "bump", uid="b-1")
    s.settle()
    assert outcome(replies(s, first)[0]) == 1
    s.signal("wf-1", "roll")
    s.settle()
    assert kinds(s.history()).count("WorkflowStarted") == 2
    s.send(Command(first.command_id, "wf-1", s.now, first.body, reply_to="replies:0"))  # a foreign re-send
    s.settle()
    assert [outcome(r) for r in replies(s, first)] == [1, 1]
    assert kinds(s.history()).count("WorkflowUpdateAccepted") == 1
