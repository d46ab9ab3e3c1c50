"""Workflows whose recorded histories are pinned as golden files (tests/golden/histories/).

``MUTATIONS`` holds case names whose workflow should issue a *different* command at one point:
the golden test turns a mutation on and checks that replay reports the divergence at the
right seq. Reading a module global from workflow code is fine here: it is constant while a
test replays.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from aion import RetryPolicy, activity, workflow
from aion.exceptions import ActivityError, ApplicationError, CancelledError, ChildWorkflowError, TimeoutError

MUTATIONS: set[str] = set()

T = timedelta(seconds=30)


def mutated(case: str) -> bool:
    return case in MUTATIONS


# ------------------------------------------------------------------ activities


@activity.defn
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@activity.defn
async def shout(name: str) -> str:
    return f"HELLO, {name.upper()}!"


@activity.defn
def flaky(n: int) -> str:  # scripted in the scenarios
    return f"ok-{n}"


@activity.defn
async def square(n: int) -> int:
    return n * n


@activity.defn
async def slow(n: int) -> int:  # scripted (hangs) in the scenarios
    return n


@activity.defn
async def reserve(item: str) -> str:
    return f"rsv-{item}"


@activity.defn
async def release(reservation: str) -> str:
    return f"released-{reservation}"


@activity.defn
async def record(value: str) -> str:
    return value


# ------------------------------------------------------------------ workflows


@workflow.defn
class OneActivity:
    @workflow.run
    async def run(self, name: str) -> str:
        act = shout if mutated("one_activity") else greet
        return await workflow.execute_activity(act, name, start_to_close_timeout=T)


RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=10), maximum_attempts=3)


@workflow.defn
class Retries:
    @workflow.run
    async def run(self, n: int) -> str:
        if mutated("retries"):
            await workflow.sleep(timedelta(seconds=1))
        return await workflow.execute_activity(flaky, n, start_to_close_timeout=T, retry_policy=RETRY)


@dataclass
class FanOutResult:
    squares: list[int]


@workflow.defn
class FanOutAll:
    @workflow.run
    async def run(self, ns: list[int]) -> FanOutResult:
        if mutated("fan_out"):
            ns = ns[:-1]
        results = await asyncio.gather(
            *(workflow.execute_activity(square, n, start_to_close_timeout=T) for n in ns))
        return FanOutResult(list(results))


@workflow.defn
class Race:
    @workflow.run
    async def run(self) -> str:
        fast = workflow.start_activity(greet, "fast", start_to_close_timeout=T)
        slow_h = workflow.start_activity(slow if not mutated("race") else square, 1, start_to_close_timeout=T)
        done, pending = await asyncio.wait([fast, slow_h], return_when=asyncio.FIRST_COMPLETED)
        for p in pending:
            p.cancel()
        winner = done.pop()
        return f"{winner.activity_type}: {winner.result()}"


@workflow.defn
class SettleAll:
    @workflow.run
    async def run(self, ns: list[int]) -> list[str]:
        results = await asyncio.gather(
            *(workflow.execute_activity(flaky, n, start_to_close_timeout=T,
                                        retry_policy=RetryPolicy(maximum_attempts=1)) for n in ns),
            return_exceptions=True)
        out = []
        for r in results:
            if isinstance(r, ActivityError):
                out.append(f"error: {r.cause}")
            else:
                out.append(f"ok: {r}")
        if mutated("settle_all"):
            await workflow.execute_activity(record, "x", start_to_close_timeout=T)
        return out


@workflow.defn
class Signals:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.done = False

    @workflow.run
    async def run(self) -> list[str]:
        # Busy for an hour: the signals arrive meanwhile and are buffered in order.
        await workflow.sleep(timedelta(hours=1))
        await workflow.wait_condition(lambda: self.done)
        seen = list(self.items)
        if mutated("signals"):
            await workflow.signal_external("elsewhere", "add", "x")
        await workflow.execute_activity(record, ",".join(seen), start_to_close_timeout=T)
        return seen

    @workflow.signal
    def add(self, item: str) -> None:
        self.items.append(item)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def count(self) -> int:
        return len(self.items)


@workflow.defn
class Stages:
    def __init__(self) -> None:
        self.stage = "created"

    @workflow.run
    async def run(self, item: str) -> str:
        self.stage = "reserving"
        rsv = await workflow.execute_activity(reserve, item, start_to_close_timeout=T)
        self.stage = "waiting"
        await workflow.sleep(timedelta(minutes=5) if not mutated("stages") else timedelta(minutes=6))
        self.stage = "recording"
        await workflow.execute_activity(record, rsv, start_to_close_timeout=T)
        self.stage = "done"
        return rsv

    @workflow.query
    def stage_name(self) -> str:
        return self.stage


@workflow.defn
class TimerCancel:
    @workflow.run
    async def run(self) -> str:
        t = workflow.start_timer(timedelta(hours=1), name="reminder")
        r = await workflow.execute_activity(greet, "timer", start_to_close_timeout=T)
        if not mutated("timer_cancelled"):
            t.cancel()
            try:
                await t
            except CancelledError:
                return f"{r} (timer cancelled)"
        await t
        return r


@workflow.defn
class TimeoutRace:
    @workflow.run
    async def run(self, deadline_s: int) -> str:
        try:
            async with workflow.timeout(timedelta(seconds=deadline_s)):
                if mutated("timeout_race"):
                    return await workflow.execute_activity(greet, "x", start_to_close_timeout=T)
                return await workflow.execute_activity(slow, 7, start_to_close_timeout=timedelta(hours=1))
        except TimeoutError:
            return "deadline passed"


@workflow.defn
class Child:
    @workflow.run
    async def run(self, n: int) -> int:
        if n < 0:
            raise ApplicationError(f"negative input {n}", type="BadInput", non_retryable=True)
        return await workflow.execute_activity(square, n, start_to_close_timeout=T)


@workflow.defn
class Parent:
    @workflow.run
    async def run(self, n: int) -> list[str]:
        out = []
        ok = await workflow.execute_child_workflow(Child.run, n, id="child-ok")
        out.append(f"child ok: {ok}")
        try:
            await workflow.execute_child_workflow(Child.run, -n, id="child-bad" if not mutated("child") else "child-other")
        except ChildWorkflowError as e:
            out.append(f"child failed: {e.status} {e.cause}")
        return out


@workflow.defn
class Counter:
    @workflow.run
    async def run(self, count: int, limit: int) -> int:
        await workflow.execute_activity(record, f"run {count}", start_to_close_timeout=T)
        if count < limit:
            if mutated("continue_as_new") and count == 1:
                await workflow.sleep(timedelta(seconds=1))
            workflow.continue_as_new(count + 1, limit)
        return count


@workflow.defn
class Saga:
    def __init__(self) -> None:
        self.state = "new"

    @workflow.run
    async def run(self, item: str) -> str:
        rsv = await workflow.execute_activity(reserve, item, start_to_close_timeout=T)
        try:
            self.state = "waiting"
            await workflow.sleep(timedelta(days=1))
            return rsv
        except CancelledError:
            self.state = "compensating"
            comp = record if mutated("cancellation") else release
            await workflow.execute_activity(comp, rsv, start_to_close_timeout=T)
            self.state = "cancelled"
            raise

    @workflow.query
    def status(self) -> str:
        return self.state


_calls = {"n": 0}


def _token() -> str:
    _calls["n"] += 1  # would differ on every call: recorded once, replayed from the marker
    return f"token-{_calls['n']}"


@workflow.defn
class SideEffect:
    @workflow.run
    async def run(self) -> str:
        if mutated("side_effect"):
            await workflow.execute_activity(greet, "before", start_to_close_timeout=T)
        token = workflow.side_effect(_token)
        u = workflow.uuid4()
        r = workflow.random().randint(1, 1000)
        await workflow.execute_activity(record, f"{token}/{u}/{r}", start_to_close_timeout=T)
        return token


#: "v1" = the code before the patch (no patched() call), "v2" = with the patch.
PATCH_VERSION = {"v": "v2"}


@workflow.defn
class Patched:
    @workflow.run
    async def run(self, name: str) -> str:
        first = await workflow.execute_activity(greet, name, start_to_close_timeout=T)
        if PATCH_VERSION["v"] == "v2" and workflow.patched("shout-too"):
            second = await workflow.execute_activity(shout, name, start_to_close_timeout=T)
        else:
            second = await workflow.execute_activity(record, "old", start_to_close_timeout=T)
        if mutated("patched"):
            await workflow.sleep(timedelta(seconds=1))
        return f"{first} {second}"


@workflow.defn
class Updatable:
    """Updates: a sync handler with a validator, an async one awaiting an activity, one that
    fails (the update, not the workflow)."""

    def __init__(self) -> None:
        self.total = 0
        self.done = False

    @workflow.update
    def add(self, n: int) -> int:
        self.total += n
        return self.total

    @add.validator
    def _check_add(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"cannot add {n}")

    @workflow.update
    async def add_squared(self, n: int) -> int:
        if mutated("updates"):
            await workflow.execute_activity(greet, str(n), start_to_close_timeout=T)
        sq = await workflow.execute_activity(square, n, start_to_close_timeout=T)
        self.total += sq
        return self.total

    @workflow.update
    def refuse(self) -> None:
        raise ApplicationError("not today", type="Refused")

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.total


WORKFLOWS = [OneActivity, Retries, FanOutAll, Race, SettleAll, Signals, Stages, TimerCancel, TimeoutRace,
             Child, Parent, Counter, Saga, SideEffect, Patched, Updatable]
ACTIVITIES = [greet, shout, flaky, square, slow, reserve, release, record]
