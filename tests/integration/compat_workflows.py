"""Workflows of the "Coming from Temporal" integration tests, run by a real engine process.

Their activities are run by an in-process ``ActivityWorker`` in the test (bound methods, sync
activities), so the engine process only needs the workflow classes and the activities' names.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import timedelta

from aion import activity, workflow
from aion.exceptions import ActivityError, ApplicationError, CancelledError
from aion.workflow import ActivityCancellationType, RetryPolicy


class Inventory:
    """Activities as methods of an object that holds their dependencies (here: a stock table)."""

    def __init__(self, stock: dict[str, int]) -> None:
        self.stock = dict(stock)

    @activity.defn
    async def reserve(self, item: str, n: int) -> int:
        self.stock[item] -= n
        return self.stock[item]

    @activity.defn
    def count(self, item: str) -> int:  # sync: runs in the worker's thread pool
        return self.stock[item]


@workflow.defn
class Restock:
    @workflow.run
    async def run(self, item: str) -> list[int]:
        opts = {"start_to_close_timeout": timedelta(seconds=20)}
        left = await workflow.execute_activity_method(Inventory.reserve, item, 2, **opts)
        counted = await workflow.start_activity_method(Inventory.count, item, **opts)
        return [left, counted]


@activity.defn
def upper(text: str) -> str:
    return text.upper()


@workflow.defn
class LocalUpper:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_local_activity(upper, text, start_to_close_timeout=timedelta(seconds=20))


#: Set by ``grind`` (run in the test's own process): it started; how it ended.
GRIND_STARTED = threading.Event()
GRIND_ENDED: list[str] = []


@activity.defn
def grind(seconds: float) -> str:
    """A sync loop that heartbeats; only its heartbeat can tell it that it was cancelled."""
    GRIND_STARTED.set()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            activity.heartbeat("grinding")
            time.sleep(0.05)
    except CancelledError:
        GRIND_ENDED.append("cancelled")
        raise
    GRIND_ENDED.append("finished")
    return "finished"


@workflow.defn
class CancelGrind:
    def __init__(self) -> None:
        self.stop = False

    @workflow.run
    async def run(self) -> str:
        h = workflow.start_activity(grind, 60.0, start_to_close_timeout=timedelta(seconds=90),
                                    heartbeat_timeout=timedelta(seconds=10),
                                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
        await workflow.wait_condition(lambda: self.stop)
        h.cancel()
        try:
            return await h
        except asyncio.CancelledError:
            return "cancelled"

    @workflow.signal
    def cancel_grind(self) -> None:
        self.stop = True


# ---------------------------------------------------------------- asynchronous completion
def token_path(workflow_id: str) -> "Path":
    """Where ``hand_off`` leaves its task token (the test reads it from another process)."""
    from pathlib import Path

    return Path(os.environ.get("AION_TEST_STATE", ".")) / f"token-{workflow_id}"


@activity.defn
def hand_off(item: str) -> str:
    """Completes asynchronously: leaves its task token for another process and returns."""
    info = activity.info()
    with open(token_path(info.workflow_id).with_suffix(".runs"), "a") as runs:
        runs.write(f"{info.attempt}\n")
    tmp = token_path(info.workflow_id).with_suffix(".part")
    tmp.write_bytes(info.task_token)
    tmp.rename(token_path(info.workflow_id))
    activity.raise_complete_async()


@workflow.defn
class AwaitHandOff:
    @workflow.run
    async def run(self, item: str) -> str:
        try:
            return await workflow.execute_activity(
                hand_off, item, start_to_close_timeout=timedelta(seconds=120),
                heartbeat_timeout=timedelta(seconds=20),
                retry_policy=workflow.RetryPolicy(maximum_attempts=1))
        except ActivityError as err:
            return f"failed: {err.cause}"


# ---------------------------------------------------------------- external workflow handles
@workflow.defn
class Inbox:
    def __init__(self) -> None:
        self.letters: list[str] = []

    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.wait_condition(lambda: False)
        except asyncio.CancelledError:
            return f"cancelled holding {self.letters}"
        return "unreachable"

    @workflow.signal
    def post(self, letter: str) -> None:
        self.letters.append(letter)


@workflow.defn
class Courier:
    @workflow.run
    async def run(self, target: str) -> None:
        inbox = workflow.get_external_workflow_handle(target)
        await inbox.signal(Inbox.post, "parcel")
        await workflow.sleep(0.5)
        await inbox.cancel()


# ---------------------------------------------------------------- workflow retries, cron, memo
@workflow.defn
class FlakyChild:
    """Fails its first ``fail_runs`` attempts (retried by its retry policy as new runs)."""

    @workflow.run
    async def run(self, fail_runs: int) -> str:
        attempt = workflow.info().attempt
        if attempt <= fail_runs:
            raise ApplicationError(f"attempt {attempt} failed")
        return f"attempt {attempt}, memo {workflow.memo()}"


@workflow.defn
class RetryingParent:
    @workflow.run
    async def run(self, fail_runs: int) -> str:
        return await workflow.execute_child_workflow(
            FlakyChild.run, fail_runs, id=f"{workflow.info().workflow_id}-child", memo={"team": "ops"},
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5))


@workflow.defn
class Minutely:
    """A cron workflow: each run returns how many runs completed before it, plus one."""

    @workflow.run
    async def run(self) -> int:
        return (workflow.get_last_completion_result(int) or 0) + 1
