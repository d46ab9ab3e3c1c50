"""A tiny in-test engine that drives WorkflowExecution directly (no Kafka, no testing env).

It keeps one WorkflowExecution per workflow id, a timer table, a queue of commands and of
activity tasks, and performs the effects of every step. Activities run synchronously from a
script or their registered function. ``run()`` processes everything, jumping the clock to the
next timer when idle.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from aion.converter import default_converter, hints_of
from aion.exceptions import exception_to_failure
from aion.model import (
    ActivityTask,
    ActivityTaskCancelled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskStarted,
    CancelActivityTask,
    CancelWorkflow,
    Command,
    Event,
    FireTimer,
    GetResult,
    QueryWorkflow,
    Reply,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
)
from aion.runtime import Registry, WorkflowExecution, effects

CONV = default_converter()


class Hang:
    """Script outcome: the attempt starts and never reports (times out)."""


class NoStart:
    """Script outcome: the attempt is never picked up."""


@dataclass
class Sim:
    workflows: list[Any]
    activities: list[Any] = field(default_factory=list)
    now: int = 1_700_000_000_000
    registry: Registry | None = None
    #: activity type -> list of outcomes per attempt (value, BaseException instance, Hang, NoStart),
    #: or a function (task, decoded args) -> outcome
    script: dict[str, Any] = field(default_factory=dict)
    auto_activities: bool = True
    #: False: rebuild every execution from its history before each command (non-resident).
    resident: bool | None = None

    #: The default of ``resident`` (tests flip it to run whole scenarios non-resident).
    RESIDENT_DEFAULT = True

    def __post_init__(self) -> None:
        if self.resident is None:
            self.resident = Sim.RESIDENT_DEFAULT
        if self.registry is None:
            self.registry = Registry(self.workflows, self.activities)
        self.execs: dict[str, WorkflowExecution] = {}
        self.log: dict[str, list[Event]] = {}
        self.timers: dict[tuple[str, str, str], int] = {}
        self.heartbeats: dict[tuple[str, str], tuple[int, Any]] = {}
        self.commands: deque[Command] = deque()
        self.tasks: deque[ActivityTask] = deque()
        self.cancels: list[CancelActivityTask] = []
        self.replies: list[Reply] = []
        self.dispatched: list[ActivityTask] = []
        self._ids = itertools.count(1)
        #: Every command processed, with the time it was processed at.
        self.processed: list[tuple[Command, int]] = []

    # ------------------------------------------------------------------ commands
    def cid(self, prefix: str = "c") -> str:
        return f"{prefix}-{next(self._ids)}"

    def start(self, wf_type: Any, *args: Any, id: str = "wf-1", reply: bool = True, **kw: Any) -> Command:
        name = wf_type if isinstance(wf_type, str) else getattr(wf_type, "__aion_workflow_definition__").name
        cmd = Command(self.cid("start"), id, self.now,
                      StartWorkflow(name, CONV.to_payloads(args), request_id=self.cid("req"), wait_result=reply, **kw),
                      reply_to="replies:0" if reply else None)
        self.send(cmd)
        return cmd

    def signal(self, wf_id: str, name: str, *args: Any) -> Command:
        cmd = Command(self.cid("sig"), wf_id, self.now, SignalWorkflow(name, CONV.to_payloads(args)), reply_to="replies:0")
        self.send(cmd)
        return cmd

    def cancel(self, wf_id: str) -> Command:
        cmd = Command(self.cid("cancel"), wf_id, self.now, CancelWorkflow("test"), reply_to="replies:0")
        self.send(cmd)
        return cmd

    def terminate(self, wf_id: str) -> Command:
        cmd = Command(self.cid("term"), wf_id, self.now, TerminateWorkflow("test"), reply_to="replies:0")
        self.send(cmd)
        return cmd

    def query(self, wf_id: str, name: str, *args: Any) -> Any:
        ex = self.ex(wf_id)
        before = len(ex.history)
        r = ex.query(Command(self.cid("q"), wf_id, self.now, QueryWorkflow(name, CONV.to_payloads(args))))
        assert len(ex.history) == before, "a query appended history"
        if r.kind != "QUERY":
            raise AssertionError(f"query failed: {r.failure}")
        return CONV.from_payload(r.result)

    def send(self, cmd: Command) -> None:
        self.commands.append(cmd)

    def ex(self, wf_id: str) -> WorkflowExecution:
        return self.execs[wf_id]

    def history(self, wf_id: str = "wf-1") -> list[Event]:
        return self.log[wf_id]

    # ------------------------------------------------------------------ processing
    def rebuild(self, wf: str) -> WorkflowExecution:
        """A non-resident execution's rebuild before each command (the engine's cache miss)."""
        return WorkflowExecution.from_history(self.registry, wf, list(self.log.get(wf, [])))

    def process(self, cmd: Command) -> None:
        wf = cmd.workflow_id
        ex = self.execs.get(wf)
        if ex is None:
            ex = WorkflowExecution.new(self.registry, wf)
            self.execs[wf] = ex
        elif not self.resident:
            ex = self.rebuild(wf)
            ex.restore_heartbeats(lambda aid: self.heartbeats.get((wf, aid)))  # as the engine's progress table
            self.execs[wf] = ex
        step = ex.handle(cmd, self.now)
        self.processed.append((cmd, self.now))
        log = self.log.setdefault(wf, [])
        for ev in step.events:
            assert ev.seq == len(log) + 1, f"gap in seq: {ev.seq} after {len(log)}"
            assert ev.recorded_at_ms == self.now and ev.command_id == cmd.command_id
            log.append(ev)
        assert ex.history == log[ex.first_seq - 1:]
        for fx in step.effects:
            self.perform(fx)

    def perform(self, fx: Any) -> None:
        if isinstance(fx, effects.DispatchActivity):
            self.tasks.append(fx.task)
            self.dispatched.append(fx.task)
        elif isinstance(fx, effects.DispatchActivityCancel):
            self.cancels.append(fx.task)
        elif isinstance(fx, effects.ScheduleTimer):
            self.timers[(fx.workflow_id, fx.run_id, fx.timer_id)] = fx.fire_at_ms
        elif isinstance(fx, effects.DropTimer):
            self.timers.pop((fx.workflow_id, fx.run_id, fx.timer_id), None)
        elif isinstance(fx, effects.SendCommand):
            self.commands.append(fx.command)
        elif isinstance(fx, effects.SendReply):
            self.replies.append(fx.reply)
        elif isinstance(fx, effects.KeepHeartbeat):
            self.heartbeats[(fx.workflow_id, fx.heartbeat.activity_id)] = (fx.at_ms, fx.heartbeat)
        elif isinstance(fx, effects.DropHeartbeat):
            self.heartbeats.pop((fx.workflow_id, fx.activity_id), None)
        else:  # pragma: no cover
            raise AssertionError(fx)

    def drain(self) -> bool:
        did = False
        while self.commands or (self.auto_activities and self.tasks):
            while self.commands:
                self.process(self.commands.popleft())
                did = True
            if self.auto_activities and self.tasks:
                self.run_task(self.tasks.popleft())
                did = True
        return did

    def run_task(self, task: ActivityTask) -> None:
        outcomes = self.script.get(task.activity_type)
        if callable(outcomes):
            outcome = outcomes(task, CONV.from_payloads(task.input))
        elif outcomes is not None:
            i = task.attempt - 1
            outcome = outcomes[min(i, len(outcomes) - 1)]
        else:
            d = self.registry.activity(task.activity_type)
            assert d is not None, f"no activity {task.activity_type}"
            try:
                args = CONV.from_payloads(task.input, hints_of(d.fn))
                r = d.fn(*args)
                if inspect.isawaitable(r):
                    r = asyncio.new_event_loop().run_until_complete(r)
                outcome = r
            except Exception as e:  # noqa: BLE001
                outcome = e
        if outcome is NoStart:
            return
        base = dict(run_id=task.run_id, activity_id=task.activity_id, attempt=task.attempt)
        self.commands.append(Command(self.cid("ast"), task.workflow_id, self.now, ActivityTaskStarted(**base)))
        if outcome is Hang:
            return
        if isinstance(outcome, BaseException):
            self.commands.append(Command(self.cid("afail"), task.workflow_id, self.now,
                                         ActivityTaskFailed(failure=exception_to_failure(outcome), **base)))
        else:
            self.commands.append(Command(self.cid("adone"), task.workflow_id, self.now,
                                         ActivityTaskCompleted(result=CONV.to_payload(outcome), **base)))

    def fire_next_timer(self) -> bool:
        if not self.timers:
            return False
        key, at = min(self.timers.items(), key=lambda kv: (kv[1], kv[0]))
        del self.timers[key]
        self.now = max(self.now, at)
        wf, run, tid = key
        self.commands.append(Command(f"fire:{run}:{tid}", wf, self.now, FireTimer(run, tid, at)))
        return True

    def run(self, max_steps: int = 10_000) -> None:
        for _ in range(max_steps):
            self.drain()
            if not self.fire_next_timer():
                return
        raise AssertionError("simulation did not settle")

    def settle(self) -> None:
        """Process queued commands/tasks without advancing time."""
        self.drain()

    def result(self, wf_id: str = "wf-1") -> Reply:
        for r in reversed(self.replies):
            if r.workflow_id == wf_id and r.kind == "RESULT":
                return r
        raise AssertionError(f"no result for {wf_id}; status {self.execs[wf_id].status}")

    def value(self, wf_id: str = "wf-1", hint: Any = None) -> Any:
        r = self.result(wf_id)
        assert r.status == "COMPLETED", f"{wf_id} ended {r.status}: {r.failure}"
        return CONV.from_payload(r.result, hint)

    def types(self, wf_id: str = "wf-1") -> list[str]:
        return [e.type for e in self.log[wf_id]]
