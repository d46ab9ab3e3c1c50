"""Load generators shared by the engine and the floor scenarios.

A *driver* is anything with ``async run_one(i) -> None`` that starts unit of work ``i`` (a
one-activity workflow, or the floor's bare message round) and returns once its result is back.

- :func:`closed_loop`: ``concurrency`` starters, each starting the next one as soon as its
  previous one completed (throughput);
- :func:`open_loop`: starts at a fixed rate whatever happens (latency); a start's latency is
  measured from the moment it was *due*, so a stalled system shows its full delay
  (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

Progress = Callable[[float, str], None]


class Driver(Protocol):
    async def run_one(self, i: int) -> None: ...


@dataclass
class LoadResult:
    """What one load phase saw; times are ``time.monotonic()`` values."""

    t0: float = 0.0
    t_end: float = 0.0
    warmup: float = 0.0
    #: (due/started at, completed at, index) of every completed unit.
    done: list[tuple[float, float, int]] = field(default_factory=list)
    #: index -> due/started at, of units not completed (yet).
    pending: dict[int, float] = field(default_factory=dict)
    errors: int = 0
    first_error: str | None = None
    started: int = 0

    def window(self) -> tuple[float, float]:
        return self.t0 + self.warmup, self.t_end

    def completed_in_window(self) -> list[tuple[float, float, int]]:
        a, b = self.window()
        return [d for d in self.done if a <= d[1] <= b]

    def rate(self) -> float:
        a, b = self.window()
        return len(self.completed_in_window()) / max(1e-6, b - a)

    def latencies(self, *, started_in_window: bool = True) -> list[float]:
        a, b = self.window()
        return [end - start for start, end, _ in self.done if not started_in_window or a <= start <= b]


async def _one(driver: Driver, i: int, start: float, res: LoadResult) -> None:
    res.pending[i] = start
    try:
        await driver.run_one(i)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # counted, the load goes on
        res.errors += 1
        if res.first_error is None:
            res.first_error = f"{type(exc).__name__}: {exc}"
        res.pending.pop(i, None)
        return
    res.pending.pop(i, None)
    res.done.append((start, time.monotonic(), i))


async def closed_loop(driver: Driver, *, concurrency: int, duration: float, warmup: float,
                      progress: Progress | None = None, first_index: int = 0) -> LoadResult:
    res = LoadResult(warmup=warmup)
    counter = iter(range(first_index, first_index + 10**12))
    stop_at = 0.0

    async def starter() -> None:
        while time.monotonic() < stop_at:
            i = next(counter)
            res.started += 1
            await _one(driver, i, time.monotonic(), res)

    res.t0 = time.monotonic()
    stop_at = res.t0 + warmup + duration
    tasks = [asyncio.create_task(starter()) for _ in range(concurrency)]
    await _report_until(stop_at, res, progress)
    res.t_end = time.monotonic()
    await _finish(tasks)
    return res


async def open_loop(driver: Driver, *, rate: float, duration: float, warmup: float,
                    progress: Progress | None = None, first_index: int = 0,
                    on_tick: Callable[[float], Awaitable[None] | None] | None = None) -> LoadResult:
    res = LoadResult(warmup=warmup)
    res.t0 = time.monotonic()
    stop_at = res.t0 + warmup + duration
    tasks: set[asyncio.Task[None]] = set()

    async def generator() -> None:
        k = 0
        while True:
            due = res.t0 + k / rate
            if due >= stop_at:
                return
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t = asyncio.create_task(_one(driver, first_index + k, due, res))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            res.started += 1
            k += 1

    gen = asyncio.create_task(generator())
    await _report_until(stop_at, res, progress)
    res.t_end = time.monotonic()
    await _finish([gen])
    # Let the last starts finish (they count for latency), but not for ever.
    if tasks:
        await asyncio.wait(set(tasks), timeout=10.0)
    await _finish(list(tasks))
    return res


async def _report_until(stop_at: float, res: LoadResult, progress: Progress | None) -> None:
    last_n, last_t = 0, time.monotonic()
    while True:
        now = time.monotonic()
        if now >= stop_at:
            return
        await asyncio.sleep(min(0.5, stop_at - now))
        if progress is not None:
            now = time.monotonic()
            n = len(res.done)
            rate = (n - last_n) / max(1e-6, now - last_t)
            last_n, last_t = n, now
            phase = "warm-up" if now < res.t0 + res.warmup else "measuring"
            progress(now - res.t0, f"{phase}: {n} done, {rate:.0f}/s, {len(res.pending)} in flight"
                                   + (f", {res.errors} errors" if res.errors else ""))


async def _finish(tasks: list[Any]) -> None:
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
