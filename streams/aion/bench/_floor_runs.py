"""Floor scenarios: the same load as the engine scenarios, on the bare-Kafka pattern."""

from __future__ import annotations

from typing import Any

from ..common.settings import Settings
from ._deploy import Deployment, wait_ready
from ._engine_runs import _measure
from ._floor import FloorDriver
from ._load import Progress, closed_loop, open_loop
from ._stats import latency_summary


def _start_roles(deploy: Deployment, txn: bool) -> None:
    deploy.procs.python("floor_engine", ["aion.bench._floor", "engine-txn" if txn else "engine"])
    deploy.procs.python("floor_worker", ["aion.bench._floor", "worker"])


async def floor_throughput(base: Settings, *, duration: float, warmup: float, concurrency: int,
                           progress: Progress | None = None, keep: bool = False, txn: bool = False) -> dict[str, Any]:
    with Deployment(base, "floor", keep=keep) as deploy:
        _start_roles(deploy, txn)
        driver = FloorDriver(deploy.settings)
        await driver.start()
        try:
            await wait_ready(driver.run_one, deploy)
            res, cpu, events = await _measure(deploy, deploy.settings, warmup, closed_loop(
                driver, concurrency=concurrency, duration=duration, warmup=warmup, progress=progress))
            deploy.procs.check_alive()
        finally:
            await driver.close()
    window = res.t_end - res.t0 - warmup
    return {
        "workflows_per_s": round(res.rate(), 1),
        "events_per_s": round(events / max(1e-6, window), 1),
        "completed": len(res.completed_in_window()),
        "errors": res.errors,
        "latency": latency_summary(res.latencies()),
        "cpu": cpu,
        "concurrency": concurrency,
        "duration_s": round(window, 1),
    }


async def floor_latency(base: Settings, *, duration: float, warmup: float, rates: list[float],
                        progress: Progress | None = None, keep: bool = False, txn: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"rates": {}}
    with Deployment(base, "floorlat", keep=keep) as deploy:
        _start_roles(deploy, txn)
        driver = FloorDriver(deploy.settings)
        await driver.start()
        try:
            await wait_ready(driver.run_one, deploy)
            first = 0
            for rate in rates:
                res = await open_loop(driver, rate=rate, duration=duration, warmup=warmup, progress=progress,
                                      first_index=first)
                first += res.started + 1
                summary = latency_summary(res.latencies())
                summary["achieved_per_s"] = round(res.rate(), 1)
                summary["errors"] = res.errors
                out["rates"][f"{rate:g}/s"] = summary
            deploy.procs.check_alive()
        finally:
            await driver.close()
    return out
