"""``python -m aion.bench.step`` (the engine's CPU per workflow on its batch path, no broker)
runs end to end, so that the benchmark cannot rot: every workflow it starts completes through
the real engine, and it reports a positive cost. No timing threshold (machines differ)."""

from __future__ import annotations

from aion.bench.step import measure


async def test_the_step_benchmark_runs_workflows_to_completion() -> None:
    per_workflow_us = await measure(workflows=30, batch=4, rounds=2)
    assert len(per_workflow_us) == 2 and all(us > 0 for us in per_workflow_us)
