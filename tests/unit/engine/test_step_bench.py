"""``python -m aion.bench.step`` (the engine's CPU per workflow on its batch path, no broker)
runs end to end, so that the benchmark cannot rot: every workflow it starts completes through
the real engine, and it reports a positive cost. No timing threshold (machines differ)."""

from __future__ import annotations

from aion.bench.step import measure


async def test_the_step_benchmark_runs_workflows_to_completion() -> None:
    per_workflow_us = await measure(workflows=30, batch=4, rounds=2)
    assert len(per_workflow_us) == 2 and all(us > 0 for us in per_workflow_us)


def test_an_engine_worker_tunes_its_garbage_collector() -> None:
    """What ``aion worker`` does before it runs (``engine.worker.tune_gc``), in a fresh
    interpreter: the start-up's objects frozen out of later collections, higher thresholds."""
    import subprocess
    import sys

    code = ("import gc; from aion.engine.worker import GC_THRESHOLD, tune_gc; tune_gc(); "
            "print(gc.get_threshold() == GC_THRESHOLD, gc.get_freeze_count() > 10_000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]


def test_the_dispose_benchmark_runs() -> None:
    """``python -m aion.bench.dispose`` runs (it checks that both ways find the same tasks)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "aion.bench.dispose", "--resident", "50", "--repeats", "5"],
                         capture_output=True, text=True, check=True).stdout
    assert "WorkflowEventLoop.tasks()" in out
