"""Asynchronous activity completion in the in-process environment: an activity returns without
an outcome (``activity.raise_complete_async()``) and the test reports it with the task token."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from aion import activity, workflow
from aion.activity._token import InvalidTaskTokenError, decode_task_token
from aion.exceptions import ActivityError, ApplicationError
from aion.testing import WorkflowEnvironment
from aion.workflow import ActivityCancellationType

#: The task tokens the activities handed out, in order (appended from any thread).
TOKENS: list[bytes] = []


async def next_token(n: int) -> bytes:
    """The ``n``-th token (0-based), once an activity has handed it out."""
    for _ in range(500):
        if len(TOKENS) > n:
            return TOKENS[n]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no task token #{n}")


@activity.defn
async def ask_a_person(question: str) -> str:
    TOKENS.append(activity.info().task_token)
    activity.raise_complete_async()


@activity.defn
def ask_sync(question: str) -> str:
    TOKENS.append(activity.info().task_token)
    try:
        activity.raise_complete_async()
    except Exception:  # noqa: BLE001 - the point: `except Exception` does not swallow it
        return "swallowed"


@workflow.defn
class Ask:
    def __init__(self) -> None:
        self.give_up = False

    @workflow.run
    async def run(self, question: str, sync: bool) -> str:
        h = workflow.start_activity(ask_sync if sync else ask_a_person, question,
                                    start_to_close_timeout=timedelta(hours=1),
                                    retry_policy=workflow.RetryPolicy(maximum_attempts=2),
                                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
        await workflow.wait_condition(lambda: self.give_up or h.done())
        if not h.done():
            h.cancel()
        try:
            return await h
        except ActivityError as err:
            return f"failed: {err.cause}"
        except asyncio.CancelledError:
            return "cancelled"

    @workflow.signal
    def stop(self) -> None:
        self.give_up = True


@pytest.fixture(autouse=True)
def _tokens() -> None:
    TOKENS.clear()


async def _env() -> WorkflowEnvironment:
    return WorkflowEnvironment.start_time_skipping(workflows=[Ask], activities=[ask_a_person, ask_sync])


@pytest.mark.parametrize("sync", [False, True])
async def test_complete_with_the_task_token(sync: bool) -> None:
    async with await _env() as env:
        h = await env.client.start_workflow(Ask.run, "lunch?", sync, id=f"ask-{sync}")
        token = await next_token(0)
        ids = decode_task_token(token)
        assert (ids.workflow_id, ids.attempt) == (f"ask-{sync}", 1)
        handle = env.client.get_async_activity_handle(task_token=token)
        await handle.heartbeat("thinking")
        await asyncio.sleep(0.1)
        assert (await h.describe()).status == "RUNNING"  # waiting for the outcome
        await handle.complete("yes")
        assert await h.result() == "yes"
        types = [e.type for e in await h.history()]
        assert types.count("ActivityCompleted") == 1 and "ActivityFailed" not in types, types


async def test_fail_retries_as_a_raised_error_would() -> None:
    async with await _env() as env:
        h = await env.client.start_workflow(Ask.run, "dinner?", False, id="ask-fail")
        first = await next_token(0)
        await env.client.get_async_activity_handle(task_token=first).fail(RuntimeError("no answer"))
        second = await next_token(1)  # attempt 2: a new token
        assert decode_task_token(second).attempt == 2
        await env.client.get_async_activity_handle(task_token=second).fail(
            ApplicationError("still no answer", non_retryable=True))
        assert await h.result() == "failed: still no answer"
        # a late outcome for the finished attempt 1 changes nothing
        await env.client.get_async_activity_handle(task_token=first).complete("late")
        await asyncio.sleep(0.05)
        assert [e.type for e in await h.history()].count("ActivityCompleted") == 0


async def test_report_cancellation_after_the_workflow_cancels() -> None:
    async with await _env() as env:
        h = await env.client.start_workflow(Ask.run, "tea?", False, id="ask-cancel")
        token = await next_token(0)
        await h.signal(Ask.stop)
        await asyncio.sleep(0.05)
        assert "ActivityCancelRequested" in [e.type for e in await h.history()]
        await env.client.get_async_activity_handle(task_token=token).report_cancellation("gave up")
        assert await h.result() == "cancelled"
        assert [e.type for e in await h.history()][-2:] == ["ActivityCancelled", "WorkflowCompleted"]


async def test_bad_tokens_are_refused_with_the_fix() -> None:
    async with await _env() as env:
        with pytest.raises(InvalidTaskTokenError, match="activity.info\\(\\).task_token"):
            env.client.get_async_activity_handle(task_token=b"\x0a\x24temporal-token")
        with pytest.raises(InvalidTaskTokenError, match="damaged"):
            env.client.get_async_activity_handle(task_token=b"aion-task-token/1:[1,2")
        with pytest.raises(TypeError, match="task_token="):
            env.client.get_async_activity_handle(workflow_id="w", activity_id="1")  # type: ignore[call-arg]


def test_raise_complete_async_outside_an_activity() -> None:
    from aion.activity import NotInActivityError

    with pytest.raises(NotInActivityError):
        activity.raise_complete_async()
