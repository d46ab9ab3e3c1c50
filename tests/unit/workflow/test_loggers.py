"""workflow.logger and activity.logger: context on every record, silence during replay."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from aion import activity, workflow
from aion.testing import ActivityEnvironment, WorkflowEnvironment


@activity.defn
async def shout(word: str) -> str:
    activity.logger.info("shouting %s", word)
    return word.upper()


@activity.defn
def whisper(word: str) -> str:  # sync: runs in a pool thread, the context must follow it
    activity.logger.warning("whispering %s", word)
    return word.lower()


@workflow.defn
class Chatty:
    @workflow.run
    async def run(self, word: str) -> str:
        workflow.logger.info("before sleep %s", word)
        await workflow.sleep(timedelta(hours=1))
        loud = await workflow.execute_activity(shout, word, start_to_close_timeout=timedelta(seconds=5))
        quiet = await workflow.execute_activity(whisper, word, start_to_close_timeout=timedelta(seconds=5))
        workflow.logger.info("after sleep")
        return loud + quiet


def _records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


async def test_workflow_logger_logs_each_line_once_although_every_step_replays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with WorkflowEnvironment.start_time_skipping(
        workflows=[Chatty], activities=[shout, whisper], resident=False
    ) as env:
        assert await env.client.execute_workflow(Chatty.run, "Hi", id="chatty-1") == "HIhi"
        assert env.stats["replays"] >= 3  # the run was rebuilt from history several times
    recs = _records(caplog, "aion.workflow")
    assert [r.getMessage().split(" (")[0] for r in recs] == ["before sleep Hi", "after sleep"]
    for r in recs:
        ctx = r.aion_workflow  # type: ignore[attr-defined]
        assert ctx["workflow_id"] == "chatty-1" and ctx["workflow_type"] == "Chatty"
        assert ctx["attempt"] == 1 and ctx["run_id"] and ctx["task_queue"]
        assert "'workflow_id': 'chatty-1'" in r.getMessage()


async def test_log_during_replay_turns_the_suppression_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    workflow.logger.log_during_replay = True
    try:
        async with WorkflowEnvironment.start_time_skipping(
            workflows=[Chatty], activities=[shout, whisper], resident=False
        ) as env:
            await env.client.execute_workflow(Chatty.run, "Hi", id="chatty-2")
    finally:
        workflow.logger.log_during_replay = False
    befores = [r for r in _records(caplog, "aion.workflow") if r.getMessage().startswith("before sleep")]
    assert len(befores) > 1


async def test_replaying_a_finished_history_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[Chatty], activities=[shout, whisper]) as env:
        await env.client.execute_workflow(Chatty.run, "Hi", id="chatty-3")
        caplog.clear()
        caplog.set_level(logging.DEBUG)
        assert env.replay("chatty-3").ok
    assert _records(caplog, "aion.workflow") == []


async def test_activity_logger_names_the_attempt_in_async_and_sync_activities(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with WorkflowEnvironment.start_time_skipping(workflows=[Chatty], activities=[shout, whisper]) as env:
        await env.client.execute_workflow(Chatty.run, "Hi", id="chatty-4")
    recs = {r.aion_activity["activity_type"]: r for r in _records(caplog, "aion.activity")}  # type: ignore[attr-defined]
    assert set(recs) == {"shout", "whisper"}
    for r in recs.values():
        ctx = r.aion_activity  # type: ignore[attr-defined]
        assert ctx["workflow_id"] == "chatty-4" and ctx["workflow_type"] == "Chatty"
        assert ctx["attempt"] == 1 and ctx["activity_id"] and ctx["workflow_run_id"]
        assert "'workflow_id': 'chatty-4'" in r.getMessage()
    assert recs["whisper"].levelno == logging.WARNING
    assert recs["shout"].getMessage().startswith("shouting Hi (")


async def test_activity_logger_in_the_activity_environment(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    env = ActivityEnvironment(activity_type="shout", workflow_id="wf-9", attempt=3)
    assert await env.run(shout, "x") == "X"
    (rec,) = _records(caplog, "aion.activity")
    assert rec.aion_activity["attempt"] == 3 and rec.aion_activity["workflow_id"] == "wf-9"  # type: ignore[attr-defined]


def test_outside_workflow_and_activity_the_loggers_add_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    workflow.logger.info("plain %d", 1)
    activity.logger.info("plain %d", 2)
    msgs = [(r.name, r.getMessage()) for r in caplog.records]
    assert msgs == [("aion.workflow", "plain 1"), ("aion.activity", "plain 2")]
    assert not any(hasattr(r, "aion_workflow") or hasattr(r, "aion_activity") for r in caplog.records)
    assert workflow.logger.base_logger is logging.getLogger("aion.workflow")


def test_info_on_message_can_be_turned_off(caplog: pytest.LogCaptureFixture) -> None:
    from aion.activity._context import ActivityContext, current, make_info

    caplog.set_level(logging.INFO)
    ctx = ActivityContext(make_info(workflow_id="w", run_id="r", activity_id="1", activity_type="t", attempt=1))
    token = current.set(ctx)
    activity.logger.activity_info_on_message = False
    try:
        activity.logger.info("bare")
    finally:
        activity.logger.activity_info_on_message = True
        current.reset(token)
    (rec,) = caplog.records
    assert rec.getMessage() == "bare" and rec.aion_activity["workflow_id"] == "w"  # type: ignore[attr-defined]


@workflow.defn
class Buggy:
    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("a bug in the workflow code")


async def test_a_task_failure_record_can_be_told_apart_by_a_logging_filter(caplog: pytest.LogCaptureFixture) -> None:
    """The record of a workflow task failure carries ``aion_error_identifier`` (and Temporal's
    attribute of the same meaning), so a filter written for Temporal — raising such records to
    ERROR — works unchanged."""
    from aion.testing import WorkflowTaskFailedError

    caplog.set_level(logging.WARNING, logger="aion.runtime")
    async with WorkflowEnvironment.start_time_skipping(workflows=[Buggy]) as env:
        with pytest.raises(WorkflowTaskFailedError):
            await env.client.execute_workflow(Buggy.run, id="buggy-1")
    failed = [r for r in _records(caplog, "aion.runtime") if "task failed" in r.getMessage()]
    assert failed and all(r.aion_error_identifier == "WorkflowTaskFailure" for r in failed)  # type: ignore[attr-defined]
    assert getattr(failed[0], "__temporal_error_identifier") == "WorkflowTaskFailure"
