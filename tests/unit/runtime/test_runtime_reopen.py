"""Reopen (``runtime/_lifecycle.py``): a FAILED or CANCELLED run goes on from before what closed
it. Through the in-process test environment (the same runtime the engine runs) and by replay
of the recorded history."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aion import RetryPolicy, activity, workflow
from aion.exceptions import ApplicationError, WorkflowFailureError, WorkflowNotFoundError, WorkflowStateError
from aion.model import (
    ActivityFailed, ActivityStarted, TimerCancelled, TimerFired, TimerStarted, WorkflowCancelRequested, WorkflowFailed,
    WorkflowReopened,
)
from aion.runtime import Registry, WorkflowExecution
from aion.testing import WorkflowEnvironment

card_service_up = False


@activity.defn
async def charge(cents: int) -> str:
    if not card_service_up:
        raise RuntimeError("card service unavailable")
    return f"charged {cents}"


@workflow.defn
class Checkout:
    @workflow.run
    async def run(self, cents: int) -> str:
        return await workflow.execute_activity(
            charge, cents, start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1)))


@workflow.defn
class Strict:
    def __init__(self) -> None:
        self.orders: list[str] = []

    @workflow.signal
    def order(self, item: str) -> None:
        self.orders.append(item)

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: bool(self.orders))
        raise ApplicationError(f"cannot ship {self.orders[0]}")


@workflow.defn
class Quick:
    @workflow.run
    async def run(self) -> str:
        return "done"


def bodies(history, kind):  # type: ignore[no-untyped-def]
    return [e.body for e in history if isinstance(e.body, kind)]


def replayed(env: WorkflowEnvironment, wid: str, *workflows: type) -> WorkflowExecution:
    """The execution a restarted engine would rebuild from the recorded history."""
    reg = Registry(workflows=list(workflows))
    ex = WorkflowExecution.from_history(reg, wid, env.history(wid))
    assert ex.load_failure is None, ex.load_failure
    return ex


async def test_exhausted_retries_then_reopen_continues_at_attempt_4() -> None:
    global card_service_up
    card_service_up = False
    async with WorkflowEnvironment.start_time_skipping(workflows=[Checkout], activities=[charge]) as env:
        h = await env.client.start_workflow(Checkout.run, 250, id="checkout-1")
        with pytest.raises(WorkflowFailureError, match="card service unavailable"):
            await h.result()
        history = env.history("checkout-1")
        terminal = [e for e in history if isinstance(e.body, ActivityFailed) and not e.body.will_retry]
        assert [b.attempt for b in bodies(history, ActivityFailed)] == [1, 2, 3]

        card_service_up = True
        await h.reopen("card service is back")
        assert await h.result() == "charged 250"
        history = env.history("checkout-1")
        reopen = bodies(history, WorkflowReopened)
        assert len(reopen) == 1 and reopen[0].from_seq == terminal[0].seq and reopen[0].reason == "card service is back"
        assert [b.attempt for b in bodies(history, ActivityStarted)] == [1, 2, 3, 4]
        d = await h.describe()
        assert d.status == "COMPLETED" and d.reopens == 1
        ex = replayed(env, "checkout-1", Checkout)
        assert ex.status == "COMPLETED"


async def test_a_reopened_run_can_fail_and_be_reopened_again() -> None:
    global card_service_up
    card_service_up = False
    async with WorkflowEnvironment.start_time_skipping(workflows=[Checkout], activities=[charge]) as env:
        h = await env.client.start_workflow(Checkout.run, 5, id="checkout-2")
        with pytest.raises(WorkflowFailureError):
            await h.result()
        await h.reopen()
        with pytest.raises(WorkflowFailureError, match="card service unavailable"):
            await h.result()
        assert (await h.describe()).status == "FAILED"
        card_service_up = True
        await h.reopen("second try")
        assert await h.result() == "charged 5"
        history = env.history("checkout-2")
        assert [b.attempt for b in bodies(history, ActivityStarted)] == [1, 2, 3, 4, 5]
        assert len(bodies(history, WorkflowReopened)) == 2 and len(bodies(history, WorkflowFailed)) == 2
        assert replayed(env, "checkout-2", Checkout).status == "COMPLETED"


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(timedelta(hours=1))
        return "woke"


async def test_reopen_of_a_cancelled_run_arms_its_timer_again_at_its_fire_time() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Sleeper]) as env:
        h = await env.client.start_workflow(Sleeper.run, id="sleeper")
        await env.sleep(timedelta(minutes=10))
        await h.cancel("by mistake")
        with pytest.raises(WorkflowFailureError, match="CANCELLED"):
            await h.result()
        history = env.history("sleeper")
        fire_at = bodies(history, TimerStarted)[0].fire_at_ms
        assert bodies(history, TimerCancelled)  # the cancel tore the timer down
        await h.reopen("cancelled by mistake")
        assert await h.result() == "woke"
        history = env.history("sleeper")
        reopen = bodies(history, WorkflowReopened)[0]
        cancel_seq = next(e.seq for e in history if isinstance(e.body, WorkflowCancelRequested))
        assert reopen.from_seq == cancel_seq
        fired = next(e for e in history if isinstance(e.body, TimerFired))
        assert fired.recorded_at_ms >= fire_at  # on its original time, not an hour after the reopen
        assert fired.recorded_at_ms - fire_at < 60_000
        assert replayed(env, "sleeper", Sleeper).status == "COMPLETED"


async def test_reopen_runs_the_failing_step_again_and_the_same_code_fails_the_same_way() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Strict]) as env:
        h = await env.client.start_workflow(Strict.run, id="strict")
        await h.signal(Strict.order, "piano")
        with pytest.raises(WorkflowFailureError, match="cannot ship piano"):
            await h.result()
        await h.reopen()
        with pytest.raises(WorkflowFailureError, match="cannot ship piano"):
            await h.result()
        history = env.history("strict")
        kinds = [type(e.body).__name__ for e in history]
        assert kinds[-3:] == ["WorkflowFailed", "WorkflowReopened", "WorkflowFailed"]
        assert "WorkflowTaskFailed" not in kinds  # the step ran again; no divergence
        assert replayed(env, "strict", Strict).status == "FAILED"


async def test_reopen_is_refused_for_running_completed_and_terminated_runs_and_records_nothing() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Sleeper, Quick]) as env:
        running = await env.client.start_workflow(Sleeper.run, id="r-running")
        n = len(env.history("r-running"))
        with pytest.raises(WorkflowStateError, match="it is running"):
            await running.reopen()
        assert len(env.history("r-running")) == n
        await running.terminate("done with it")
        with pytest.raises(WorkflowStateError, match="ended TERMINATED"):
            await running.reopen()
        done = await env.client.start_workflow(Quick.run, id="r-done")
        assert await done.result() == "done"
        with pytest.raises(WorkflowStateError, match="ended COMPLETED.*only a FAILED or CANCELLED run"):
            await done.reopen()
        assert not bodies(env.history("r-done"), WorkflowReopened)
        with pytest.raises(WorkflowNotFoundError, match="no workflow with id 'nobody'"):
            await env.client.get_workflow_handle("nobody").reopen()
