"""Benchmarks: throughput, latency, timer lag, rebuild speed and recovery time, side by side
with the Kafka floor (the same message pattern with bare producers and consumers).

Run them with ``aion bench [scenario]`` or ``python -m aion.bench``; :func:`run_bench` is the
programmatic entry point (the CLI and the smoke tests call it).
"""

from ._runner import SCENARIOS, BenchOptions, run_bench

__all__ = ["SCENARIOS", "BenchOptions", "run_bench"]
