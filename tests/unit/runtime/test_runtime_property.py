"""Property: whatever order signals, timer fires and activity results arrive in, the recorded
history replays to the same commands and the same result (and a cold rebuild agrees)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_sim import CONV, Sim

from aion import RetryPolicy, activity, workflow
from aion.exceptions import ActivityError, TimeoutError, exception_to_failure
from aion.model import ActivityTaskCompleted, ActivityTaskFailed, ActivityTaskStarted, Command, FireTimer
from aion.runtime import WorkflowExecution, replay_history


@activity.defn
async def work(i: int) -> int:
    return i


@workflow.defn
class Mixer:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.signals = 0
        self.done = False

    @workflow.run
    async def run(self, n: int) -> list[str]:
        async def branch(i: int) -> None:
            if i % 2 == 0:
                try:
                    r = await workflow.execute_activity(
                        work, i, start_to_close_timeout=timedelta(minutes=1),
                        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=2))
                    self.log.append(f"a{i}={r}")
                except ActivityError as e:
                    self.log.append(f"a{i}!{e.attempt}")
            else:
                await workflow.sleep(timedelta(seconds=i))
                self.log.append(f"t{i}@{workflow.now().timestamp():.0f}")

        tasks = [asyncio.create_task(branch(i)) for i in range(n)]
        try:
            await workflow.wait_condition(lambda: self.signals >= 2, timeout=timedelta(seconds=4))
            self.log.append("two signals")
        except TimeoutError:
            self.log.append("timed out")
        self.log.append(str(workflow.random().randint(0, 99)))
        await asyncio.gather(*tasks)
        await workflow.wait_condition(lambda: self.done)
        return self.log

    @workflow.signal
    def sig(self, v: str) -> None:
        self.signals += 1
        self.log.append(f"s:{v}")

    @workflow.signal
    def finish(self) -> None:
        self.done = True


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_arrival_order_replays_to_the_same_commands_and_result(data: st.DataObject) -> None:
    s = Sim([Mixer], [work], auto_activities=False)
    s.start(Mixer, 5)
    s.settle()
    pending_signals = ["x", "y", "z"]
    finished = False
    for _ in range(300):
        if s.ex("wf-1").status != "RUNNING":
            break
        actions: list[tuple[str, object]] = [("task", t) for t in s.tasks]
        actions += [("timer", k) for k in sorted(s.timers)]
        if pending_signals:
            actions.append(("signal", pending_signals[0]))
        elif not finished:
            actions.append(("finish", None))
        kind, x = data.draw(st.sampled_from(actions), label="next input")
        if kind == "task":
            t = x
            s.tasks.remove(t)  # type: ignore[arg-type]
            base = dict(run_id=t.run_id, activity_id=t.activity_id, attempt=t.attempt)  # type: ignore[attr-defined]
            s.send(Command(s.cid(), "wf-1", s.now, ActivityTaskStarted(**base)))
            if data.draw(st.booleans(), label="activity succeeds"):
                s.send(Command(s.cid(), "wf-1", s.now, ActivityTaskCompleted(result=CONV.to_payload(t.attempt), **base)))  # type: ignore[attr-defined]
            else:
                s.send(Command(s.cid(), "wf-1", s.now, ActivityTaskFailed(
                    failure=exception_to_failure(RuntimeError("flaky")), **base)))
        elif kind == "timer":
            wf, run, tid = x  # type: ignore[misc]
            at = s.timers.pop(x)  # type: ignore[arg-type]
            s.now = max(s.now, at + data.draw(st.integers(0, 3000), label="delay"))
            s.send(Command(f"fire:{run}:{tid}", wf, s.now, FireTimer(run, tid, at)))
        elif kind == "signal":
            s.signal("wf-1", "sig", pending_signals.pop(0))
        else:
            s.signal("wf-1", "finish")
            finished = True
        s.now += data.draw(st.integers(0, 1500), label="time passes")
        s.settle()
    ex = s.ex("wf-1")
    assert ex.status == "COMPLETED", s.types()
    history = s.history()
    # same commands, same values, same result
    result = replay_history(s.registry, history, strict=True)
    assert result.ok, str(result)
    # a cold rebuild reaches the same state and answers with the same result
    cold = WorkflowExecution.from_history(s.registry, "wf-1", history)
    assert cold.load_failure is None and cold.status == "COMPLETED" and cold.next_seq == len(history) + 1
    assert history[-1].body == ex.history[-1].body
    # the same commands fed to a cold (non-resident) execution record the identical history
    events: list = []
    for cmd, now in s.processed:
        if cmd.workflow_id != "wf-1":
            continue
        cold_ex = WorkflowExecution.from_history(s.registry, "wf-1", events) if events else WorkflowExecution.new(s.registry, "wf-1")
        events += cold_ex.handle(cmd, now).events
    assert events == history
