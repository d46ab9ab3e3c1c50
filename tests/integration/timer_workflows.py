"""Workflows the timer and schedule integration tests run through real Kafka (no activities)."""

from __future__ import annotations

import asyncio

from aion import workflow


@workflow.defn
class SleepTwice:
    """Two timers one after the other: the second is armed only once the first woke the code."""

    @workflow.run
    async def run(self, first_ms: int, second_ms: int) -> str:
        await workflow.sleep(first_ms / 1000)
        await workflow.sleep(second_ms / 1000)
        return "woke"


@workflow.defn
class SleepOnce:
    @workflow.run
    async def run(self, ms: int) -> str:
        await workflow.sleep(ms / 1000)
        return "fired"


@workflow.defn
class CancelRace:
    """A timer that a signal cancels: whichever the history records first wins."""

    def __init__(self) -> None:
        self.stop_requested = False

    @workflow.run
    async def run(self, ms: int) -> str:
        t = workflow.start_timer(ms / 1000)
        await workflow.wait_condition(lambda: self.stop_requested or t.done())
        if t.done():
            return "fired"
        t.cancel()
        return "cancelled"

    @workflow.signal
    def stop(self) -> None:
        self.stop_requested = True


@workflow.defn
class ManyTimers:
    """``n`` timers all due at the absolute time ``at_ms``."""

    @workflow.run
    async def run(self, at_ms: int, n: int) -> int:
        delay = max(1, at_ms - int(workflow.time() * 1000))
        await asyncio.gather(*(workflow.sleep(delay / 1000) for _ in range(n)))
        return n


@workflow.defn
class Chain:
    """Every run starts timer "1"; all but the last continue as new at once."""

    @workflow.run
    async def run(self, left: int, ms: int) -> str:
        t = workflow.start_timer(ms / 1000)
        if left > 0:
            workflow.continue_as_new(left - 1, ms)
        await t
        return f"fired in run {workflow.info().run_id}"


@workflow.defn
class Target:
    """What schedules start in the tests: runs for ``ms`` and reports when it started."""

    @workflow.run
    async def run(self, ms: int) -> str:
        started = workflow.time()
        if ms > 0:
            await workflow.sleep(ms / 1000)
        return f"{workflow.info().workflow_id}@{started:.3f}"

