"""Non-deterministic calls in workflow code are warned when the workflow is registered
(runtime/_determinism.py): the call, the place, the replacement; once per place; not the
deterministic replacements. ``replay --strict`` names them too instead of workflow.patched."""

from __future__ import annotations

import logging
import random
import time
import datetime as dt
import uuid
from datetime import datetime, timedelta
from time import time as now

import pytest
from runtime_sim import Sim

from aion import activity, workflow
from aion.runtime import replay_history
from aion.testing import WorkflowEnvironment


@workflow.defn
class Careless:
    @workflow.run
    async def run(self) -> str:
        out = []
        for _ in range(3):  # three times: one warning per place
            out.append(random.random())
            out.append(datetime.now())
            out.append(time.time())
            out.append(uuid.uuid4())
            out.append(dt.date.today())
            out.append(now())
        return "done"


@workflow.defn
class Careful:
    @workflow.run
    async def run(self) -> str:
        return f"{workflow.random().random()} {workflow.now()} {workflow.time()} {workflow.uuid4()}"


async def test_random_datetime_time_uuid_are_warned_with_their_replacement(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aion.workflow.determinism")
    async with WorkflowEnvironment.start_time_skipping(workflows=[Careless]) as env:
        assert await env.client.execute_workflow(Careless.run, id="c-1") == "done"
    said = [r.getMessage() for r in caplog.records if r.name == "aion.workflow.determinism"]
    for call, line, instead in (("random.random()", 29, "workflow.random().random()"),
                                ("datetime.now()", 30, "workflow.now()"), ("time.time()", 31, "workflow.time()"),
                                ("uuid.uuid4()", 32, "workflow.uuid4()"), ("dt.date.today()", 33, "workflow.now().date()"),
                                ("now()", 34, "workflow.time()")):
        lines = [m for m in said if f"calls {call} at" in m]
        assert len(lines) == 1, (call, said)
        assert lines[0].startswith(f"workflow Careless calls {call} at ")
        assert f"test_runtime_determinism.py:{line}: not deterministic" in lines[0] and f"use {instead}" in lines[0]
    assert len(said) == 6, said


async def test_the_deterministic_replacements_are_not_warned(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aion.workflow.determinism")
    async with WorkflowEnvironment.start_time_skipping(workflows=[Careful]) as env:
        await env.client.execute_workflow(Careful.run, id="c-2")
    assert [r for r in caplog.records if r.name == "aion.workflow.determinism"] == []


@activity.defn
async def echo(x: float) -> float:
    return x


@workflow.defn
class Lucky:
    @workflow.run
    async def run(self) -> float:
        return await workflow.execute_activity(echo, random.random(), start_to_close_timeout=timedelta(seconds=5))


def test_strict_replay_of_other_values_names_the_non_deterministic_calls_not_patched() -> None:
    s = Sim([Lucky], [echo])
    s.start(Lucky)
    s.run()
    res = replay_history(s.registry, s.history(), strict=True)
    assert res.divergence is not None
    msg = str(res.divergence)
    assert "same identity, different values" in msg and "use workflow.random(), workflow.now()" in msg
    assert "workflow.patched" not in msg


@workflow.defn
class Draws:
    @workflow.run
    async def run(self) -> list[int]:
        first = [workflow.random().randint(0, 10**9) for _ in range(3)]
        await workflow.sleep(1)
        return first + [workflow.random().randint(0, 10**9), workflow.uuid4().int]


def test_workflow_random_is_the_run_ids_sequence_live_and_after_a_rebuild() -> None:
    """``workflow.random()`` is made at its first use, seeded by the run id: the same sequence
    as a generator made with the instance, across activations, and again when the instance is
    rebuilt by replay in the middle of the run."""
    from aion.converter import default_converter
    from aion.model import Command, FireTimer, StartWorkflow, WorkflowCompleted
    from aion.runtime import Registry, WorkflowExecution
    from aion.runtime._instance import _seed
    from aion.runtime.effects import ScheduleTimer

    conv = default_converter()
    reg = Registry(workflows=[Draws])
    results = []
    for rebuild in (False, True):
        ex = WorkflowExecution.new(reg, "draws")
        step = ex.handle(Command("c1", "draws", 1_000, StartWorkflow("Draws", [])), 1_000)
        if rebuild:  # a cache miss: the instance is made again by replaying the start
            ex = WorkflowExecution.from_history(reg, "draws", list(ex.history))
        timer = next(e for e in step.effects if isinstance(e, ScheduleTimer))
        step = ex.handle(Command("c2", "draws", 2_000, FireTimer(timer.run_id, timer.timer_id, timer.fire_at_ms)), 2_000)
        done = step.events[-1].body
        assert isinstance(done, WorkflowCompleted)
        results.append((ex.run_id, conv.from_payload(done.result, list[int])))
    (run_id, live), (again_id, rebuilt) = results
    assert run_id == again_id and live == rebuilt
    r = random.Random(_seed(run_id))
    expected = [r.randint(0, 10**9) for _ in range(4)]
    assert live[:4] == expected
    assert live[4] == uuid.UUID(int=r.getrandbits(128), version=4).int
