"""Recovery effects, search attributes, read-only queries, the JSON history format."""

from __future__ import annotations

import dataclasses
import typing
from datetime import timedelta

from runtime_sim import CONV, NoStart, Sim

from aion import activity, workflow
from aion.model import EVENT_TYPES, Command, Event, QueryWorkflow
from aion.runtime import WorkflowExecution, effects, events_from_json, events_to_json
from aion.runtime._history_json import from_obj, to_obj


@activity.defn
async def job(n: int) -> int:
    return n


@workflow.defn
class Busy:
    def __init__(self) -> None:
        self.n = 0

    @workflow.run
    async def run(self) -> None:
        workflow.upsert_search_attributes({"stage": "busy"})
        t = workflow.start_timer(timedelta(hours=1))
        a = workflow.start_activity(job, 1, schedule_to_close_timeout=timedelta(hours=2))
        await workflow.start_child_workflow(Idle.run, id="idle-kid")
        await t
        await a

    @workflow.query
    def bad(self) -> int:
        workflow.start_timer(5)  # queries must not issue commands
        return 1


@workflow.defn
class Idle:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


def test_recovery_effects_reissue_what_the_open_run_waits_on() -> None:
    s = Sim([Busy, Idle], [job], script={"job": [NoStart]})
    s.start(Busy, id="b")
    s.settle()
    ex = WorkflowExecution.from_history(s.registry, "b", s.history("b"))
    assert ex.search_attributes == {"stage": "busy"}
    fx = ex.recovery_effects(s.now + 5)
    kinds = sorted(type(e).__name__ + ":" + getattr(e, "timer_id", "") for e in fx)
    assert kinds == ["DispatchActivity:", "ScheduleTimer:1", "ScheduleTimer:a/1/close", "SendCommand:"]
    child = [e for e in fx if isinstance(e, effects.SendCommand)][0].command
    assert child.workflow_id == "idle-kid" and child.command_id.endswith(":start-child:idle-kid")
    # re-sending the child start is harmless: the child answers it as a duplicate
    before = len(s.history("idle-kid"))
    s.send(child)
    s.settle()
    assert len(s.history("idle-kid")) == before


def test_queries_are_read_only() -> None:
    s = Sim([Busy, Idle], [job], script={"job": [NoStart]})
    s.start(Busy, id="b")
    s.settle()
    r = s.ex("b").query(Command("q", "b", s.now, QueryWorkflow("bad", [])))
    assert r.kind == "ERROR" and r.failure is not None and "read-only" in r.failure.message
    assert s.ex("b").status == "RUNNING" and not s.ex("b").held


def _sample(t: typing.Any) -> typing.Any:
    hints = typing.get_type_hints(t, vars(__import__("aion.model", fromlist=["x"])))
    kw = {}
    for f in dataclasses.fields(t):
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            continue
        h = hints[f.name]
        kw[f.name] = {str: "s", int: 7, float: 1.5, bool: True}.get(h) if h in (str, int, float, bool) else None
        if kw[f.name] is None:
            if typing.get_origin(h) is list:
                kw[f.name] = [CONV.to_payload({"x": [1, 2]})]
            elif typing.get_origin(h) is dict:
                kw[f.name] = {"k": "v"}
            elif dataclasses.is_dataclass(h):
                kw[f.name] = _sample(h)
            elif h is bytes:
                kw[f.name] = b"\x00\xff"
    return t(**kw)


def test_every_event_type_round_trips_through_json() -> None:
    events = [Event("w", i + 1, "r", 1000 + i, _sample(t), command_id=f"c{i}") for i, t in enumerate(EVENT_TYPES)]
    assert events_from_json(events_to_json(events)) == events
    assert from_obj(to_obj(b"\x01\x02"), bytes) == b"\x01\x02"
