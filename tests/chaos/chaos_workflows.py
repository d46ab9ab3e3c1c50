"""Workflows and activities of the chaos test: short, deterministic, each with a known outcome.

Every workflow's result is a pure function of its input (and of the signals the test sends),
so the checker can tell from the events topic alone whether it ended as it should, however
many times its steps were re-processed, its activities re-run or its timers re-fired. Attempt
counts are taken from ``activity.info().attempt`` (engine-side state), never from files or
process memory, so a killed activity worker changes nothing but the timing.

:func:`expected_outcome` is the oracle the test checks the histories against.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from aion import RetryPolicy, activity, workflow
from aion.exceptions import ApplicationError

FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=1), maximum_attempts=8)
#: Activities run for well under a second, so a lost attempt (killed worker) is retried soon.
S2C = timedelta(seconds=4)
#: The slow activity of the activity-worker kill: long enough to be killed mid-attempt.
SLOW_SECONDS = 2.0
SLOW_S2C = timedelta(seconds=6)


# ---------------------------------------------------------------- activities


@activity.defn
async def work(key: str, fail_attempts: int) -> str:
    """Fails its first ``fail_attempts`` attempts (retryable), then returns ``done:<key>``."""
    await asyncio.sleep(0.02)
    attempt = activity.info().attempt
    if attempt <= fail_attempts:
        raise ApplicationError(f"{key}: attempt {attempt} fails on purpose", type="Flaky")
    return f"done:{key}"


@activity.defn
async def slow(key: str, seconds: float) -> str:
    """Runs ``seconds`` (heartbeating) — the attempt the test kills its worker in the middle of."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        activity.heartbeat("tick")
        await asyncio.sleep(0.1)
    return f"slow:{key}"


@activity.defn
async def decline(key: str) -> str:
    raise ApplicationError(f"{key}: declined", type="Declined", non_retryable=True)


# ---------------------------------------------------------------- workflows


@workflow.defn
class ActivityFlow:
    """An activity that fails ``fails`` times before it succeeds, then a short timer."""

    @workflow.run
    async def run(self, key: str, fails: int) -> str:
        r = await workflow.execute_activity(work, key, fails, start_to_close_timeout=S2C, retry_policy=FAST_RETRY)
        await workflow.sleep(timedelta(milliseconds=200))
        return r


@workflow.defn
class TimerFlow:
    """Two timers that fire, and one (a ``workflow.timeout``) that is cancelled."""

    @workflow.run
    async def run(self, n: int) -> int:
        await workflow.sleep(timedelta(milliseconds=150))
        async with workflow.timeout(timedelta(seconds=120)):
            r = await workflow.execute_activity(work, f"t{n}", 0, start_to_close_timeout=S2C, retry_policy=FAST_RETRY)
        await workflow.sleep(timedelta(milliseconds=300 + 10 * (n % 10)))
        return n * 2 + len(r)


@workflow.defn
class SignalFlow:
    """Waits (with a timeout timer that gets cancelled) for ``needed`` signals; sums them."""

    def __init__(self) -> None:
        self.values: list[int] = []

    @workflow.run
    async def run(self, needed: int) -> int:
        await workflow.wait_condition(lambda: len(self.values) >= needed, timeout=timedelta(seconds=180))
        await workflow.sleep(timedelta(milliseconds=100))
        return sum(self.values)

    @workflow.signal
    def add(self, value: int) -> None:
        self.values.append(value)


@workflow.defn
class ChildFlow:
    @workflow.run
    async def run(self, x: int) -> int:
        await workflow.execute_activity(work, f"child{x}", x % 2, start_to_close_timeout=S2C, retry_policy=FAST_RETRY)
        await workflow.sleep(timedelta(milliseconds=100))
        return x * 10


@workflow.defn
class ParentFlow:
    """Runs a child (usually on another partition, so often on another engine worker)."""

    @workflow.run
    async def run(self, x: int) -> int:
        r = await workflow.execute_child_workflow(ChildFlow.run, x, id=f"{workflow.info().workflow_id}-child")
        return r + 1


@workflow.defn
class LoopFlow:
    """Continues as new until ``n == limit``; every run does an activity and a timer."""

    @workflow.run
    async def run(self, n: int, limit: int) -> int:
        await workflow.execute_activity(work, f"loop{n}", 0, start_to_close_timeout=S2C, retry_policy=FAST_RETRY)
        await workflow.sleep(timedelta(milliseconds=100))
        if n < limit:
            workflow.continue_as_new(n + 1, limit)
        return n


@workflow.defn
class DeclineFlow:
    """Ends FAILED: its activity fails with a non-retryable error."""

    @workflow.run
    async def run(self, key: str) -> str:
        return await workflow.execute_activity(decline, key, start_to_close_timeout=S2C, retry_policy=FAST_RETRY)


@workflow.defn
class SlowFlow:
    """One slow activity (heartbeats): the test kills -9 the activity worker running it."""

    @workflow.run
    async def run(self, key: str) -> str:
        return await workflow.execute_activity(
            slow, key, SLOW_SECONDS, start_to_close_timeout=SLOW_S2C, heartbeat_timeout=timedelta(seconds=3),
            retry_policy=FAST_RETRY)


@workflow.defn
class NapFlow:
    """A short timer inside a long ``workflow.timeout``: the step of its fire also cancels the
    timeout's timer (a far one, kept in the timers table beyond the wheel's window)."""

    @workflow.run
    async def run(self, ms: int) -> str:
        async with workflow.timeout(timedelta(seconds=300)):
            await workflow.sleep(timedelta(milliseconds=ms))
        return "rested"


@workflow.defn
class BigResultFlow:
    """Returns ``n`` bytes of text: over the engine's payload limit, its closing event must be
    refused before anything of the step is written (the run is terminated with the reason)."""

    @workflow.run
    async def run(self, n: int) -> str:
        await workflow.sleep(timedelta(milliseconds=10))
        return "x" * n


# ---------------------------------------------------------------- the oracle


def expected_outcome(workflow_type: str, args: list[Any], signals: list[int] | None = None) -> tuple[str, Any]:
    """``(status, result)`` the workflow started with ``args`` must end with.

    For FAILED the result is the failure type expected in ``WorkflowFailed`` (its cause chain).
    """
    if workflow_type == "ActivityFlow":
        return "COMPLETED", f"done:{args[0]}"
    if workflow_type == "TimerFlow":
        n = args[0]
        return "COMPLETED", n * 2 + len(f"done:t{n}")
    if workflow_type == "SignalFlow":
        return "COMPLETED", sum(signals or [])
    if workflow_type == "ChildFlow":
        return "COMPLETED", args[0] * 10
    if workflow_type == "ParentFlow":
        return "COMPLETED", args[0] * 10 + 1
    if workflow_type == "LoopFlow":
        return "COMPLETED", args[1]
    if workflow_type == "DeclineFlow":
        return "FAILED", "Declined"
    if workflow_type == "SlowFlow":
        return "COMPLETED", f"slow:{args[0]}"
    if workflow_type == "NapFlow":
        return "COMPLETED", "rested"
    raise ValueError(f"no expected outcome for workflow type {workflow_type!r}")

