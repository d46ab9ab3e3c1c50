"""Golden histories: pinned, replayed against the current code, and mutated to prove that a
changed command is reported at the right seq.

Regenerate after an intended change of the recorded format or semantics with
``AION_REGEN_GOLDEN=1 pytest tests/golden`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import golden_workflows as g
import pytest
from golden_scenarios import SCENARIOS, Scenario, strip_stacks

from aion.runtime import Registry, WorkflowExecution, replay_history
from aion.runtime._history_json import dump_history, load_history

HERE = Path(__file__).resolve().parent / "histories"
REGEN = os.environ.get("AION_REGEN_GOLDEN") == "1"


def path_of(sc: Scenario, wf_id: str) -> Path:
    suffix = "" if wf_id == "wf-1" else f".{wf_id}"
    return HERE / f"{sc.name}{suffix}.json"


def registry() -> Registry:
    return Registry(g.WORKFLOWS, g.ACTIVITIES)


@pytest.fixture(autouse=True)
def _reset() -> None:
    g.MUTATIONS.clear()
    g.PATCH_VERSION["v"] = "v2"
    yield
    g.MUTATIONS.clear()
    g.PATCH_VERSION["v"] = "v2"


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.name)
def test_live_run_matches_golden(sc: Scenario) -> None:
    sim = sc.drive()
    for wf_id in sc.ids:
        live = [strip_stacks(e) for e in sim.history(wf_id)]
        p = path_of(sc, wf_id)
        if REGEN or not p.exists():
            HERE.mkdir(exist_ok=True)
            dump_history(p, live, case=sc.name)
        assert load_history(p) == live, f"{p.name}: the live run no longer records the golden history"


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.name)
def test_golden_replays_without_divergence(sc: Scenario) -> None:
    for wf_id in sc.ids:
        events = load_history(path_of(sc, wf_id))
        result = replay_history(registry(), events, strict=True)
        assert result.ok, str(result)
        # and a resident execution rebuilt from it is in the recorded state
        ex = WorkflowExecution.from_history(registry(), wf_id, events)
        assert ex.load_failure is None
        assert ex.status == result.status
        assert ex.next_seq == events[-1].seq + 1


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.name)
def test_mutated_code_diverges_at_the_right_seq(sc: Scenario) -> None:
    wf_id, pred = sc.diverges
    events = load_history(path_of(sc, wf_id))
    expected_seq = next(e.seq for e in events if pred(e))
    g.MUTATIONS.add(sc.mutation)
    result = replay_history(registry(), events)
    assert result.divergence is not None, f"mutation {sc.mutation!r} was not detected: {result}"
    d = result.divergence
    assert d.seq == expected_seq, str(d)
    assert d.workflow_id == wf_id and d.run_id == next(e.run_id for e in events if e.seq == expected_seq)
    assert d.expected and d.found and d.expected != d.found
    # from_history does not raise: the execution is held and records the divergence next step
    ex = WorkflowExecution.from_history(registry(), wf_id, events)
    if ex.status == "RUNNING" or ex.held:
        assert ex.held and ex.load_failure is not None


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.name)
def test_non_resident_engine_records_the_same_history(sc: Scenario) -> None:
    """Rebuilding every workflow from its history before each command (a cold cache, a
    rebalance on every step) records exactly what a resident instance records."""
    from runtime_sim import Sim

    Sim.RESIDENT_DEFAULT = False
    try:
        sim = sc.drive()
    finally:
        Sim.RESIDENT_DEFAULT = True
    for wf_id in sc.ids:
        assert [strip_stacks(e) for e in sim.history(wf_id)] == load_history(path_of(sc, wf_id))
