"""``python -m aion.bench.dispose``: what finding a workflow run's pending tasks costs when its
instance is disposed (continue-as-new, a run's timeout or termination, a replay) with
``--resident`` other workflow loops in the process, each with ``--tasks`` pending tasks.

``asyncio.all_tasks(loop)`` walks every task of the process and keeps the loop's;
``WorkflowEventLoop.tasks()`` (what ``WorkflowInstance.dispose`` uses) keeps each loop's own.
Prints the median of ``--repeats`` calls of each, no broker."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any, Callable, Coroutine, Sequence

from ..runtime._loop import WorkflowEventLoop


class _Runtime:
    def _check_conditions(self) -> bool:
        return False


async def _waits(fut: asyncio.Future[None]) -> None:
    await fut


def workflow_loop(waiters: Sequence[Callable[[asyncio.Future[None]], Coroutine[Any, Any, None]]]
                  ) -> tuple[WorkflowEventLoop, list[asyncio.Task[None]]]:
    """A workflow loop (no run behind it) with one task per ``waiters``, each awaiting a future
    of its own that nothing resolves: pending, as a resident workflow's tasks are."""
    loop = WorkflowEventLoop(_Runtime())  # type: ignore[abstract]  # the methods workflow code may call are there
    held = [loop.create_task(w(loop.create_future())) for w in waiters]
    prev = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(loop)
    try:
        loop.run_until_quiescent()
    finally:
        asyncio.events._set_running_loop(prev)
    return loop, held


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m aion.bench.dispose", description=__doc__.split("\n\n")[0])
    ap.add_argument("--resident", type=int, default=10_000, help="other workflow loops (default 10000)")
    ap.add_argument("--tasks", type=int, default=3, help="pending tasks per loop (default 3)")
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    resident = [workflow_loop([_waits] * args.tasks) for _ in range(args.resident)]
    walk, own = [], []
    for _ in range(args.repeats):
        loop, held = workflow_loop([_waits] * args.tasks)
        t0 = time.perf_counter()
        a = asyncio.all_tasks(loop)
        t1 = time.perf_counter()
        b = loop.tasks()
        t2 = time.perf_counter()
        assert a == set(b)
        walk.append(t1 - t0)
        own.append(t2 - t1)
        resident.append((loop, held))
    print(f"a run's pending tasks with {args.resident:,} resident loops of {args.tasks} tasks: "
          f"asyncio.all_tasks(loop) {statistics.median(walk) * 1e6:,.0f} µs, "
          f"WorkflowEventLoop.tasks() {statistics.median(own) * 1e6:,.1f} µs (medians of {args.repeats})")


if __name__ == "__main__":
    main()
