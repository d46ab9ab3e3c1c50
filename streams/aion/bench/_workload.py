"""The workflow every engine scenario runs: one activity, the smallest useful unit of work.

Engine and activity worker processes load this module (``--workflows aion.bench._workload``).
"""

from __future__ import annotations

from datetime import timedelta

from .. import activity, workflow


@activity.defn
async def bench_echo(x: int) -> int:
    """Returns its input: the activity costs nothing, so the figures are the engine's."""
    return x


@workflow.defn
class BenchOne:
    """Runs :func:`bench_echo` once and returns its result."""

    @workflow.run
    async def run(self, x: int) -> int:
        return await workflow.execute_activity(bench_echo, x, start_to_close_timeout=timedelta(seconds=60))


MODULE = __name__
