"""The engine's metrics from a committed transaction (_metrics.py), without Kafka or Faust's
worker: a committed _Work of real events and effects goes in, the Prometheus text comes out."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aion.engine._engine import _Work
from aion.engine._metrics import OFF, EngineMetrics
from aion.model import (
    ActivityCompleted, ActivityFailed, ActivityScheduled, ActivityTask, ChildWorkflowStarted, Command, Event,
    FireTimer, Failure, Payload, SignalReceived, TimerFired, WorkflowCompleted, WorkflowFailed, WorkflowReopened, WorkflowStarted,
)
from aion.runtime import effects as fx

P = Payload("application/json", b'"x"')


class _App:
    def __init__(self) -> None:
        self.sensors = SimpleNamespace(add=lambda s: None)
        self.conf = SimpleNamespace(id="aion-engine")


def metrics() -> EngineMetrics:
    engine: Any = SimpleNamespace(app=_App(), names=SimpleNamespace(dlq="aion.dlq"))
    return EngineMetrics(engine)


class _Ex:
    """What the metrics read of a workflow execution: its type and history."""

    def __init__(self, wtype: str, history: list[Event]) -> None:
        self.workflow_type = wtype
        self.history = history


def ev(wid: str, seq: int, at: int, body: Any, run: str = "r1", cmd: str | None = None) -> Event:
    return Event(wid, seq, run, at, body, cmd)


def scrape(m: EngineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_counters_and_latencies_come_from_the_committed_events() -> None:
    m = metrics()
    # batch 1: two Hello workflows start and schedule an activity; one command is dead-lettered
    w1 = [ev("hello-1", 1, 1_000, WorkflowStarted("Hello", [P], task_queue="q")),
          ev("hello-1", 2, 1_000, ActivityScheduled("1", "greet", [P], task_queue="q"))]
    w2 = [ev("hello-2", 1, 1_000, WorkflowStarted("Hello", [P], task_queue="q")),
          ev("hello-2", 2, 1_000, ActivityScheduled("1", "greet", [P], task_queue="q"))]
    ex1, ex2 = _Ex("Hello", list(w1)), _Ex("Hello", list(w2))
    task = ActivityTask("hello-1", "r1", "1", 1, "greet", [P], "q", "Hello", 1_000)
    work = _Work(0, 10, 13, events=w1 + w2, touched={"hello-1": ex1, "hello-2": ex2},  # type: ignore[dict-item]
                 effects=[fx.DispatchActivity(task), fx.DispatchActivity(task)])
    work.records = [("aion.events", b"k", b"v", 0), ("aion.dlq", None, b"bad", None, [])]
    m.committed(work, 0.004)

    # batch 2: hello-1's activity completes and it completes 2.5 s after its start; hello-2's
    # activity fails (will retry); a signal; a timer fires 30 ms late; a schedule starts a child
    done = [ev("hello-1", 3, 3_000, ActivityCompleted("1", 1, P)),
            ev("hello-1", 4, 3_500, WorkflowCompleted(P))]
    ex1.history += done
    failed = ev("hello-2", 3, 3_000, ActivityFailed("1", 1, Failure("E", "boom"), will_retry=True))
    ex2.history.append(failed)
    sig = ev("approval-1", 5, 3_000, SignalReceived("decide", [P]))
    reopened = ev("approval-2", 9, 3_000, WorkflowReopened(from_seq=7))
    fired = ev("sleeper-1", 3, 2_030, TimerFired("1"), cmd="fire-1")
    sched = ev("schedule:nightly", 7, 2_000, ChildWorkflowStarted("nightly-2026", "Report", [P]))
    work2 = _Work(0, 13, 20, events=[*done, failed, sig, fired, sched, reopened],
                  touched={"hello-1": ex1, "hello-2": ex2, "approval-1": _Ex("Approval", [sig]),  # type: ignore[dict-item]
                           "approval-2": _Ex("Approval", [reopened]),
                           "sleeper-1": _Ex("Sleeper", [fired]), "schedule:nightly": _Ex("aion.Schedule", [sched])},
                  commands={"fire-1": Command("fire-1", "sleeper-1", 2_000, FireTimer("r1", "1", 2_000))})
    m.committed(work2, 0.006)
    m.batch(7)
    m.step(ex1, 0.0002)

    s = scrape(m)
    assert s[("aion_workflows_started_total", (("workflow_type", "Hello"),))] == 2
    assert s[("aion_workflows_completed_total", (("status", "COMPLETED"), ("workflow_type", "Hello")))] == 1
    assert s[("aion_activities_dispatched_total", (("activity_type", "greet"), ("task_queue", "q")))] == 2
    assert s[("aion_activities_completed_total",
              (("activity_type", "greet"), ("status", "COMPLETED"), ("task_queue", "q")))] == 1
    assert s[("aion_activities_completed_total",
              (("activity_type", "greet"), ("status", "FAILED"), ("task_queue", "q")))] == 1
    assert s[("aion_signals_delivered_total", (("workflow_type", "Approval"),))] == 1
    assert s[("aion_workflows_reopened_total", (("workflow_type", "Approval"),))] == 1
    assert s[("aion_schedules_fired_total", (("workflow_type", "Report"),))] == 1
    assert s[("aion_timers_fired_total", (("workflow_type", "Sleeper"),))] == 1
    assert s[("aion_dead_letters_total", ())] == 1
    assert s[("aion_events_recorded_total", ())] == 11
    e2e = (("status", "COMPLETED"), ("workflow_type", "Hello"))
    assert s[("aion_workflow_end_to_end_seconds_count", e2e)] == 1
    assert s[("aion_workflow_end_to_end_seconds_sum", e2e)] == 2.5
    assert s[("aion_timer_fire_lag_seconds_sum", (("workflow_type", "Sleeper"),))] == 0.03
    assert s[("aion_append_seconds_count", ())] == 2
    assert s[("aion_batch_size_count", ())] == 1 and s[("aion_batch_size_sum", ())] == 7
    assert s[("aion_workflow_step_seconds_count", (("workflow_type", "Hello"),))] == 1
    assert m.positions == {0: 20}
    # no label holds a workflow id
    ids = {"hello-1", "hello-2", "approval-1", "sleeper-1", "schedule:nightly", "nightly-2026"}
    assert not {v for _, labels in s for _, v in labels} & ids


def test_an_outcome_whose_schedule_was_not_seen_finds_it_in_the_history() -> None:
    # (the engine took the partition over after the activity was scheduled elsewhere)
    m = metrics()
    hist = [ev("w", 1, 0, WorkflowStarted("Order", [P])), ev("w", 2, 0, ActivityScheduled("7", "charge", [P], "pay")),
            ev("w", 3, 10, ActivityCompleted("7", 1, P)), ev("w", 4, 20, WorkflowFailed(Failure("E", "x")))]
    m.committed(_Work(1, 0, 2, events=hist[2:], touched={"w": _Ex("Order", hist)}), 0.001)  # type: ignore[dict-item]
    s = scrape(m)
    assert s[("aion_activities_completed_total",
              (("activity_type", "charge"), ("status", "COMPLETED"), ("task_queue", "pay")))] == 1
    assert s[("aion_workflows_completed_total", (("status", "FAILED"), ("workflow_type", "Order")))] == 1


def test_off_does_nothing() -> None:
    assert OFF.enabled is False
    OFF.committed(None, 0.0)
    OFF.batch(3)
    OFF.step(None, 0.0)
