"""Workflow failures that behave as Python and Temporal users expect (issue "Lifecycle
operations", last section)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest

from aion import activity, workflow
from aion.exceptions import ApplicationError, SignalArgumentsError, WorkflowFailureError
from aion.exceptions import TimeoutError as AionTimeoutError
from aion.testing import WorkflowEnvironment
from aion.workflow import FailurePolicy


@workflow.defn
class Impatient:
    @workflow.run
    async def run(self, how: str) -> str:
        try:
            if how == "condition":
                await workflow.wait_condition(lambda: False, timeout=timedelta(seconds=5))
            else:
                async with workflow.timeout(timedelta(seconds=5)):
                    await workflow.sleep(timedelta(hours=1))
        except asyncio.TimeoutError as exc:  # the builtin TimeoutError, as asyncio raises it
            return f"timed out: {type(exc).__name__}"
        return "not reached"


@pytest.mark.parametrize("how", ["condition", "timeout"])
async def test_a_durable_deadline_is_caught_as_the_builtin_timeout_error(how: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Impatient]) as env:
        assert await env.client.execute_workflow(Impatient.run, how, id=f"impatient-{how}") == "timed out: TimeoutError"
    assert issubclass(AionTimeoutError, TimeoutError) and issubclass(AionTimeoutError, asyncio.TimeoutError)


@workflow.defn(failure_policy=FailurePolicy(workflow_failure_types=(Exception,)))  # fail on any exception
class Fragile:
    @workflow.run
    async def run(self, order: dict) -> int:
        return order["cents"]


async def test_a_failure_message_keeps_the_exception_type() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Fragile]) as env:
        with pytest.raises(WorkflowFailureError) as info:
            await env.client.execute_workflow(Fragile.run, {}, id="fragile")
    assert str(info.value).endswith("ended FAILED: KeyError: 'cents'"), str(info.value)


# ---------------------------------------------------------------- holding is the default


@workflow.defn
class Ledger:
    """The same bug as Fragile's, under the default FailurePolicy."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    @workflow.run
    async def run(self, order: dict) -> int:
        await workflow.wait_condition(lambda: bool(self.notes))
        return order["cents"]

    @workflow.signal
    def note(self, text: str) -> None:
        self.notes.append(text)


@workflow.defn(failure_exception_types=[KeyError])  # Temporal's spelling: KeyError fails it
class StrictLedger:
    def __init__(self) -> None:
        self.notes: list[str] = []

    @workflow.run
    async def run(self, order: dict) -> int:
        await workflow.wait_condition(lambda: bool(self.notes))
        return order["cents"]

    @workflow.signal
    def note(self, text: str) -> None:
        self.notes.append(text)


async def test_a_bug_holds_the_workflow_by_default_and_inputs_are_still_recorded() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Ledger], fail_fast=False) as env:
        h = await env.client.start_workflow(Ledger.run, {}, id="ledger")
        await h.signal(Ledger.note, "first")
        await env.sleep(timedelta(seconds=5))  # a few task retries, each failing the same way
        await h.signal(Ledger.note, "second")
        types = [e.type for e in env.history("ledger")]
    assert "WorkflowFailed" not in types and types.count("WorkflowTaskFailed") >= 2
    assert types.count("SignalReceived") == 2  # recorded while held: a fixed deploy sees them
    failure = next(e.body.failure for e in env.history("ledger") if e.type == "WorkflowTaskFailed")
    assert (failure.type, failure.message) == ("KeyError", "'cents'")


async def test_the_temporal_spelling_fails_on_the_types_it_names() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[StrictLedger]) as env:
        h = await env.client.start_workflow(StrictLedger.run, {}, id="strict")
        await h.signal(StrictLedger.note, "go")
        with pytest.raises(WorkflowFailureError) as info:
            await h.result()
    assert str(info.value).endswith("ended FAILED: KeyError: 'cents'"), str(info.value)


@activity.defn
async def refuse(what: str) -> str:
    raise ApplicationError(f"{what} refused", type="Refused", non_retryable=True)


@workflow.defn
class Child:
    @workflow.run
    async def run(self) -> str:
        raise ApplicationError("child says no", type="No")


@workflow.defn
class Escapes:
    """Lets the errors of what it awaited escape: each fails the workflow under the default
    policy (they are FailureErrors), and a cancellation still ends it CANCELLED."""

    @workflow.run
    async def run(self, how: str) -> str:
        if how == "application":
            raise ApplicationError("no stock", type="NoStock")
        if how == "activity":
            await workflow.execute_activity(refuse, "card", start_to_close_timeout=timedelta(seconds=5))
        if how == "child":
            await workflow.execute_child_workflow(Child.run, id="escapes-child")
        if how == "timeout":
            await workflow.wait_condition(lambda: False, timeout=timedelta(seconds=5))
        if how == "cancel":
            await workflow.wait_condition(lambda: False)
        return "not reached"


@pytest.mark.parametrize("how,cause", [("application", "ApplicationError"), ("activity", "ActivityError"),
                                       ("child", "ChildWorkflowError"), ("timeout", "TimeoutError")])
async def test_failure_errors_escaping_run_fail_the_workflow(how: str, cause: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Escapes, Child], activities=[refuse]) as env:
        with pytest.raises(WorkflowFailureError) as info:
            await env.client.execute_workflow(Escapes.run, how, id=f"escapes-{how}")
        assert "WorkflowTaskFailed" not in [e.type for e in env.history(f"escapes-{how}")]
    assert info.value.status == "FAILED" and type(info.value.cause).__name__ == cause


async def test_a_cancelled_workflow_still_ends_cancelled() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Escapes]) as env:
        h = await env.client.start_workflow(Escapes.run, "cancel", id="escapes-cancel")
        await h.cancel()
        with pytest.raises(WorkflowFailureError) as info:
            await h.result()
    assert info.value.status == "CANCELLED"


# ---------------------------------------------------------------- a blocking step does not stall the engine


RAN = {"sleepy": 0}


@workflow.defn(failure_policy=FailurePolicy(deadlock_timeout=timedelta(milliseconds=100)))
class Sleepy:
    @workflow.run
    async def run(self) -> str:
        RAN["sleepy"] += 1
        time.sleep(0.3)  # a blocking call in workflow code: the watchdog's interrupt lands after it
        return "woke"


@workflow.defn
class Ticker:
    @workflow.run
    async def run(self, n: int) -> int:
        for _ in range(n):
            await workflow.sleep(timedelta(seconds=30))
        return n


async def test_a_deadlocked_task_is_not_rerun_at_every_retry_while_other_workflows_progress() -> None:
    RAN["sleepy"] = 0
    async with WorkflowEnvironment.start_time_skipping(workflows=[Sleepy, Ticker], fail_fast=False) as env:
        await env.client.start_workflow(Sleepy.run, id="sleepy")
        fired = env.stats["timers_fired"]
        started = time.monotonic()
        # ten minutes of workflow time: the ticker's 20 timers, and the held task's retry timer
        # (1 s, 2 s, 4 s ... after the deadlock), which never runs the blocking step again
        assert await env.client.execute_workflow(Ticker.run, 20, id="ticker") == 20
        wall = time.monotonic() - started
        assert env.stats["timers_fired"] - fired >= 20 + 5
        history = env.history("sleepy")
    assert RAN["sleepy"] == 1, f"the blocking step ran {RAN['sleepy']} times"
    assert wall < 2.0, f"the other workflow took {wall:.1f}s of wall time"
    assert [e.type for e in history] == ["WorkflowStarted", "WorkflowTaskFailed"]
    assert history[-1].body.failure.type == "DeadlockError"
    # `aion workflow describe` says it is held, and why, with no misleading next try
    from aion.client._pending import pending_of

    task = pending_of(history, lambda ms: None if ms is None else str(ms))["workflow_task"]
    assert task["state"] == "HELD" and task["error"].startswith("DeadlockError: ") and task["next_try"] is None
    assert "retried once a restarted or newly deployed engine worker holds it" in task["error"]


# ---------------------------------------------------------------- signals that do not fit their handler


@dataclass
class Line:
    sku: str
    qty: int


@workflow.defn
class Basket:
    def __init__(self) -> None:
        self.items: list[list] = []

    @workflow.run
    async def run(self, n: int) -> list:
        await workflow.wait_condition(lambda: len(self.items) >= n)
        return self.items

    @workflow.signal
    def add(self, sku: str, qty: int = 1) -> None:
        self.items.append([sku, qty])

    @workflow.signal
    async def add_line(self, line: Line) -> None:
        self.items.append([line.sku, line.qty])


async def test_a_signal_with_arguments_that_do_not_fit_its_handler_is_refused() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Basket]) as env:
        h = await env.client.start_workflow(Basket.run, 2, id="basket")
        with pytest.raises(SignalArgumentsError) as info:
            await h.signal(Basket.add)  # too few
        assert isinstance(info.value, TypeError)
        msg = str(info.value)
        assert "signal 'add' of workflow type 'Basket' takes 1 to 2 arguments add(sku: str, qty: int = 1)" in msg
        assert "was sent 0 arguments" in msg and "missing a required argument: 'sku'" in msg
        with pytest.raises(SignalArgumentsError, match="was sent 3 arguments: too many positional arguments"):
            await h.signal(Basket.add, "apple", 2, "extra")
        with pytest.raises(SignalArgumentsError, match="cannot be decoded .* add_line"):
            await h.signal(Basket.add_line, {"name": "pear"})
        assert "SignalReceived" not in [e.type for e in env.history("basket")]  # nothing recorded
        # the run goes on: fitting signals are delivered
        await h.signal(Basket.add, "apple")
        await h.signal(Basket.add_line, Line("pear", 3))
        assert await h.result() == [["apple", 1], ["pear", 3]]
        assert "WorkflowTaskFailed" not in [e.type for e in env.history("basket")]


async def test_a_signal_with_start_whose_signal_does_not_fit_starts_nothing() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Basket]) as env:
        with pytest.raises(SignalArgumentsError):
            await env.client.signal_with_start(Basket.run, 1, id="basket-sws", signal=Basket.add,
                                               signal_args=["apple", 1, 2])
        assert env.history("basket-sws") == []
        # and on a running workflow it is refused like a plain signal
        h = await env.client.start_workflow(Basket.run, 1, id="basket-sws")
        with pytest.raises(SignalArgumentsError):
            await env.client.signal_with_start(Basket.run, 1, id="basket-sws", signal=Basket.add, signal_args=[])
        await env.client.signal_with_start(Basket.run, 1, id="basket-sws", signal=Basket.add, signal_args=["fig"])
        assert await h.result() == [["fig", 1]]


def test_a_refused_signal_without_reply_to_is_a_step_refusal() -> None:
    """The engine dead-letters a refusal nobody can be told of (a signal from another workflow)."""
    from aion.converter import default_converter
    from aion.model import Command, SignalWorkflow, StartWorkflow
    from aion.runtime import Registry, WorkflowExecution

    conv = default_converter()
    ex = WorkflowExecution.new(Registry([Basket]), "b-1")
    ex.handle(Command("s", "b-1", 1_000, StartWorkflow("Basket", conv.to_payloads([1]))), 1_000)
    step = ex.handle(Command("sig", "b-1", 2_000, SignalWorkflow("add", conv.to_payloads([1, 2, 3]))), 2_000)
    assert step.events == [] and step.effects == []
    assert step.refusal is not None and step.refusal.type == "SignalArgumentsError"
    assert ex.status == "RUNNING" and not ex.held


def test_signal_args_problem_is_a_pure_check() -> None:
    from aion.converter import default_converter
    from aion.runtime._signals import signal_args_problem

    conv = default_converter()
    fn = Basket.add
    assert signal_args_problem("Basket", "add", fn, conv.to_payloads(["a"]), conv) is None
    assert signal_args_problem("Basket", "add", fn, conv.to_payloads(["a", 2]), conv) is None
    assert "takes 1 to 2 arguments" in (signal_args_problem("Basket", "add", fn, [], conv) or "")

    def star(self: object, first: str, *rest: int) -> None: ...

    assert signal_args_problem("W", "star", star, conv.to_payloads(["a", 1, 2, 3]), conv) is None
    assert "takes at least 1 argument" in (signal_args_problem("W", "star", star, [], conv) or "")
