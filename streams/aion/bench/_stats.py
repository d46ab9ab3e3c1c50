"""Small statistics helpers: percentiles of latencies, median and spread of repeated runs."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of already sorted values, nearest-rank; None when empty."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def latency_summary(latencies_s: Iterable[float]) -> dict[str, Any]:
    """p50/p95/p99/max in milliseconds (rounded to 0.1 ms) and the sample count."""
    xs = sorted(latencies_s)
    out: dict[str, Any] = {"count": len(xs)}
    for name, q in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99)):
        v = percentile(xs, q)
        out[name] = None if v is None else round(v * 1000, 1)
    out["max_ms"] = round(xs[-1] * 1000, 1) if xs else None
    return out


def median(values: Sequence[float]) -> float | None:
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def combine_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge repeated runs of one scenario: every numeric leaf becomes its median, and a
    ``spread`` dict holds ``[min, max]`` of each of them; non-numeric leaves come from run 1."""
    if len(runs) == 1:
        return dict(runs[0], runs=1)

    def merge(items: list[Any]) -> tuple[Any, Any]:
        first = items[0]
        if isinstance(first, dict):
            med: dict[str, Any] = {}
            spr: dict[str, Any] = {}
            for k in first:
                m, s = merge([it.get(k) if isinstance(it, dict) else None for it in items])
                med[k] = m
                if s is not None:
                    spr[k] = s
            return med, (spr or None)
        nums = [x for x in items if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if nums and len(nums) == len([x for x in items if x is not None]):
            m = median(nums)
            if all(isinstance(x, int) for x in nums) and m is not None and float(m).is_integer():
                m = int(m)
            return m, [min(nums), max(nums)]
        return first, None

    med, spread = merge(runs)
    med["runs"] = len(runs)
    med["spread"] = spread or {}
    return med


def ratio(value: float | None, floor: float | None, digits: int = 2) -> float | None:
    if value is None or not floor:
        return None
    return round(value / floor, digits)
