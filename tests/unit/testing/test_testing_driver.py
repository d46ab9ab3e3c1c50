"""The environment's transport in isolation: the clock, the timer heap, effect routing, record
before effect and the gapless-history check — with a scripted stand-in for the runtime, so these
pin the environment's own mechanics (the semantics are the runtime's, tested with it elsewhere)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import pytest

from aion.model import Command, Event, FireTimer, Reply, SignalWorkflow, TimerFired, TimerStarted
from aion.runtime import Registry, Step
from aion.runtime import effects as fx
from aion.testing import EngineBugError, WorkflowEnvironment
from aion.testing import _environment as envmod
from aion.testing._clock import SkippingClock


def test_clock_runs_with_wall_time_and_only_skips_forward() -> None:
    clock = SkippingClock(1_000_000)
    t0 = clock.now_ms()
    assert 1_000_000 <= t0 < 1_000_000 + 1000
    assert clock.skip_to(t0 - 5) == 0  # never backwards
    assert clock.skip_to(t0 + 3_600_000) > 0
    assert clock.now_ms() >= t0 + 3_600_000
    time.sleep(0.02)
    assert clock.now_ms() >= t0 + 3_600_000 + 15
    assert clock.skipped_ms >= 3_600_000 - 1000
    assert clock.wall_seconds_until(clock.now_ms() - 1) == 0.0


def test_a_paused_clock_stands_still_and_resumes_where_it_stopped() -> None:
    clock = SkippingClock(0)
    clock.pause()
    t = clock.now_ms()
    time.sleep(0.03)
    assert clock.now_ms() == t
    clock.skip_to(t + 5000)
    assert clock.now_ms() == t + 5000  # a skip lands exactly
    clock.resume()
    time.sleep(0.02)
    assert t + 5000 + 15 <= clock.now_ms() < t + 5000 + 1000


class Scripted:
    """Stands in for WorkflowExecution: ``script(self, cmd, now) -> (bodies, effects)``."""

    script: Callable[["Scripted", Command, int], tuple[list[Any], list[Any]]]
    seen: list[tuple[str, int]] = []

    def __init__(self, workflow_id: str, history: list[Event]) -> None:
        self.workflow_id = workflow_id
        self.history = list(history)

    @classmethod
    def new(cls, registry: Any, workflow_id: str) -> "Scripted":
        return cls(workflow_id, [])

    @classmethod
    def from_history(cls, registry: Any, workflow_id: str, events: list[Event]) -> "Scripted":
        return cls(workflow_id, events)

    def handle(self, cmd: Command, now_ms: int) -> Step:
        Scripted.seen.append((cmd.type, now_ms))
        bodies, effects = type(self).script(self, cmd, now_ms)
        events = []
        for b in bodies:
            ev = Event(self.workflow_id, len(self.history) + 1, "run-1", now_ms, b, cmd.command_id)
            self.history.append(ev)
            events.append(ev)
        return Step(events, effects)

    def query(self, cmd: Command) -> Reply:
        return Reply(cmd.command_id, cmd.workflow_id, "QUERY")


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> type[Scripted]:
    monkeypatch.setattr(envmod, "WorkflowExecution", Scripted)
    Scripted.seen = []
    return Scripted


async def test_timers_fire_in_due_order_and_dropped_ones_never(scripted: type[Scripted]) -> None:
    fired: list[str] = []

    def script(ex: Scripted, cmd: Command, now: int) -> tuple[list[Any], list[Any]]:
        if isinstance(cmd.body, SignalWorkflow):  # arm three timers, drop one
            base = now
            return ([TimerStarted("b", base + 2000, 2000), TimerStarted("a", base + 1000, 1000),
                     TimerStarted("c", base + 3000, 3000)],
                    [fx.ScheduleTimer("w", "run-1", "b", base + 2000), fx.ScheduleTimer("w", "run-1", "a", base + 1000),
                     fx.ScheduleTimer("w", "run-1", "c", base + 3000), fx.DropTimer("w", "run-1", "c")])
        if isinstance(cmd.body, FireTimer):
            assert now >= cmd.body.fire_at_ms
            fired.append(cmd.body.timer_id)
            return [TimerFired(cmd.body.timer_id)], []
        return [], []

    scripted.script = script
    async with WorkflowEnvironment(Registry()) as env:
        env.send(env.new_command("w", SignalWorkflow("go", [])))
        await env.wait_idle()
        await env.sleep(10)
        assert fired == ["a", "b"]
        assert [e.type for e in env.history("w")][-2:] == ["TimerFired", "TimerFired"]


async def test_effects_follow_their_events_into_the_log(scripted: type[Scripted]) -> None:
    observed: list[int] = []

    def script(ex: Scripted, cmd: Command, now: int) -> tuple[list[Any], list[Any]]:
        if isinstance(cmd.body, SignalWorkflow) and cmd.body.signal_name == "ping":
            # A command to another workflow: it must see the sender's event already recorded.
            return [TimerStarted("t", now, 0)], [fx.SendCommand(Command("c2", "other", now, SignalWorkflow("pong", [])))]
        if cmd.workflow_id == "other":
            observed.append(len(env.history("w")))
        return [], []

    scripted.script = script
    async with WorkflowEnvironment(Registry()) as env:
        env.send(env.new_command("w", SignalWorkflow("ping", [])))
        await env.wait_idle()
    assert observed == [1]


async def test_a_gap_in_the_runtime_seqs_is_reported_as_an_engine_bug(scripted: type[Scripted]) -> None:
    def script(ex: Scripted, cmd: Command, now: int) -> tuple[list[Any], list[Any]]:
        ex.history.append(None)  # type: ignore[arg-type]  # skip a seq
        return [TimerFired("x")], []

    scripted.script = script
    env = WorkflowEnvironment(Registry())
    with pytest.raises(EngineBugError, match="gapless"):
        async with env:
            env.send(env.new_command("w", SignalWorkflow("go", [])))
            await env.wait_idle()


async def test_queries_do_not_reach_handle(scripted: type[Scripted]) -> None:
    from aion.model import QueryWorkflow
    from aion.testing._environment import Mailbox

    scripted.script = lambda ex, cmd, now: ([], [])
    async with WorkflowEnvironment(Registry()) as env:
        box = Mailbox()
        cmd = env.new_command("w", QueryWorkflow("status", []))
        env.send(cmd, box)
        reply = await asyncio.wait_for(box.get(), 1)
        assert reply.kind == "QUERY" and reply.command_id == cmd.command_id
        assert Scripted.seen == [] and env.history("w") == []
