"""Engine scenarios: throughput, latency, recovery, rebuild (everything through real processes)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..client import Client
from ..common.settings import Settings
from ._deploy import Deployment, wait_ready
from ._load import LoadResult, Progress, closed_loop, open_loop
from ._procs import CpuMeter, broker_pid
from ._stats import latency_summary, median

#: Events one BenchOne workflow records: started, activity scheduled/started/completed, completed.
EVENTS_PER_WORKFLOW = 5


class EngineDriver:
    """Starts ``BenchOne`` workflows through the Kafka client and waits for their results."""

    def __init__(self, client: Client, tag: str) -> None:
        self.client = client
        self.tag = tag

    async def run_one(self, i: int) -> None:
        h = await self.client.start_workflow("BenchOne", i, id=f"{self.tag}-{i}")
        await h.result(timeout=300)


async def _connect(settings: Settings) -> Client:
    # A stalled engine (recovery) must not turn starts into RPC timeouts: they wait.
    return await Client.connect(settings=settings, rpc_timeout=300.0)


_ROLE_GROUPS = {"engine": "engine", "floor_engine": "engine",
                "activities": "activity_worker", "floor_worker": "activity_worker"}


def _meter(deploy: Deployment, settings: Settings) -> CpuMeter:
    import os

    pids: dict[str, list[int]] = {}
    for p in deploy.procs.procs:
        if p.alive() and p.role in _ROLE_GROUPS:
            pids.setdefault(_ROLE_GROUPS[p.role], []).append(p.pid)
    pids["load_generator"] = [os.getpid()]
    b = broker_pid(settings.bootstrap_servers)
    if b is not None:
        pids["broker"] = [b]
    return CpuMeter(pids)


async def _measure(deploy: Deployment, settings: Settings, warmup: float,
                   load: Any) -> tuple[LoadResult, dict[str, Any], int]:
    """Run the ``load`` coroutine with CPU/RSS metering; count the events appended after its
    warm-up."""
    meter = _meter(deploy, settings)
    task = asyncio.create_task(load)
    await asyncio.sleep(warmup)
    events_before = await deploy.aend_offsets(deploy.names.events)
    meter.begin()
    while not task.done():
        await asyncio.wait({task}, timeout=1.0)
        meter.sample()
    cpu = meter.end()
    res = task.result()
    events_after = await deploy.aend_offsets(deploy.names.events)
    return res, cpu, events_after - events_before


async def throughput(base: Settings, *, duration: float, warmup: float, concurrency: int, engines: int,
                     activity_workers: int, progress: Progress | None = None, keep: bool = False) -> dict[str, Any]:
    with Deployment(base, "tp", keep=keep) as deploy:
        s = deploy.settings
        for _ in range(engines):
            deploy.procs.engine()
        for _ in range(activity_workers):
            deploy.procs.activities()
        client = await _connect(s)
        try:
            driver = EngineDriver(client, "tp")
            ready_s = await wait_ready(driver.run_one, deploy)

            res, cpu, events = await _measure(deploy, s, warmup, closed_loop(
                driver, concurrency=concurrency, duration=duration, warmup=warmup, progress=progress))
            deploy.procs.check_alive()
        finally:
            await client.close()
    window = res.t_end - res.t0 - warmup
    return {
        "workflows_per_s": round(res.rate(), 1),
        "events_per_s": round(events / max(1e-6, window), 1),
        "completed": len(res.completed_in_window()),
        "errors": res.errors,
        "first_error": res.first_error,
        "latency": latency_summary(res.latencies()),
        "cpu": cpu,
        "concurrency": concurrency,
        "engines": engines,
        "activity_workers": activity_workers,
        "duration_s": round(window, 1),
        "startup_s": round(ready_s, 1),
    }


async def latency(base: Settings, *, duration: float, warmup: float, rates: list[float], engines: int,
                  activity_workers: int, progress: Progress | None = None, keep: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"engines": engines, "activity_workers": activity_workers, "rates": {}}
    with Deployment(base, "lat", keep=keep) as deploy:
        s = deploy.settings
        for _ in range(engines):
            deploy.procs.engine()
        for _ in range(activity_workers):
            deploy.procs.activities()
        client = await _connect(s)
        try:
            driver = EngineDriver(client, "lat")
            await wait_ready(driver.run_one, deploy)
            first = 0
            for rate in rates:
                res = await open_loop(driver, rate=rate, duration=duration, warmup=warmup, progress=progress,
                                      first_index=first)
                first += res.started + 1
                summary = latency_summary(res.latencies())
                summary["achieved_per_s"] = round(res.rate(), 1)
                summary["errors"] = res.errors
                summary["not_completed"] = len(res.pending)
                out["rates"][_rate_key(rate)] = summary
            deploy.procs.check_alive()
        finally:
            await client.close()
    return out


def _rate_key(rate: float) -> str:
    return f"{rate:g}/s"


async def recovery(base: Settings, *, duration: float, kills: int, rate: float, activity_workers: int,
                   progress: Progress | None = None, keep: bool = False, settle: float = 15.0,
                   deadline: float = 180.0, pause_s: float | None = None) -> dict[str, Any]:
    """Steady open-loop load on two engine workers; ``kills`` times: kill -9 the older one and
    measure how long the workflows it held stand still, then start a replacement and let the
    group settle.

    A kill's figure: over the workflows that were in flight at the kill or started in the
    ``PROBE_S`` seconds after it, the longest wait from the kill (or their start, if later)
    until they completed. A workflow on a surviving worker's partition waits a few
    milliseconds; one on the dead worker's partitions waits until another worker took them
    over, recovered their tables and went on, so the figure is the takeover time as a user
    sees it.

    ``pause_s``: instead of a kill, SIGSTOP the worker for that long (past the session
    timeout) and then SIGCONT it: the figure is how long the workflows of the stalled worker's
    partitions wait until another worker took them over (the stalled one, fenced, writes
    nothing when it wakes up and rejoins; no replacement is started).
    """
    settle = max(settle, duration / max(1, kills))
    what = "pause" if pause_s else "kill"
    results: list[dict[str, Any]] = []
    with Deployment(base, "rec", keep=keep) as deploy:
        s = deploy.settings
        deploy.procs.engine()
        deploy.procs.engine()
        for _ in range(activity_workers):
            deploy.procs.activities()
        client = await _connect(s)
        try:
            driver = EngineDriver(client, "rec")
            await wait_ready(driver.run_one, deploy)
            stop = asyncio.Event()
            live = LoadResult()
            load_task = asyncio.create_task(_live_open_loop(driver, rate, live, stop))
            await _sleep_progress(settle, progress, "two engine workers settling under load")
            for k in range(kills):
                victim = [p for p in deploy.procs.of("engine") if p.alive()][0]
                t_kill = time.monotonic()
                killed_at = time.time()
                if pause_s:
                    victim.pause()
                    loop = asyncio.get_running_loop()
                    loop.call_later(pause_s, victim.resume)
                else:
                    victim.kill9()
                    victim.killed = True  # type: ignore[attr-defined]
                await _sleep_progress(PROBE_S, progress, f"{what} {k + 1}/{kills}: probing")
                give_up = t_kill + deadline
                while time.monotonic() < give_up:
                    waiting = [st for st in live.pending.values() if st <= t_kill + PROBE_S]
                    if not waiting:
                        break
                    if progress is not None:
                        progress(time.monotonic() - t_kill, f"{what} {k + 1}/{kills}: {len(waiting)} workflows "
                                                            f"still waiting for a worker")
                    await asyncio.sleep(0.2)
                affected = [(st, end) for st, end, _ in live.done if t_kill - 60 <= st <= t_kill + PROBE_S and end >= t_kill]
                stuck = [st for st in live.pending.values() if st <= t_kill + PROBE_S]
                waits = sorted(end - max(st, t_kill) for st, end in affected)
                results.append({
                    "workflows_observed": len(affected) + len(stuck),
                    "still_waiting": len(stuck),
                    "seconds": round(waits[-1], 2) if waits and not stuck else (None if stuck else 0.0),
                    "p50_wait_s": round(median(waits) or 0.0, 3),
                    # Wall-clock time of the kill, to line the figure up with the processes' and
                    # the broker's logs (session expiry, rebalance, table recovery).
                    "killed_at_unix": round(killed_at, 3),
                })
                if pause_s:
                    await asyncio.sleep(max(0.0, t_kill + pause_s - time.monotonic()))
                    victim.resume()
                    await _sleep_progress(settle, progress, f"pause {k + 1}/{kills}: stalled worker rejoining")
                else:
                    deploy.procs.engine()
                    await _sleep_progress(settle, progress, f"kill {k + 1}/{kills}: replacement joining")
            stop.set()
            await load_task
        finally:
            await client.close()
    secs = [r["seconds"] for r in results if r["seconds"] is not None]
    return {
        "recovery_s_median": median(secs),
        "recovery_s_max": max(secs) if secs else None,
        "kills": results,
        "never_recovered": sum(1 for r in results if r["seconds"] is None),
        "fault": f"SIGSTOP for {pause_s:g} s, then SIGCONT" if pause_s else "kill -9",
        "deadline_s": deadline,
        "rate_per_s": rate,
        "engines": 2,
        "activity_workers": activity_workers,
        "errors": live.errors,
        "latency_overall": latency_summary(live.latencies(started_in_window=False)),
    }


#: Seconds after a kill whose new workflows count for the kill's figure.
PROBE_S = 5.0


async def _live_open_loop(driver: Any, rate: float, res: LoadResult, stop: asyncio.Event) -> None:
    from ._load import _one

    res.t0 = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()
    k = 0
    while not stop.is_set():
        due = res.t0 + k / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = asyncio.create_task(_one(driver, k, due, res))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        res.started += 1
        k += 1
    res.t_end = time.monotonic()
    if tasks:
        await asyncio.wait(set(tasks), timeout=30.0)
    for t in tasks:
        t.cancel()


async def _sleep_progress(seconds: float, progress: Progress | None, what: str) -> None:
    t0 = time.monotonic()
    while True:
        left = t0 + seconds - time.monotonic()
        if left <= 0:
            return
        if progress is not None:
            progress(time.monotonic() - t0, what)
        await asyncio.sleep(min(0.5, left))
