"""History limits: the warning turns continue_as_new_suggested on, the hard limit terminates."""

from __future__ import annotations

from runtime_sim import Sim

from aion import workflow
from aion.runtime import HistoryLimits, Registry, WorkflowExecution


@workflow.defn
class Collector:
    def __init__(self) -> None:
        self.items: list[str] = []

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: "stop" in self.items)
        return len(self.items)

    @workflow.signal
    def add(self, item: str) -> None:
        self.items.append(item)

    @workflow.query
    def suggested(self) -> bool:
        return workflow.info().continue_as_new_suggested


def test_event_limits_warn_then_terminate() -> None:
    sim = Sim([Collector], registry=Registry([Collector], history_limits=HistoryLimits(warn_events=5, fail_events=8)))
    sim.send(sim.start(Collector))
    sim.settle()
    assert sim.query("wf-1", "suggested") is False
    for i in range(3):
        sim.send(sim.signal("wf-1", "add", f"x{i}"))
    sim.settle()
    assert sim.query("wf-1", "suggested") is False  # 4 events
    sim.send(sim.signal("wf-1", "add", "x3"))
    sim.settle()
    assert sim.query("wf-1", "suggested") is True  # 5 events: the warning
    for i in range(4, 10):
        sim.send(sim.signal("wf-1", "add", f"x{i}"))
    sim.settle()
    types = sim.types("wf-1")
    assert types[-1] == "WorkflowTerminated"
    assert len(types) == 10 and types[-2] == "SignalReceived"  # 9 events > 8, then the termination
    term = sim.history("wf-1")[-1].body
    assert "history limit exceeded" in term.reason and "limit 8" in term.reason


def test_byte_limits_and_replay_agree() -> None:
    limits = HistoryLimits(warn_bytes=40, fail_bytes=10_000)
    reg = Registry([Collector], history_limits=limits)
    sim = Sim([Collector], registry=reg)
    sim.send(sim.start(Collector))
    sim.send(sim.signal("wf-1", "add", "a" * 50))
    sim.settle()
    assert sim.query("wf-1", "suggested") is True
    # A rebuilt (non-resident) execution answers the same: the byte count follows the replay position.
    ex = WorkflowExecution.from_history(reg, "wf-1", sim.history("wf-1"))
    assert ex.run is not None and ex.status == "RUNNING"
    sim.send(sim.signal("wf-1", "add", "stop"))
    sim.settle()
    assert sim.types("wf-1")[-1] == "WorkflowCompleted"


def test_payload_size_counts_payloads_and_failure_text_the_same_for_engine_and_runtime() -> None:
    """One measure serves the engine's payload limit (commands) and the history limits (events)."""
    from aion.model import ActivityTaskFailed, Failure, Payload, StartWorkflow, payload_size

    start = StartWorkflow("W", [Payload("application/json", b"12345"), Payload("application/json", b"678")])
    assert payload_size(start) == 8
    failure = Failure("E", "boom", details=Payload("application/json", b"xy"), stack="tb",
                      cause=Failure("C", "why"))
    assert payload_size(ActivityTaskFailed(run_id="r", activity_id="1", attempt=1, failure=failure)) == 4 + 2 + 2 + 3


def _payload_size_by_getattr(value) -> int:  # type: ignore[no-untyped-def]
    """payload_size as it was before its per-type sizers: a getattr loop over the fields."""
    from aion.model import Failure, Payload

    t = type(value)
    if t is Payload:
        return len(value.data)
    if t is Failure:
        return (len(value.message) + len(value.stack) + _payload_size_by_getattr(value.details)
                + _payload_size_by_getattr(value.cause))
    if t is list or t is tuple:
        return sum(_payload_size_by_getattr(v) for v in value)
    n = 0
    for f in getattr(t, "__dataclass_fields__", ()):
        v = getattr(value, f)
        if v is not None and type(v) not in (str, int, bool, float, bytes, dict):
            n += _payload_size_by_getattr(v)
    return n


def test_payload_size_of_every_event_and_command_is_the_getattr_walks() -> None:
    """The per-type sizers give what the walk over the fields gave, for every event of
    histories with timers, signals, a termination and continue-as-new, and for commands,
    failures with causes, nested lists and odd values."""
    from aion.bench.chain import build
    from aion.model import (
        ActivityTaskFailed, Command, Failure, Payload, RetryPolicy, SignalWithStart, StartWorkflow, payload_size,
    )

    p = Payload("application/json", b"12345")
    failure = Failure("E", "boom", details=p, stack="tb", cause=Failure("C", "why", details=p))
    values: list[object] = [
        p, failure, None, 7, "text", [p, p], (p, failure), [[p], (p,)],
        StartWorkflow("W", [p, p], memo={"m": p}, retry_policy=RetryPolicy(non_retryable_error_types=["X"])),
        SignalWithStart(StartWorkflow("W", [p]), "s", [p, p]),
        ActivityTaskFailed(run_id="r", activity_id="1", attempt=1, failure=failure),
        Command("c", "w", 1, StartWorkflow("W", [p]), reply_to="r:0"),
    ]
    for ex in (build(run=3, timers=4), build(run=1, timers=1)):
        values += [e.body for e in ex.history] + list(ex.history)
    sim = Sim([Collector], registry=Registry([Collector], history_limits=HistoryLimits(fail_events=8)))
    sim.send(sim.start(Collector))
    for i in range(10):  # signals with payloads, then the termination at the limit
        sim.send(sim.signal("wf-1", "add", f"x{i}" * i))
    sim.settle()
    assert sim.types("wf-1")[-1] == "WorkflowTerminated"
    values += [e.body for e in sim.history("wf-1")]
    for value in values:
        assert payload_size(value) == _payload_size_by_getattr(value), value
