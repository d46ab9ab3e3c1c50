"""``python -m aion.bench.resident``: the memory one resident workflow costs an engine worker,
the figure to size ``AION_CACHE_SIZE`` (resident workflows per worker) with.

No broker: the engine's step (``WorkflowExecution``) runs in this process. ``--workflows`` order
sagas (``aion.examples.order_saga``) are started and each is stepped until it waits on its first
activity — the state a resident workflow is in most of its life — then the Python heap that holds
them is measured (``tracemalloc``: the executions, their workflow objects, coroutines and
histories, not the RocksDB tables) and divided by their number. Repeated ``--runs`` times; the
median is printed.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from datetime import timedelta

from ..converter import default_converter
from ..examples.order_saga import (OrderRequest, OrderSaga, charge_card, refund_card, release_inventory,
                                   reserve_inventory, ship_order)
from .. import workflow
from ..model import Command, FireTimer, StartWorkflow
from ..runtime import Registry, WorkflowExecution
from ..runtime.effects import ScheduleTimer


@workflow.defn(name="aion.bench.Ticker")
class Ticker:
    """``n`` one-second timers, one after the other, then one more that the replay waits on."""

    @workflow.run
    async def run(self, n: int) -> int:
        for _ in range(n + 1):
            await workflow.sleep(timedelta(seconds=1))
        return n


def replay_cost(events: int) -> tuple[float, int]:
    """(microseconds per event, events) of rebuilding a Ticker with about ``events`` events."""
    registry = Registry(workflows=[Ticker])
    conv = default_converter()
    ex = WorkflowExecution.new(registry, "ticker")
    now = 1_000
    step = ex.handle(Command("start", "ticker", now, StartWorkflow("aion.bench.Ticker",
                                                                   conv.to_payloads([events // 2]))), now)
    for i in range(events // 2):
        timer = next(e for e in step.effects if isinstance(e, ScheduleTimer))
        now = timer.fire_at_ms
        step = ex.handle(Command(f"fire-{i}", "ticker", now, FireTimer(run_id=timer.run_id, timer_id=timer.timer_id,
                                                                        fire_at_ms=timer.fire_at_ms)), now)
    history = list(ex.history)
    t0 = time.perf_counter()
    again = WorkflowExecution.from_history(registry, "ticker", history)
    took = time.perf_counter() - t0
    assert again.run is not None and again.run.status == "RUNNING"
    return took * 1e6 / len(history), len(history)


def per_workflow(n: int) -> tuple[float, int]:
    """(bytes per resident workflow, events per workflow) over ``n`` order sagas."""
    registry = Registry(workflows=[OrderSaga],
                        activities=[reserve_inventory, charge_card, ship_order, refund_card, release_inventory])
    conv = default_converter()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    resident = []
    events = 0
    for i in range(n):
        wid = f"order-{i}"
        ex = WorkflowExecution.new(registry, wid)
        args = conv.to_payloads([OrderRequest(order_id=wid, sku="sku-1", quantity=1, amount_cents=500)])
        step = ex.handle(Command(f"start-{i}", wid, 1_000, StartWorkflow("OrderSaga", args)), 1_000)
        events += len(step.events)
        resident.append(ex)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n, events // n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m aion.bench.resident", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workflows", type=int, default=5_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--events", type=int, default=2_000, help="history length of the cache-miss replay")
    a = ap.parse_args(argv)
    figures = [per_workflow(a.workflows) for _ in range(a.runs)]
    per = statistics.median(f[0] for f in figures)
    print(f"resident order saga waiting on its first activity ({figures[0][1]} events): "
          f"{per / 1024:.1f} KiB each (median of {a.runs} runs of {a.workflows}); "
          f"AION_CACHE_SIZE=10000 (the default) holds about {per * 10_000 / 2**20:.0f} MiB, "
          f"100,000 resident about {per * 100_000 / 2**30:.2f} GiB")
    costs = [replay_cost(a.events) for _ in range(a.runs)]
    print(f"cache miss: rebuilding a workflow from its history costs {statistics.median(c[0] for c in costs):.1f} µs "
          f"per event (median of {a.runs} rebuilds of {costs[0][1]} events; the RocksDB read and Avro decode "
          f"of the events come on top)")


if __name__ == "__main__":
    main()
