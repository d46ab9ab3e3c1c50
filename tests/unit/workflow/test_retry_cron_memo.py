"""Temporal's workflow retry policy, cron workflows and memos, in the test environment.

- A child (or a started workflow) with ``retry_policy`` that fails is retried as a new run of
  the same id after the policy's backoff; the parent (the client) sees the last run's outcome.
- ``cron_schedule`` runs the workflow at each fire time, the first run included; every close
  but cancel and terminate is followed by the next run; ``workflow.info().cron_schedule``,
  ``get_last_completion_result()`` and ``get_last_failure()`` as in Temporal.
- ``memo`` is stored with the start: ``describe().memo`` and ``workflow.memo()``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aion import workflow
from aion.exceptions import ApplicationError, ChildWorkflowError, InvalidArgumentError, WorkflowFailureError
from aion.runtime import Registry, replay_history
from aion.testing import WorkflowEnvironment

RUNS: list[tuple[str, int]] = []


@workflow.defn
class Flaky:
    """Fails until its ``ok_at``-th attempt; fails for good with a non-retryable error on request."""

    @workflow.run
    async def run(self, ok_at: int) -> str:
        info = workflow.info()
        RUNS.append((info.run_id, info.attempt))
        await workflow.sleep(1)
        if ok_at < 0:
            raise ApplicationError("bad input", non_retryable=True)
        if info.attempt < ok_at:
            raise ApplicationError(f"attempt {info.attempt} failed", type="Flaky")
        last = workflow.get_last_failure()
        return f"ok at attempt {info.attempt} after {last}"


@workflow.defn
class Parent:
    @workflow.run
    async def run(self, ok_at: int, max_attempts: int) -> str:
        try:
            return await workflow.execute_child_workflow(
                Flaky.run, ok_at, id="flaky-child",
                retry_policy=workflow.RetryPolicy(initial_interval=timedelta(seconds=10), maximum_attempts=max_attempts),
                memo={"owner": "team-a", "n": 3})
        except ChildWorkflowError as err:
            return f"child failed: {err.cause}"


@workflow.defn
class MemoReader:
    @workflow.run
    async def run(self) -> dict:
        return {"memo": workflow.memo(), "owner": workflow.memo_value("owner"),
                "missing": workflow.memo_value("missing", "default")}


@workflow.defn
class Ticker:
    """A cron workflow: counts its runs through the last completion result."""

    @workflow.run
    async def run(self, fail_on: int) -> int:
        prev = workflow.get_last_completion_result(int) or 0
        n = prev + 1
        RUNS.append((workflow.info().cron_schedule, n))
        if n == fail_on and workflow.get_last_failure() is None:
            raise ApplicationError(f"run {n} failed")
        return n


@pytest.fixture(autouse=True)
def _clear() -> None:
    RUNS.clear()


async def test_a_failed_child_is_retried_as_a_new_run_and_the_parent_sees_the_last_outcome() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Parent, Flaky]) as env:
        start = env.now()
        out = await env.client.execute_workflow(Parent.run, 3, 5, id="parent-1")
        assert out.startswith("ok at attempt 3 after ") and "attempt 2 failed" in out, out
        assert [a for _, a in RUNS] == [1, 2, 3] and len({r for r, _ in RUNS}) == 3
        # backoff 10 s then 20 s, plus the child's 1 s sleep in each of its three runs
        assert env.now() - start >= timedelta(seconds=33)
        child = env.client.get_workflow_handle("flaky-child")
        d = await child.describe()
        assert d.status == "COMPLETED" and d.runs == 3 and d.attempt == 3
        assert d.memo == {"owner": "team-a", "n": 3}
        types = [e.type for e in await child.history()]
        assert types.count("WorkflowFailed") == 2 and types.count("WorkflowStarted") == 3
        parent_types = [e.type for e in await env.client.get_workflow_handle("parent-1").history()]
        assert "ChildWorkflowFailed" not in parent_types and "ChildWorkflowCompleted" in parent_types
        # the child's history replays (the delayed first tasks included)
        assert replay_history(Registry([Parent, Flaky]), env.history("flaky-child"), strict=True).ok


async def test_the_parent_sees_the_failure_once_the_attempts_are_used_up() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Parent, Flaky]) as env:
        out = await env.client.execute_workflow(Parent.run, 9, 2, id="parent-2")
    assert out == "child failed: attempt 2 failed", out
    assert [a for _, a in RUNS] == [1, 2]


async def test_a_non_retryable_failure_is_not_retried() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Parent, Flaky]) as env:
        out = await env.client.execute_workflow(Parent.run, -1, 5, id="parent-3")
    assert out == "child failed: bad input" and len(RUNS) == 1


async def test_a_started_workflow_with_a_retry_policy_is_retried_and_result_follows() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Flaky]) as env:
        h = await env.client.start_workflow(Flaky.run, 2, id="flaky-top", retry_policy=workflow.RetryPolicy(
            initial_interval=timedelta(seconds=1), maximum_attempts=3), memo={"k": [1, 2]})
        assert (await h.result()).startswith("ok at attempt 2")
        assert (await h.describe()).memo == {"k": [1, 2]}
        with pytest.raises(WorkflowFailureError):
            await env.client.execute_workflow(Flaky.run, 9, id="flaky-top-2", retry_policy=workflow.RetryPolicy(
                initial_interval=timedelta(seconds=1), maximum_attempts=2))


async def test_memo_is_readable_in_workflow_code() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[MemoReader]) as env:
        out = await env.client.execute_workflow(MemoReader.run, id="memo-1", memo={"owner": "ops", "x": 1})
    assert out == {"memo": {"owner": "ops", "x": 1}, "owner": "ops", "missing": "default"}


async def test_a_cron_workflow_runs_at_each_fire_time_with_the_last_result_until_cancelled() -> None:
    # A fixed start, 30 minutes before the hour: started from the wall clock in an hour's last
    # minute, the first fire came within that minute and 3 h 01 held four fires, not three.
    start = datetime(2026, 1, 5, 8, 30, tzinfo=timezone.utc)
    async with WorkflowEnvironment.start_time_skipping(workflows=[Ticker], start_time=start) as env:
        h = await env.client.start_workflow(Ticker.run, 2, id="ticker", cron_schedule="0 * * * *")
        d = await h.describe()
        assert d.cron_schedule == "0 * * * *" and d.first_task_at_ms is not None
        first = datetime.fromtimestamp(d.first_task_at_ms / 1000, tz=timezone.utc)
        assert first == datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc) and first > env.now()
        assert RUNS == []  # the first run waits for the first fire time
        await env.sleep(timedelta(hours=3, minutes=1))
        # runs 1, 2 (failed, then the next hour's run sees it and completes as 2), 3
        assert [n for _, n in RUNS] == [1, 2, 2]
        assert {c for c, _ in RUNS} == {"0 * * * *"}
        await h.cancel()
        d = await h.describe()
        assert d.status == "CANCELLED"
        await env.sleep(timedelta(hours=2))
        assert len(RUNS) == 3
        statuses = [e.type for e in await h.history()]
        assert statuses.count("WorkflowCompleted") == 2 and statuses.count("WorkflowFailed") == 1
        assert replay_history(Registry([Ticker]), env.history("ticker"), strict=True).ok


async def test_a_cron_child_runs_until_the_parent_closes() -> None:
    @workflow.defn(name="CronParent")
    class CronParent:
        @workflow.run
        async def run(self) -> str:
            await workflow.start_child_workflow(Ticker.run, 0, id="ticker-child", cron_schedule="*/30 * * * *",
                                                parent_close_policy=workflow.ParentClosePolicy.TERMINATE)
            await workflow.sleep(timedelta(hours=2))
            return "done"

    async with WorkflowEnvironment.start_time_skipping(workflows=[CronParent, Ticker]) as env:
        assert await env.client.execute_workflow(CronParent.run, id="cron-parent") == "done"
        assert [n for _, n in RUNS] == [1, 2, 3, 4]
        d = await env.client.get_workflow_handle("ticker-child").describe()
        assert d.status == "TERMINATED"


async def test_an_invalid_cron_schedule_is_refused_at_the_start_and_on_a_child() -> None:
    @workflow.defn(name="BadCronParent")
    class BadCronParent:
        @workflow.run
        async def run(self) -> str:
            try:
                await workflow.start_child_workflow(Ticker.run, 0, id="bad-child", cron_schedule="every day")
            except InvalidArgumentError as err:
                return str(err)
            return "accepted"

    async with WorkflowEnvironment.start_time_skipping(workflows=[BadCronParent, Ticker]) as env:
        with pytest.raises(InvalidArgumentError, match="not a valid 5-field cron expression"):
            await env.client.start_workflow(Ticker.run, 0, id="bad", cron_schedule="61 * * * *")
        assert env.history("bad") == []
        out = await env.client.execute_workflow(BadCronParent.run, id="bad-parent")
        assert "'bad-child'" in out and "cron" in out, out
