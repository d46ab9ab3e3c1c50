"""A cache miss replays the current run of a continue-as-new chain, not the chain.

``WorkflowExecution.from_history(events, chain_start=...)`` with the history from the start of
the step that began the current run (``step_start_seq``) and the chain's first
``WorkflowStarted`` (``chain_start_seq``) — what the engine reads on a miss
(``engine/_store.py``) — must behave as the execution replayed from the whole history: the same
events recorded for every later command, the same replies, the execution deadline of the
chain, the start's result waiter, a re-delivered command recognised, every history page.
"""

from __future__ import annotations

from typing import Any

from runtime_sim import CONV, Sim

from aion import workflow
from aion.model import Command, Event, QueryWorkflow, SignalWorkflow, WorkflowStarted
from aion.runtime import WorkflowExecution
from aion.runtime._history_pages import history_page, page_request, read_page


@workflow.defn
class Chain:
    """Waits for two signals per run; odd runs sleep a second before continuing as new (so the
    step that begins the next run is a timer fire), even runs continue as new in the step of
    their second signal."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @workflow.signal
    def add(self, v: str) -> None:
        self.seen.append(v)

    @workflow.query
    def count(self) -> int:
        return len(self.seen)

    @workflow.run
    async def run(self, n: int, limit: int, total: int) -> int:
        await workflow.wait_condition(lambda: len(self.seen) >= 2)
        if n % 2:
            await workflow.sleep(1)
        total += len(self.seen)
        if n < limit:
            workflow.continue_as_new(n + 1, limit, total)
        return total


class RunOnly(Sim):
    """Non-resident, and each rebuild reads what the engine's cache miss reads: the events
    from ``step_start_seq`` on and the chain's first ``WorkflowStarted`` (the previous
    execution's, as the workflow's ``workflows`` row holds them)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.resident = False
        self.loaded: list[int] = []  # events each rebuild replayed

    def rebuild(self, wf: str) -> WorkflowExecution:
        log = self.log.get(wf, [])
        prev = self.execs[wf]
        return load_current_run(self.registry, wf, log, prev.step_start_seq, prev.chain_start_seq, self.loaded)


def load_current_run(registry: Any, wf: str, log: list[Event], load_from: int, chain: int,
                     loaded: list[int] | None = None) -> WorkflowExecution:
    events = log[load_from - 1:] if load_from else list(log)
    seed = log[chain - 1] if 0 < chain < load_from else None
    if loaded is not None:
        loaded.append(len(events))
    ex = WorkflowExecution.from_history(registry, wf, events, chain_start=seed)
    ex.earlier = lambda a, b: log[a - 1:b - 1]
    return ex


def drive(sim: Sim, runs: int, signalled: int | None = None, **start: Any) -> Command:
    """Start a chain of ``runs + 1`` runs and signal its first ``signalled`` runs (all of them by
    default); the clock moves only to fire the odd runs' one-second sleep."""
    cmd = sim.start(Chain, 0, runs, 0, **start)
    sim.settle()
    for i in range(runs + 1 if signalled is None else signalled):
        for v in "ab":
            sim.signal("wf-1", "add", f"{v}{i}")
            sim.settle()
        if i % 2:
            sim.now += 1_000
            sim.fire_next_timer()
            sim.settle()
    return cmd


def test_a_chain_driven_through_current_run_loads_records_what_whole_history_replays_record() -> None:
    whole, part = Sim([Chain], resident=False), RunOnly([Chain])
    drive(whole, 12)
    drive(part, 12)
    assert part.log["wf-1"] == whole.log["wf-1"]
    assert part.replies == whole.replies
    assert part.value() == 26
    starts = [e.seq for e in part.log["wf-1"] if isinstance(e.body, WorkflowStarted)]
    assert len(starts) == 13
    # every rebuild replayed at most one run (and the step before it), however long the chain
    run_events = max(b - a for a, b in zip(starts, starts[1:]))
    assert max(part.loaded) <= run_events + 3 < len(part.log["wf-1"]) // 4


def test_what_the_current_run_needs_of_the_chain_comes_from_its_first_start() -> None:
    sim = Sim([Chain])
    start = drive(sim, 9, signalled=6, execution_timeout_ms=3_600_000)  # the 7th run waits for signals
    full = sim.ex("wf-1")
    log = sim.log["wf-1"]
    ex = load_current_run(sim.registry, "wf-1", log, full.step_start_seq, full.chain_start_seq)
    assert full.status == "RUNNING" and ex.first_seq > 1 and ex.first_seq == full.step_start_seq
    assert ex.run is not None and full.run is not None
    assert (ex.run_id, ex.status, ex.next_seq) == (full.run_id, full.status, full.next_seq)
    assert ex.run.exec_deadline_ms == full.run.exec_deadline_ms == log[0].recorded_at_ms + 3_600_000
    assert ex._first_run_id == full._first_run_id == log[0].run_id
    assert ex._waiters == full._waiters and ex._waiters  # the start's reply_to waits for the chain's result
    # a query of the current run after the miss
    q = Command("q-1", "wf-1", sim.now, QueryWorkflow("count", []))
    assert CONV.from_payload(ex.query(q).result) == CONV.from_payload(full.query(q).result) == 0
    # the same next step either way
    sig = Command("sig-x", "wf-1", sim.now, SignalWorkflow("add", CONV.to_payloads(["x"])), reply_to="replies:0")
    a, b = ex.handle(sig, sim.now), full.handle(sig, sim.now)
    assert a.events == b.events and a.effects == b.effects
    # the chain's start, re-delivered, is recognised (answered with the first run), not a new start
    a, b = ex.handle(start, sim.now), full.handle(start, sim.now)
    assert a.events == b.events == []
    assert [r.reply for r in a.replies] == [r.reply for r in b.replies]
    assert a.replies[0].reply.kind == "ACCEPTED" and a.replies[0].reply.run_id == log[0].run_id


def test_the_command_whose_step_began_the_current_run_is_recognised_when_sent_again() -> None:
    sim = Sim([Chain])
    sim.start(Chain, 0, 9, 0)
    sim.settle()
    sim.signal("wf-1", "add", "a")
    sim.settle()
    last = sim.signal("wf-1", "add", "b")  # run 0 (even) continues as new in this signal's step
    sim.settle()
    full = sim.ex("wf-1")
    assert full.run is not None and full.run.start_seq > 1
    log = sim.log["wf-1"]
    assert log[full.run.start_index].command_id == last.command_id
    ex = load_current_run(sim.registry, "wf-1", log, full.step_start_seq, full.chain_start_seq)
    assert ex.first_seq < full.run.start_seq  # the signal of that step is held, before the new run's start
    a, b = ex.handle(last, sim.now), full.handle(last, sim.now)
    assert a.events == b.events == []
    assert [r.reply for r in a.replies] == [r.reply for r in b.replies]
    assert a.replies[0].reply.kind == "ACCEPTED"


def test_history_pages_of_an_execution_holding_its_current_run_read_the_earlier_events() -> None:
    sim = Sim([Chain])
    drive(sim, 30, signalled=20)
    full = sim.ex("wf-1")
    log = sim.log["wf-1"]
    ex = load_current_run(sim.registry, "wf-1", log, full.step_start_seq, full.chain_start_seq)
    assert ex.first_seq > 50
    for budget in (300, 4_000, 1_000_000):
        got: list[Event] = []
        nxt: int | None = 1
        while nxt is not None:
            events, nxt = read_page(history_page(ex.history, page_request(nxt, budget), ex.earlier))
            assert events
            got.extend(events)
        assert [e.seq for e in got] == [e.seq for e in log]
        assert history_page(ex.history, page_request(7, budget), ex.earlier) == history_page(log, page_request(7, budget))
