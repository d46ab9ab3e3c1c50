"""The authoring surface: decorators, retry policy, activity helpers, exceptions, converter."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import uuid
from datetime import datetime, timedelta, timezone
from typing import Optional

import pydantic
import pytest

from aion import RetryPolicy, activity, workflow
from aion.activity import ActivityDefinition
from aion.activity._context import ActivityContext, current, make_info
from aion.converter import DataConverter, PayloadConversionError, default_converter, set_default_converter
from aion.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    NondeterminismError,
    TimeoutError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    exception_to_failure,
    failure_to_exception,
)
from aion.model import Payload
from aion.workflow import WorkflowDefinition


def test_public_imports() -> None:
    import aion

    assert aion.RetryPolicy is workflow.RetryPolicy
    assert CancelledError is asyncio.CancelledError
    assert not issubclass(CancelledError, Exception)


# ------------------------------------------------------------------ decorators


@activity.defn
async def a1(x: int) -> int:
    return x


@activity.defn(name="renamed")
def a2() -> None:
    pass


@workflow.defn(name="Wf")
class MyWorkflow:
    @workflow.run
    async def run(self, x: int) -> int:
        return x

    @workflow.signal
    def poke(self) -> None: ...

    @workflow.signal(name="poke2")
    async def apoke(self, v: str) -> None: ...

    @workflow.query
    def state(self) -> str:
        return ""


def test_definitions() -> None:
    assert ActivityDefinition.of(a1).name == "a1" and ActivityDefinition.of(a1).is_async
    assert ActivityDefinition.of(a2).name == "renamed" and not ActivityDefinition.of(a2).is_async
    d = WorkflowDefinition.of(MyWorkflow)
    assert d.name == "Wf" and set(d.signals) == {"poke", "poke2"} and set(d.queries) == {"state"}
    assert d.signals["poke2"].is_async
    assert WorkflowDefinition.of(MyWorkflow.run) is d


def test_definition_errors_are_actionable() -> None:
    with pytest.raises(TypeError, match="no @workflow.run"):
        @workflow.defn
        class NoRun:
            async def run(self) -> None: ...
    with pytest.raises(TypeError, match="async def"):
        workflow.run(lambda self: None)
    with pytest.raises(TypeError, match="plain `def`"):
        @workflow.defn
        class AsyncQuery:
            @workflow.run
            async def run(self) -> None: ...

            @workflow.query
            async def q(self) -> int:
                return 1
    with pytest.raises(TypeError, match="not an activity"):
        ActivityDefinition.of(len)


def test_retry_policy() -> None:
    p = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1),
                    maximum_attempts=4, non_retryable_error_types=["X"])
    m = p.to_model()
    assert (m.initial_interval_ms, m.maximum_interval_ms, m.maximum_attempts, m.non_retryable_error_types) == (2000, 60000, 4, ["X"])
    assert RetryPolicy.from_model(m) == dataclasses.replace(p, non_retryable_error_types=("X",))
    with pytest.raises(ValueError):
        RetryPolicy(backoff_coefficient=0.5)
    with pytest.raises(TypeError):
        RetryPolicy(non_retryable_error_types="X")


# ------------------------------------------------------------------ activity helpers


def test_activity_helpers_read_the_context() -> None:
    with pytest.raises(activity.NotInActivityError):
        activity.info()
    beats: list[tuple] = []
    ctx = ActivityContext(make_info(workflow_id="w", run_id="r", activity_id="1", activity_type="a1", attempt=2),
                          heartbeat=beats.append)
    token = current.set(ctx)
    try:
        assert activity.info().attempt == 2 and activity.in_activity()
        activity.heartbeat("p", 1)
        assert beats == [("p", 1)]
        assert not activity.is_cancelled()
        ctx.request_cancel()
        assert activity.is_cancelled()
        asyncio.run(asyncio.wait_for(activity.wait_for_cancel(), 1))
    finally:
        current.reset(token)


# ------------------------------------------------------------------ exceptions


def test_failure_round_trip_keeps_types_messages_and_causes() -> None:
    try:
        try:
            raise ValueError("inner")
        except ValueError as e:
            raise ApplicationError("outer", {"k": 1}, 2, type="Biz", non_retryable=True) from e
    except ApplicationError as exc:
        f = exception_to_failure(exc)
    assert (f.type, f.message, f.non_retryable) == ("Biz", "outer", True)
    assert f.cause is not None and f.cause.type == "ValueError" and "raise ValueError" in f.cause.stack
    back = failure_to_exception(f)
    assert isinstance(back, ApplicationError) and back.type == "Biz" and back.details == ({"k": 1}, 2)
    assert back.non_retryable and back.remote_stack
    cause = back.__cause__
    assert isinstance(cause, ApplicationError) and cause.type == "ValueError" and cause.message == "inner"

    act = ActivityError("boom", activity_id="3", activity_type="charge", attempt=4,
                        retry_state="MAXIMUM_ATTEMPTS_REACHED", cause=TimeoutError("late", timeout_type="HEARTBEAT"))
    b2 = failure_to_exception(exception_to_failure(act))
    assert isinstance(b2, ActivityError) and (b2.activity_id, b2.activity_type, b2.attempt, b2.retry_state) == (
        "3", "charge", 4, "MAXIMUM_ATTEMPTS_REACHED")
    assert isinstance(b2.cause, TimeoutError) and b2.cause.timeout_type == "HEARTBEAT"

    ch = failure_to_exception(exception_to_failure(ChildWorkflowError(workflow_id="c", status="CANCELLED",
                                                                      cause=CancelledError("stop"))))
    assert isinstance(ch, ChildWorkflowError) and ch.status == "CANCELLED" and isinstance(ch.cause, CancelledError)

    nd = NondeterminismError(workflow_id="w", run_id="r", seq=7, expected="A", found="B")
    assert "seq 7" in str(nd) and "'w'" in str(nd)
    nd2 = failure_to_exception(exception_to_failure(nd))
    assert isinstance(nd2, NondeterminismError) and nd2.seq == 7 and nd2.expected == "A"

    wfe = WorkflowFailureError(workflow_id="w", status="FAILED", failure=exception_to_failure(ApplicationError("x")))
    assert isinstance(wfe.cause, ApplicationError)
    assert isinstance(failure_to_exception(exception_to_failure(WorkflowAlreadyStartedError("dup"))),
                      WorkflowAlreadyStartedError)


# ------------------------------------------------------------------ converter


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Line:
    sku: str
    qty: int = 1


@dataclasses.dataclass
class Order:
    id: str
    lines: list[Line]
    color: Color
    at: datetime
    ref: uuid.UUID
    note: Optional[str] = None
    tags: tuple[str, ...] = ()


class PModel(pydantic.BaseModel):
    name: str
    lines: list[Line] = []


def test_converter_round_trips_by_type_hint() -> None:
    c = DataConverter()
    o = Order("o1", [Line("a", 2)], Color.RED, datetime(2024, 1, 2, tzinfo=timezone.utc), uuid.uuid4(), tags=("x",))
    p = c.to_payload(o)
    assert p.content_type == "application/json"
    assert c.from_payload(p, Order) == o
    assert c.from_payload(p)["lines"] == [{"sku": "a", "qty": 2}]
    pm = PModel(name="n", lines=[Line("b")])
    assert c.from_payload(c.to_payload(pm), PModel) == pm
    assert c.from_payload(c.to_payload(b"\x00raw"), bytes) == b"\x00raw"
    assert c.from_payload(c.to_payload({"1": Line("z")}), dict[int, Line]) == {1: Line("z")}
    assert c.from_payloads(c.to_payloads([1, None]), [int, Optional[int]]) == [1, None]
    with pytest.raises(PayloadConversionError, match="cannot encode"):
        c.to_payload(object())
    with pytest.raises(PayloadConversionError, match="content type"):
        c.from_payload(Payload("application/x-other", b""))


def test_default_converter_is_pluggable() -> None:
    class Upper(DataConverter):
        def to_payload(self, value: object) -> Payload:
            return super().to_payload(value.upper() if isinstance(value, str) else value)

    old = default_converter()
    set_default_converter(Upper())
    try:
        assert default_converter().from_payload(default_converter().to_payload("x")) == "X"
    finally:
        set_default_converter(old)
