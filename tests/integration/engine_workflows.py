"""Workflows and activities the engine integration tests run through real Kafka."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

from aion import RetryPolicy, activity, workflow
from aion.exceptions import ApplicationError, CancelledError

FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=50), backoff_coefficient=2.0, maximum_attempts=5)


@activity.defn
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@activity.defn
def flaky(key: str, failures: int) -> str:
    """Fails ``failures`` times per key (counted in a file so worker restarts don't matter)."""
    path = os.path.join(os.environ.get("AION_TEST_STATE", "/tmp"), f"flaky-{key}")
    n = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(n + 1))
    if n < failures:
        raise ApplicationError(f"attempt {n + 1} of {key} fails on purpose")
    return f"ok after {n + 1}"


@activity.defn
def refuse(reason: str) -> str:
    raise ApplicationError(reason, type="CardDeclined", non_retryable=True)


@activity.defn
async def hang(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "woke"


@activity.defn
async def wait_cancel(seconds: float) -> str:
    for _ in range(int(seconds * 10)):
        activity.heartbeat("tick")
        await asyncio.sleep(0.1)
    return "not cancelled"


@activity.defn
def double(x: int) -> int:
    return 2 * x


@workflow.defn
class Hello:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(greet, name, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class Retrying:
    @workflow.run
    async def run(self, key: str, failures: int) -> str:
        return await workflow.execute_activity(
            flaky, key, failures, start_to_close_timeout=timedelta(seconds=10), retry_policy=FAST_RETRY)


@workflow.defn
class NonRetryable:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            refuse, "card declined", start_to_close_timeout=timedelta(seconds=10), retry_policy=FAST_RETRY)


@workflow.defn
class HungActivity:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            hang, 30.0, start_to_close_timeout=timedelta(milliseconds=500),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=2))


@workflow.defn
class FanOut:
    @workflow.run
    async def run(self, n: int) -> list[int]:
        return list(await asyncio.gather(*(
            workflow.execute_activity(double, i, start_to_close_timeout=timedelta(seconds=30)) for i in range(n))))


@workflow.defn
class Approval:
    def __init__(self) -> None:
        self.decisions: list[str] = []
        self.state = "waiting"

    @workflow.run
    async def run(self, needed: int) -> list[str]:
        await workflow.wait_condition(lambda: len(self.decisions) >= needed)
        self.state = "decided"
        return self.decisions

    @workflow.signal
    def decide(self, decision: str) -> None:
        self.decisions.append(decision)

    @workflow.query
    def status(self) -> str:
        return f"{self.state}:{len(self.decisions)}"


@workflow.defn
class Child:
    @workflow.run
    async def run(self, x: int) -> int:
        if x < 0:
            raise ApplicationError("negative input", type="BadInput", non_retryable=True)
        await workflow.sleep(timedelta(milliseconds=50))
        return x * 10


@workflow.defn
class Parent:
    @workflow.run
    async def run(self, x: int) -> str:
        try:
            r = await workflow.execute_child_workflow(Child.run, x, id=f"{workflow.info().workflow_id}-child")
            return f"child said {r}"
        except Exception as exc:  # ChildWorkflowError
            return f"child failed: {type(exc).__name__}"


@workflow.defn
class Counter:
    @workflow.run
    async def run(self, n: int, limit: int) -> int:
        await workflow.sleep(timedelta(milliseconds=10))
        if n < limit:
            workflow.continue_as_new(n + 1, limit)
        return n


@workflow.defn
class LongChain:
    """Continues as new ``limit`` times (a short sleep each run), then waits in its last run for
    signal ``finish``; query ``run_number`` says which run it is in."""

    def __init__(self) -> None:
        self.n = -1
        self.got: list[str] = []

    @workflow.signal
    def finish(self, v: str) -> None:
        self.got.append(v)

    @workflow.query
    def run_number(self) -> int:
        return self.n

    @workflow.run
    async def run(self, n: int, limit: int) -> str:
        self.n = n
        if n < limit:
            await workflow.sleep(timedelta(milliseconds=5))
            workflow.continue_as_new(n + 1, limit)
        await workflow.wait_condition(lambda: bool(self.got))
        return f"{n}:{self.got[0]}"


@workflow.defn
class Saga:
    def __init__(self) -> None:
        self.compensated: list[str] = []

    @workflow.run
    async def run(self) -> list[str]:
        try:
            await workflow.execute_activity(wait_cancel, 60.0, start_to_close_timeout=timedelta(seconds=90),
                                            heartbeat_timeout=timedelta(seconds=10))
            return ["finished"]
        except CancelledError:
            self.compensated.append(await workflow.execute_activity(greet, "undo", start_to_close_timeout=timedelta(seconds=10)))
            raise


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self, seconds: float) -> str:
        await workflow.sleep(timedelta(seconds=seconds))
        return "rested"


@workflow.defn
class Steps:
    """A workflow that takes a while: n activities one after the other."""

    @workflow.run
    async def run(self, n: int) -> int:
        total = 0
        for i in range(n):
            total += await workflow.execute_activity(double, i, start_to_close_timeout=timedelta(seconds=30))
            await workflow.sleep(timedelta(milliseconds=100))
        return total


@workflow.defn
class Deadlocker:
    """Blocks its step (a bug: blocking I/O in workflow code) while a flag file exists — removing
    the file stands for deploying the fix."""

    @workflow.run
    async def run(self) -> str:
        state = os.environ.get("AION_TEST_STATE", "/tmp")
        flag = os.path.join(state, "deadlock-flag")
        with open(os.path.join(state, "deadlock-runs"), "a") as f:
            f.write(f"{os.getpid()}\n")  # one line per run of this step (and the engine process)
        while os.path.exists(flag):
            time.sleep(0.05)
        return await workflow.execute_activity(greet, "fixed", start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class Ledger:
    """A bug under the default FailurePolicy: an order without ``cents`` raises KeyError, which
    is not a FailureError — the workflow is held (its signals still recorded), not failed."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    @workflow.run
    async def run(self, order: dict) -> int:
        return order["cents"]

    @workflow.signal
    def note(self, text: str) -> None:
        self.notes.append(text)


@activity.defn
def beat_then_hang(key: str) -> str:
    """Heartbeats once, then hangs without heartbeats (a lost worker thread)."""
    path = os.path.join(os.environ.get("AION_TEST_STATE", "/tmp"), f"hb-{key}")
    n = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(n + 1))
    if n == 0:
        activity.heartbeat("first")
        time.sleep(4)
    return f"attempt {n + 1}"


@activity.defn
async def notice_cancel(key: str) -> str:
    """Waits to be cancelled by the server and leaves a mark when it is."""
    try:
        for _ in range(600):
            activity.heartbeat()
            await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        # written whole, then renamed: the test polls for the file and reads it at once (an
        # open-then-write let it read the empty file once)
        mark = os.path.join(os.environ.get("AION_TEST_STATE", "/tmp"), f"cancelled-{key}")
        with open(mark + ".part", "w") as f:
            f.write("cancelled")
        os.replace(mark + ".part", mark)
        raise
    return "never cancelled"


@workflow.defn
class HeartbeatTimeout:
    @workflow.run
    async def run(self, key: str) -> str:
        return await workflow.execute_activity(
            beat_then_hang, key, start_to_close_timeout=timedelta(seconds=30), heartbeat_timeout=timedelta(seconds=1),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3))


@workflow.defn
class CancelActivity:
    @workflow.run
    async def run(self, key: str) -> str:
        handle = workflow.start_activity(notice_cancel, key, start_to_close_timeout=timedelta(seconds=90),
                                         heartbeat_timeout=timedelta(seconds=10))
        await workflow.sleep(timedelta(seconds=1))
        handle.cancel()
        try:
            await handle
        except (CancelledError, Exception) as exc:
            return f"activity ended: {type(exc).__name__}"
        return "activity finished"


@workflow.defn
class ClosingParent:
    """Starts one long child per close policy, then finishes (or waits to be terminated)."""

    @workflow.run
    async def run(self, wait: bool) -> str:
        wid = workflow.info().workflow_id
        for policy in ("TERMINATE", "REQUEST_CANCEL", "ABANDON"):
            await workflow.start_child_workflow(Sleeper.run, 3600, id=f"{wid}-{policy.lower()}", parent_close_policy=policy)
        if wait:
            await workflow.sleep(timedelta(hours=1))
        return "parent done"


@activity.defn
async def resumable(key: str) -> dict:
    """Attempt 1 heartbeats its progress, says so in a file, then fails when the test lets it
    (after the engine changed hands). Later attempts return the details they started from."""
    state = os.environ.get("AION_TEST_STATE", "/tmp")
    info = activity.info()
    if info.attempt > 1:
        return {"attempt": info.attempt, "resumed_from": list(info.heartbeat_details)}
    activity.heartbeat({"page": 3})
    with open(os.path.join(state, f"beat-{key}"), "w") as f:
        f.write("1")
    while not os.path.exists(os.path.join(state, f"fail-{key}")):
        await asyncio.sleep(0.05)
    raise ApplicationError("attempt 1 fails once the engine changed hands")


@workflow.defn
class ResumeFromHeartbeat:
    @workflow.run
    async def run(self, key: str) -> dict:
        return await workflow.execute_activity(
            resumable, key, start_to_close_timeout=timedelta(minutes=2), retry_policy=FAST_RETRY)


@workflow.defn
class GatedGreeting:
    """Greets once the ``go`` signal came (pause and resume tests)."""

    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.wait_condition(lambda: self.go)
        return await workflow.execute_activity(greet, name, start_to_close_timeout=timedelta(seconds=10))

    @workflow.signal
    def open(self) -> None:
        self.go = True


@workflow.defn
class Tally:
    """Updates: a sync one with a validator, and one whose handler waits on a timer and then an
    activity (in flight across an engine's death)."""

    def __init__(self) -> None:
        self.total = 0
        self.closed = False

    @workflow.update
    def add(self, n: int) -> int:
        self.total += n
        return self.total

    @add.validator
    def _check_add(self, n: int) -> None:
        if n <= 0:
            raise ValueError(f"cannot add {n}: amounts are positive")

    @workflow.update
    async def add_doubled_after(self, n: int, seconds: float) -> int:
        await workflow.sleep(timedelta(seconds=seconds))
        self.total += await workflow.execute_activity(double, n, start_to_close_timeout=timedelta(seconds=10))
        return self.total

    @workflow.signal
    def close(self) -> None:
        self.closed = True

    @workflow.query
    def value(self) -> int:
        return self.total

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.closed)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.total


@workflow.defn
class RetryThree:
    """At most three attempts of ``flaky`` (the reopen scenario: exhausted, then attempt 4)."""

    @workflow.run
    async def run(self, key: str, failures: int) -> str:
        return await workflow.execute_activity(
            flaky, key, failures, start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3))


@workflow.defn
class RetryThree:
    """At most three attempts of ``flaky`` (the reopen scenario: exhausted, then attempt 4)."""

    @workflow.run
    async def run(self, key: str, failures: int) -> str:
        return await workflow.execute_activity(
            flaky, key, failures, start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3))


@workflow.defn
class SecretErrand:
    """An input, a signal argument, a timer, an activity and a result (payload encryption)."""

    def __init__(self) -> None:
        self.code: str | None = None

    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.wait_condition(lambda: self.code is not None)
        await workflow.sleep(timedelta(milliseconds=200))
        return await workflow.execute_activity(greet, f"{name}/{self.code}", start_to_close_timeout=timedelta(seconds=10))

    @workflow.signal
    def code_word(self, code: str) -> None:
        self.code = code
