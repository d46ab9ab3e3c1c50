"""aion.testing.WorkflowEnvironment: time skipping, the client API, activities in-process."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from aion import RetryPolicy, activity, workflow
from aion.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
)
from aion.testing import WorkflowEnvironment, WorkflowTaskFailedError
from aion.workflow import FailurePolicy

YEAR = timedelta(days=365)


# ---------------------------------------------------------------- workflows and activities


@workflow.defn
class Sleeper:
    def __init__(self) -> None:
        self.state = "new"

    @workflow.run
    async def run(self, seconds: float) -> float:
        start = workflow.now()
        self.state = "sleeping"
        await workflow.sleep(timedelta(seconds=seconds))
        self.state = "awake"
        return (workflow.now() - start).total_seconds()

    @workflow.query
    def status(self) -> str:
        return self.state


_calls: dict[str, int] = {}


@activity.defn
async def flaky(key: str, failures: int) -> str:
    """Fails ``failures`` times per key, then succeeds."""
    n = _calls[key] = _calls.get(key, 0) + 1
    if n <= failures:
        raise RuntimeError(f"transient failure #{n}")
    return f"ok after {n}"


@activity.defn
async def describe_attempt() -> dict:
    info = activity.info()
    activity.heartbeat("halfway")
    return {"workflow_id": info.workflow_id, "attempt": info.attempt, "type": info.activity_type,
            "in_activity": activity.in_activity()}


@activity.defn
def sync_thread_name() -> str:
    info = activity.info()  # the context is current in the pool thread too
    return f"{info.activity_type}:{threading.current_thread().name != 'MainThread'}"


_cancel_seen: dict[str, str] = {}


@activity.defn
async def wait_for_cancel_forever(key: str) -> str:
    try:
        await activity.wait_for_cancel()
        _cancel_seen[key] = "observed"
        raise asyncio.CancelledError()
    except asyncio.CancelledError:
        _cancel_seen.setdefault(key, "cancelled")
        raise


@activity.defn
async def hang() -> None:
    await asyncio.Event().wait()


@activity.defn
async def resumable(total: int) -> list:
    """Heartbeats its progress; attempt 1 dies half-way, attempt 2 resumes from the details."""
    info = activity.info()
    start = info.heartbeat_details[0] if info.heartbeat_details else 0
    for i in range(start, total):
        activity.heartbeat(i + 1)
        if info.attempt == 1 and i + 1 == total // 2:
            raise RuntimeError("worker crashed half-way")
    return [info.attempt, start]


@activity.defn
async def heartbeats_then_stalls(beats: int) -> str:
    for i in range(beats):
        activity.heartbeat(i)
        await asyncio.sleep(0.05)
    await asyncio.Event().wait()  # stops heartbeating
    return "unreachable"


@workflow.defn
class Heartbeating:
    @workflow.run
    async def run(self, name: str, arg: int) -> object:
        try:
            return await workflow.execute_activity(
                name, arg, start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(milliseconds=250),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=2))
        except ActivityError as err:
            return f"{type(err.cause).__name__}:{getattr(err.cause, 'timeout_type', '')}"


@workflow.defn
class RunsActivity:
    @workflow.run
    async def run(self, name: str, args: list) -> object:
        return await workflow.execute_activity(
            name, *args, start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(minutes=10), maximum_attempts=5),
        )


@workflow.defn
class Cancellable:
    def __init__(self) -> None:
        self.stop = False

    @workflow.run
    async def run(self, key: str) -> str:
        handle = workflow.start_activity(wait_for_cancel_forever, key,
                                         start_to_close_timeout=timedelta(hours=1))
        await workflow.wait_condition(lambda: self.stop)
        handle.cancel()
        try:
            await handle
        except (ActivityError, CancelledError):
            return "activity cancelled"
        return "activity finished"

    @workflow.signal
    def halt(self) -> None:
        self.stop = True


@workflow.defn
class TimesOut:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity(
                hang, start_to_close_timeout=timedelta(milliseconds=300),
                retry_policy=RetryPolicy(maximum_attempts=1))
        except ActivityError as err:
            return f"{type(err.cause).__name__}:{getattr(err.cause, 'timeout_type', '')}"
        return "no timeout"


@workflow.defn
class Compensating:
    def __init__(self) -> None:
        self.log: list[str] = []

    @workflow.run
    async def run(self) -> list[str]:
        try:
            self.log.append("did A")
            await workflow.sleep(timedelta(days=30))
            self.log.append("did B")
        except CancelledError:
            await workflow.execute_activity(describe_attempt, start_to_close_timeout=timedelta(seconds=5))
            self.log.append("undid A")
            raise
        return self.log

    @workflow.query
    def steps(self) -> list[str]:
        return list(self.log)


@workflow.defn
class Buggy:
    @workflow.run
    async def run(self) -> None:
        {}["missing"]  # a bug in workflow code


HOLD_ON_BUGS = FailurePolicy(workflow_failure_types=(ApplicationError,))


@workflow.defn(failure_policy=HOLD_ON_BUGS)
class HeldOnBug:
    @workflow.run
    async def run(self) -> None:
        {}["missing"]


@workflow.defn
class Child:
    @workflow.run
    async def run(self, n: int) -> int:
        await workflow.sleep(timedelta(days=n))
        return n * 10


@workflow.defn
class Parent:
    @workflow.run
    async def run(self, n: int) -> int:
        results = await asyncio.gather(*(
            workflow.execute_child_workflow(Child.run, i, id=f"{workflow.info().workflow_id}-child-{i}")
            for i in range(1, n + 1)))
        return sum(results)


def env_with(*, workflows=(), activities=(), **kw) -> WorkflowEnvironment:
    return WorkflowEnvironment.start_time_skipping(workflows=list(workflows), activities=list(activities), **kw)


# ---------------------------------------------------------------- time skipping


async def test_a_one_year_sleep_takes_milliseconds() -> None:
    async with env_with(workflows=[Sleeper]) as env:
        started = time.monotonic()
        before = env.now()
        slept = await env.client.execute_workflow(Sleeper.run, YEAR.total_seconds(), id="year")
        wall = time.monotonic() - started

        assert slept == YEAR.total_seconds()  # workflow.now() moved exactly one year
        assert wall < 2.0
        assert env.now() - before >= YEAR


async def test_start_time_sets_the_clock() -> None:
    t0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
    async with env_with(workflows=[Sleeper], start_time=t0) as env:
        assert abs(env.now() - t0) < timedelta(seconds=5)
        await env.client.execute_workflow(Sleeper.run, 3600.0, id="t0")
        history = env.history("t0")
        assert datetime.fromtimestamp(history[0].recorded_at_ms / 1000, timezone.utc) - t0 < timedelta(seconds=5)


async def test_no_skipping_while_nobody_waits() -> None:
    async with env_with(workflows=[Sleeper]) as env:
        handle = await env.client.start_workflow(Sleeper.run, 3600.0, id="no-skip")
        await env.wait_idle()
        await asyncio.sleep(0.05)
        assert await handle.query(Sleeper.status) == "sleeping"
        assert (await handle.describe()).status == "RUNNING"


async def test_env_sleep_advances_the_clock_and_fires_due_timers() -> None:
    async with env_with(workflows=[Sleeper]) as env:
        handle = await env.client.start_workflow(Sleeper.run, 3600.0, id="env-sleep")
        await env.sleep(timedelta(minutes=30))
        assert await handle.query(Sleeper.status) == "sleeping"
        await env.sleep(timedelta(minutes=31))
        assert await handle.query(Sleeper.status) == "awake"
        assert (await handle.describe()).status == "COMPLETED"
        assert await handle.result() == 3600.0


async def test_result_without_time_skipping_waits_in_wall_time() -> None:
    from aion.client import WorkflowResultTimeoutError

    async with env_with(workflows=[Sleeper]) as env:
        env.time_skipping = False
        handle = await env.client.start_workflow(Sleeper.run, 3600.0, id="wall")
        with pytest.raises(WorkflowResultTimeoutError):
            await handle.result(timeout=0.2)
        env.time_skipping = True
        assert await handle.result() == 3600.0


async def test_a_query_never_appends_history() -> None:
    async with env_with(workflows=[Sleeper]) as env:
        handle = await env.client.start_workflow(Sleeper.run, 60.0, id="q")
        await env.wait_idle()
        before = await handle.history()
        assert [await handle.query(Sleeper.status) for _ in range(5)] == ["sleeping"] * 5
        assert await handle.history() == before
        assert env.stats["queries"] == 5


# ---------------------------------------------------------------- activities


async def test_activity_context_info_and_heartbeat() -> None:
    async with env_with(workflows=[RunsActivity], activities=[describe_attempt]) as env:
        result = await env.client.execute_workflow(RunsActivity.run, "describe_attempt", [], id="ctx")
        assert result == {"workflow_id": "ctx", "attempt": 1, "type": "describe_attempt", "in_activity": True}
        started = [e for e in env.history("ctx") if e.type == "ActivityStarted"]
        assert started and started[0].body.worker == "aion-testing"


async def test_sync_activities_run_in_a_thread_with_their_context() -> None:
    async with env_with(workflows=[RunsActivity], activities=[sync_thread_name]) as env:
        assert await env.client.execute_workflow(RunsActivity.run, "sync_thread_name", [], id="sync") == \
            "sync_thread_name:True"


async def test_retries_back_off_on_durable_timers_skipped_in_time() -> None:
    _calls.clear()
    async with env_with(workflows=[RunsActivity], activities=[flaky]) as env:
        started = time.monotonic()
        result = await env.client.execute_workflow(RunsActivity.run, "flaky", ["k1", 2], id="retry")
        assert result == "ok after 3"
        assert time.monotonic() - started < 2.0  # 10 + 20 minutes of backoff, skipped
        history = env.history("retry")
        failed = [e.body for e in history if e.type == "ActivityFailed"]
        assert [f.will_retry for f in failed] == [True, True]
        assert [e.body.attempt for e in history if e.type == "ActivityStarted"] == [1, 2, 3]


async def test_retries_exhausted_raise_activity_error_in_the_workflow() -> None:
    _calls.clear()
    async with env_with(workflows=[RunsActivity], activities=[flaky]) as env:
        with pytest.raises(WorkflowFailureError) as info:
            await env.client.execute_workflow(RunsActivity.run, "flaky", ["k2", 99], id="exhausted")
        assert isinstance(info.value.cause, ActivityError)
        assert _calls["k2"] == 5


async def test_cancelling_an_activity_reaches_the_running_function() -> None:
    _cancel_seen.clear()
    async with env_with(workflows=[Cancellable], activities=[wait_for_cancel_forever]) as env:
        handle = await env.client.start_workflow(Cancellable.run, "c1", id="act-cancel")
        while env.running_activities == 0:
            await asyncio.sleep(0.01)
        await handle.signal(Cancellable.halt)
        assert await handle.result() == "activity cancelled"
        assert _cancel_seen["c1"] in ("observed", "cancelled")
        assert env.running_activities == 0


async def test_start_to_close_timeout_of_a_hung_activity_passes_in_wall_time() -> None:
    async with env_with(workflows=[TimesOut], activities=[hang]) as env:
        started = time.monotonic()
        outcome = await env.client.execute_workflow(TimesOut.run, id="hung")
        assert outcome == "TimeoutError:START_TO_CLOSE"
        assert 0.25 < time.monotonic() - started < 5
        assert "ActivityTimedOut" in [e.type for e in env.history("hung")]
        assert env.running_activities == 0  # the hung attempt was abandoned


async def test_heartbeat_details_reach_the_next_attempt() -> None:
    async with env_with(workflows=[Heartbeating], activities=[resumable]) as env:
        assert await env.client.execute_workflow(Heartbeating.run, "resumable", 10, id="resume") == [2, 5]


async def test_an_activity_that_stops_heartbeating_times_out() -> None:
    async with env_with(workflows=[Heartbeating], activities=[heartbeats_then_stalls]) as env:
        started = time.monotonic()
        outcome = await env.client.execute_workflow(Heartbeating.run, "heartbeats_then_stalls", 6, id="stall")
        assert outcome == "TimeoutError:HEARTBEAT"
        # Two attempts, each alive ~0.3 s on heartbeats, then 0.25 s of silence: wall time.
        assert 0.8 < time.monotonic() - started < 5
        timed_out = [e.body for e in env.history("stall") if e.type == "ActivityTimedOut"]
        assert [t.timeout_type for t in timed_out] == ["HEARTBEAT", "HEARTBEAT"]
        assert env.running_activities == 0


async def test_unregistered_activity_fails_with_an_actionable_message() -> None:
    async with env_with(workflows=[RunsActivity]) as env:
        with pytest.raises(WorkflowFailureError) as info:
            await env.client.execute_workflow(RunsActivity.run, "nope", [], id="unregistered")
        assert "not registered" in _chain_text(info.value)


# ---------------------------------------------------------------- cancel, terminate, failures


async def test_cancel_runs_compensation_then_ends_cancelled() -> None:
    async with env_with(workflows=[Compensating], activities=[describe_attempt]) as env:
        handle = await env.client.start_workflow(Compensating.run, id="comp")
        await env.wait_idle()
        await handle.cancel("stop")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert info.value.status == "CANCELLED"
        types = [e.type for e in await handle.history()]
        assert types.index("WorkflowCancelRequested") < types.index("ActivityScheduled") < types.index("WorkflowCancelled")
        assert (await handle.describe()).status == "CANCELLED"


async def test_terminate_closes_the_run_at_once() -> None:
    async with env_with(workflows=[Compensating], activities=[describe_attempt]) as env:
        handle = await env.client.start_workflow(Compensating.run, id="term")
        await env.wait_idle()
        await handle.terminate("enough")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert info.value.status == "TERMINATED"
        history = await handle.history()
        assert history[-1].type == "WorkflowTerminated"
        assert "ActivityScheduled" not in [e.type for e in history]


async def test_an_exception_in_workflow_code_holds_the_workflow_by_default() -> None:
    # As in Temporal: a KeyError is a bug, not a business failure; the task fails, the
    # workflow is held for a fixed deploy (and the test environment reports it at once)
    async with env_with(workflows=[Buggy]) as env:
        with pytest.raises(WorkflowTaskFailedError) as info:
            await env.client.execute_workflow(Buggy.run, id="buggy")
        assert info.value.failure.type == "KeyError" and "missing" in info.value.failure.message
        types = [e.type for e in env.history("buggy")]
        assert types[:2] == ["WorkflowStarted", "WorkflowTaskFailed"] and "WorkflowFailed" not in types


async def test_failing_the_workflow_on_any_exception_is_an_explicit_policy() -> None:
    async with env_with(workflows=[Buggy], failure_policy=FailurePolicy(workflow_failure_types=(Exception,))) as env:
        with pytest.raises(WorkflowFailureError) as info:
            await env.client.execute_workflow(Buggy.run, id="buggy")
        assert info.value.status == "FAILED" and "missing" in _chain_text(info.value)


async def test_a_held_workflow_fails_the_result_fast() -> None:
    async with env_with(workflows=[HeldOnBug]) as env:
        with pytest.raises(WorkflowTaskFailedError) as info:
            await env.client.execute_workflow(HeldOnBug.run, id="held")
        assert info.value.workflow_id == "held"
        assert "WorkflowTaskFailed" in [e.type for e in env.history("held")]


# ---------------------------------------------------------------- client API


async def test_duplicate_start_is_refused_with_reject_duplicate() -> None:
    async with env_with(workflows=[Sleeper]) as env:
        await env.client.start_workflow(Sleeper.run, 10.0, id="dup")
        with pytest.raises(WorkflowAlreadyStartedError):
            await env.client.start_workflow(Sleeper.run, 10.0, id="dup", id_reuse_policy="REJECT_DUPLICATE")


async def test_events_follow_the_workflow_until_it_closes() -> None:
    async with env_with(workflows=[Sleeper]) as env:
        handle = await env.client.start_workflow(Sleeper.run, 86400.0, id="follow")
        seen: list[str] = []

        async def follow() -> None:
            async for ev in handle.events():
                seen.append(ev.type)

        follower = asyncio.create_task(follow())
        await handle.result()
        await asyncio.wait_for(follower, 2)
        assert seen == [e.type for e in await handle.history()]
        assert seen[-1] == "WorkflowCompleted"


async def test_child_workflows_run_in_the_environment() -> None:
    async with env_with(workflows=[Parent, Child]) as env:
        assert await env.client.execute_workflow(Parent.run, 3, id="parent") == 60
        assert env.history("parent-child-3")[-1].type == "WorkflowCompleted"
        assert (await env.client.get_workflow_handle("parent-child-2").describe()).parent_workflow_id == "parent"


async def test_unknown_workflow_ids_raise_not_found() -> None:
    from aion.exceptions import WorkflowNotFoundError

    async with env_with(workflows=[Sleeper]) as env:
        handle = env.client.get_workflow_handle("nobody")
        with pytest.raises(WorkflowNotFoundError):
            await handle.result()
        with pytest.raises(WorkflowNotFoundError):
            await handle.signal("anything")
        with pytest.raises(WorkflowNotFoundError):
            await handle.describe()
        assert env.history("nobody") == []


async def test_replay_reports_a_divergence_after_a_code_change() -> None:
    async with env_with(workflows=[Sleeper]) as env:
        await env.client.execute_workflow(Sleeper.run, 60.0, id="to-replay")
        assert env.replay("to-replay").ok

    @workflow.defn(name="Sleeper")
    class SleeperV2:  # same type name, issues an activity where v1 started a timer
        @workflow.run
        async def run(self, seconds: float) -> float:
            await workflow.execute_activity(describe_attempt, start_to_close_timeout=timedelta(seconds=5))
            return seconds

    # The environment's history is what `aion replay` reads: the changed code diverges.
    from aion.runtime import Registry, replay_history

    result = replay_history(Registry(workflows=[SleeperV2], activities=[describe_attempt]), env.history("to-replay"))
    assert not result.ok and result.divergence is not None
    assert result.divergence.workflow_id == "to-replay"


async def test_get_workflow_handle_for_decodes_by_the_run_hint() -> None:
    async with env_with(workflows=[Sleeper]) as env:
        await env.client.start_workflow(Sleeper.run, 5.0, id="typed")
        handle = env.client.get_workflow_handle_for(Sleeper.run, "typed")
        assert await handle.result() == 5.0


def _chain_text(exc: BaseException | None) -> str:
    parts = []
    while exc is not None:
        parts.append(str(exc))
        exc = exc.__cause__
    return " | ".join(parts)
