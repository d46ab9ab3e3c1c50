"""@workflow.init, workflow.all_handlers_finished, Info and ActivityInfo in Temporal's spelling."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aion import activity, workflow
from aion.testing import WorkflowEnvironment


@workflow.defn
class Guestbook:
    @workflow.init
    def __init__(self, owner: str, limit: int) -> None:
        # set from the run's arguments before any signal handler runs
        self.names = [owner]
        self.limit = limit

    @workflow.run
    async def run(self, owner: str, limit: int) -> list[str]:
        await workflow.wait_condition(lambda: len(self.names) >= self.limit)
        return self.names

    @workflow.signal
    def sign(self, name: str) -> None:
        self.names.append(name)


async def test_init_gets_the_run_arguments_before_the_first_signal() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Guestbook]) as env:
        h = await env.client.signal_with_start(Guestbook.run, "ann", 2, id="book-1", signal=Guestbook.sign,
                                               signal_args=["bob"])
        assert await h.result() == ["ann", "bob"]


def test_init_must_match_run_and_decorate_init() -> None:
    with pytest.raises(TypeError, match=r"takes \['owner'\].*takes \['owner', 'limit'\]"):
        @workflow.defn
        class Mismatch:
            @workflow.init
            def __init__(self, owner: str) -> None:
                pass

            @workflow.run
            async def run(self, owner: str, limit: int) -> None:
                pass
    with pytest.raises(TypeError, match="decorates the class's __init__"):
        workflow.init(lambda self: None)


@workflow.defn
class Collector:
    def __init__(self) -> None:
        self.saved: list[str] = []
        self.received = 0

    @workflow.run
    async def run(self, wait_for_handlers: bool) -> list:
        await workflow.wait_condition(lambda: self.received == 2)
        before = workflow.all_handlers_finished()
        if wait_for_handlers:
            await workflow.wait_condition(workflow.all_handlers_finished)
        return [before, sorted(self.saved)]

    @workflow.signal
    async def save(self, item: str, minutes: int) -> None:
        self.received += 1
        await workflow.sleep(timedelta(minutes=minutes))  # e.g. an activity writing it somewhere
        self.saved.append(item)


@pytest.mark.parametrize("wait", [True, False])
async def test_all_handlers_finished_lets_run_wait_for_running_signal_handlers(wait: bool) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Collector]) as env:
        h = await env.client.start_workflow(Collector.run, wait, id=f"collect-{wait}")
        await h.signal(Collector.save, "a", 5)
        await h.signal(Collector.save, "b", 1)
        before, saved = await h.result()
    assert before is False  # both handlers were still sleeping
    assert saved == (["a", "b"] if wait else [])


@activity.defn
async def nothing() -> None:
    return None


@workflow.defn
class Grows:
    @workflow.run
    async def run(self) -> list:
        seen = [(workflow.info().get_current_history_length(), workflow.info().is_continue_as_new_suggested())]
        for _ in range(3):
            await workflow.execute_activity(nothing, start_to_close_timeout=timedelta(seconds=5))
        seen.append((workflow.info().get_current_history_length(), workflow.info().is_continue_as_new_suggested()))
        return seen


async def test_info_history_length_and_continue_as_new_suggested_methods() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Grows], activities=[nothing],
                                                       continue_as_new_suggested_after=8) as env:
        seen = await env.client.execute_workflow(Grows.run, id="grows-1")
    # WorkflowStarted, then 3 x (Scheduled, Started, Completed): 10 events
    assert seen == [[1, False], [10, True]]


@activity.defn
async def my_info() -> dict:
    i = activity.info()
    return {"run": i.workflow_run_id == i.run_id != "", "hb": i.heartbeat_timeout.total_seconds(),
            "s2c": i.start_to_close_timeout.total_seconds(), "local": i.is_local,
            "order": i.scheduled_time <= i.started_time}


@workflow.defn
class AsksInfo:
    @workflow.run
    async def run(self) -> dict:
        return await workflow.execute_activity(my_info, start_to_close_timeout=timedelta(seconds=30),
                                               heartbeat_timeout=timedelta(seconds=4))


async def test_activity_info_in_temporal_spelling() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[AsksInfo], activities=[my_info]) as env:
        got = await env.client.execute_workflow(AsksInfo.run, id="asks-1")
    assert got == {"run": True, "hb": 4.0, "s2c": 30.0, "local": False, "order": True}
