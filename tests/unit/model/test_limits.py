"""aion.model.limits: the limits every command field is held to (client, engine and test
environment share them), and the same limits on what workflow code asks for."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aion import workflow
from aion.exceptions import InvalidArgumentError
from aion.model import (
    ActivityTaskCompleted, CancelWorkflow, ChildWorkflowResult, Command, FireTimer, Payload, QueryWorkflow,
    SignalWithStart, SignalWorkflow, StartWorkflow,
)
from aion.model.limits import MAX_DURATION_MS, MAX_ID_BYTES, MAX_TIME_MS, command_problem
from aion.testing import WorkflowEnvironment

NOW = 1_800_000_000_000


def start(**kw) -> StartWorkflow:  # type: ignore[no-untyped-def]
    return StartWorkflow(kw.pop("workflow_type", "Order"), [Payload("application/json", b"1")], **kw)


def problem(body, wid: str = "wf-1", **kw) -> str | None:  # type: ignore[no-untyped-def]
    return command_problem(Command(kw.pop("command_id", "c-1"), wid, kw.pop("sent_at_ms", NOW), body, **kw), NOW)


def test_a_valid_command_has_no_problem() -> None:
    assert problem(start(execution_timeout_ms=MAX_DURATION_MS, search_attributes={"region": "eu"})) is None
    assert problem(SignalWorkflow("approve", [], signal_id="", run_id=None), wid="é" * 500) is None  # 1000 bytes
    assert problem(FireTimer("run", "t/1", NOW + 1000)) is None
    assert problem(QueryWorkflow("status", []), reply_to="aion.replies:3") is None


@pytest.mark.parametrize("body, wid, words", [
    (start(), "", "workflow id is empty"),
    (start(), "a\x00b", "control character U+0000 at index 1"),
    (start(), "a\nb", "control character U+000A"),
    (start(), "é" * 501, f"1002 UTF-8 bytes long, over the limit of {MAX_ID_BYTES}"),
    (start(), "\ud800", "lone surrogate"),
    (start(workflow_type=""), "wf", "workflow type is empty"),
    (start(task_queue="a/b"), "wf", "task queue 'a/b'"),
    (start(task_queue=""), "wf", "task queue ''"),
    (start(id_reuse_policy="SOMETIMES"), "wf", "id reuse policy 'SOMETIMES'"),
    (start(execution_timeout_ms=MAX_DURATION_MS + 1), "wf", "over the limit of 100 years"),
    (start(run_timeout_ms=0), "wf", "run timeout must be more than 0 ms"),
    (start(execution_timeout_ms=2**63 - 1), "wf", "over the limit of 100 years"),
    (start(search_attributes={f"k{i}": "v" for i in range(101)}), "wf", "101 search attributes"),
    (start(search_attributes={"k": "v" * 3000}), "wf", "search attribute 'k' is 3000 UTF-8 bytes"),
    (start(parent_workflow_id="p\x00"), "wf", "parent workflow id"),
    (SignalWithStart(start(), "s\x01", []), "wf", "signal name"),
    (SignalWorkflow("x" * 1001, []), "wf", "signal name is 1001 UTF-8 bytes"),
    (QueryWorkflow("", []), "wf", "query name is empty"),
    (CancelWorkflow(reason="r" * 40_000), "wf", "reason is 40000 UTF-8 bytes"),
    (ActivityTaskCompleted("run", "1", 0, Payload("application/json", b"1")), "wf", "attempt must be 1 to"),
    (ChildWorkflowResult("run", "child", "EXPLODED"), "wf", "child outcome 'EXPLODED'"),
    (FireTimer("run", "t", -1), "wf", "fire time is negative"),
    (FireTimer("run", "t", MAX_TIME_MS + 1), "wf", "past the year 2200"),
    (FireTimer("run", "t", NOW + MAX_DURATION_MS + 1), "wf", "more than 100 years after now"),
])
def test_each_field_outside_its_limits_is_named(body, wid: str, words: str) -> None:  # type: ignore[no-untyped-def]
    found = problem(body, wid=wid)
    assert found is not None and words in found, found


def test_command_level_fields() -> None:
    assert "sent_at_ms is negative" in (problem(start(), sent_at_ms=-5) or "")
    assert "command id is empty" in (problem(start(), command_id="") or "")
    assert "command id is 5000" in (problem(start(), command_id="c" * 5000) or "")
    assert "reply_to" in (problem(start(), reply_to="x\x00:1") or "")


# ---------------------------------------------------------------- in workflow code


@workflow.defn
class AsksTooMuch:
    @workflow.run
    async def run(self, what: str) -> str:
        try:
            if what == "sleep":
                await workflow.sleep(timedelta(days=365 * 101))
            elif what == "inf":
                await workflow.sleep(float("inf"))
            elif what == "queue":
                await workflow.execute_activity("anything", task_queue="no spaces allowed",
                                                start_to_close_timeout=timedelta(seconds=1))
            elif what == "child":
                await workflow.execute_child_workflow("AsksTooMuch", "sleep", id="child\x00")
        except InvalidArgumentError as exc:
            return f"refused: {exc}"
        return "ran"


@pytest.mark.parametrize("what, words", [
    ("sleep", "sleep duration is datetime.timedelta(days=36865), over the limit of 100 years"),
    ("inf", "must be a finite number of seconds"),
    ("queue", "task queue 'no spaces allowed'"),
    ("child", "child workflow id 'child\\x00' holds the control character U+0000"),
])
async def test_workflow_code_gets_invalid_argument_at_the_call(what: str, words: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[AsksTooMuch]) as env:
        result = await env.client.execute_workflow(AsksTooMuch.run, what, id=f"asks-{what}")
    assert result.startswith("refused: ") and words in result, result


async def test_the_test_environment_client_refuses_like_the_kafka_client() -> None:
    async with WorkflowEnvironment.start_time_skipping(workflows=[AsksTooMuch]) as env:
        with pytest.raises(InvalidArgumentError, match="workflow id is empty"):
            await env.client.start_workflow(AsksTooMuch.run, "sleep", id="")
        with pytest.raises(InvalidArgumentError, match="execution timeout .* over the limit of 100 years"):
            await env.client.start_workflow(AsksTooMuch.run, "sleep", id="x", execution_timeout=1e12)


@workflow.defn
class LongNamedParent:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_child_workflow(AsksTooMuch.run, "none")


async def test_a_default_child_id_of_a_parent_near_the_id_limit_stays_within_it() -> None:
    parent_id = "p" * (MAX_ID_BYTES - 2)
    async with WorkflowEnvironment.start_time_skipping(workflows=[LongNamedParent, AsksTooMuch]) as env:
        assert await env.client.execute_workflow(LongNamedParent.run, id=parent_id) == "ran"
        started = [e.body for e in env.history(parent_id) if type(e.body).__name__ == "ChildWorkflowStarted"]
    assert len(started) == 1 and started[0].child_workflow_id.startswith("child-")
    assert len(started[0].child_workflow_id.encode()) <= MAX_ID_BYTES


def _text_problem_by_regex(what: str, value: object, max_bytes: int, *, required: bool,
                           controls: bool = False) -> str | None:
    """The text check as it was before its ASCII shortcut: encode, then the regular expression."""
    import re

    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if not value:
        return f"{what} is empty" if required else None
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{what} is not valid UTF-8 (it holds a lone surrogate)"
    if size > max_bytes:
        return f"{what} is {size} UTF-8 bytes long, over the limit of {max_bytes} ({value[:40]!r}...)"
    if not controls and (m := re.search("[\x00-\x1f\x7f-\x9f]", value)) is not None:
        return (f"{what} {value[:80]!r} holds the control character U+{ord(m.group()):04X} at index {m.start()} "
                "(NUL and control characters are not allowed)")
    return None


def test_the_ascii_shortcut_of_the_text_check_answers_as_the_regular_expression() -> None:
    from aion.model.limits import _text_problem

    values: list[object] = [None, 7, "", "\ud800", "é", "a\x85b", "a\u2028b", "日本", "\U0001f600"]
    values += [f"a{chr(c)}b" for c in range(0x200)] + [chr(c) for c in range(0x200)]
    values += ["x" * n for n in (9, 10, 11)] + ["é" * n for n in (4, 5, 6)] + ["x" * 9 + "\x00", "x" * 11 + "\x00"]
    for value in values:
        for controls in (False, True):
            for required in (False, True):
                assert _text_problem("id", value, 10, required=required, controls=controls) == \
                    _text_problem_by_regex("id", value, 10, required=required, controls=controls), (value, controls)
