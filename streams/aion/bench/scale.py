"""``aion bench scale`` (also ``python -m aion.bench.scale``): what reads cost at a million.

Runs, one after the other, each in a process of its own on the broker of the settings
(``AION_BOOTSTRAP_SERVERS``):

- ``aion.bench.history --others N``: one workflow's history, served by its engine, with N
  events of other workflows on its partition (goal ≤ 50 ms), against reading the partition;
- ``aion.bench.visibility --workflows N``: the first page of RUNNING workflows of one type
  among N workflows (goal ≤ 200 ms), their count, a count the index cannot narrow, against
  reading the changelog; then the engine's side alone (``--no-broker``);
- ``aion.bench.chain``: a cache miss of a workflow on its 100th continue-as-new run against
  its first (no broker).

Each part prints its own figures; ``--events`` sets N (default 1,000,000).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def parts(n: int, repeats: int) -> list[tuple[str, list[str]]]:
    return [
        ("history", ["aion.bench.history", "--others", str(n), "--repeats", str(repeats)]),
        ("visibility", ["aion.bench.visibility", "--workflows", str(n), "--repeats", str(repeats)]),
        ("visibility, the engine's side", ["aion.bench.visibility", "--no-broker", "--workflows", str(n),
                                           "--repeats", str(repeats)]),
        ("continue-as-new cache miss", ["aion.bench.chain"]),
    ]


def run(n: int = 1_000_000, repeats: int = 5, bootstrap: str | None = None) -> int:
    """Run every part; returns how many failed."""
    env = dict(os.environ)
    if bootstrap:
        env["AION_BOOTSTRAP_SERVERS"] = bootstrap
    failed = 0
    for title, args in parts(n, repeats):
        print(f"== {title}: python -m {' '.join(args)}", flush=True)
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", *args], env=env)
        print(f"   ({'ok' if res.returncode == 0 else f'FAILED, exit {res.returncode}'} in "
              f"{time.monotonic() - t0:.0f} s)\n", flush=True)
        failed += res.returncode != 0
    return failed


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events of other workflows, and workflows listed")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    sys.exit(1 if run(a.events, a.repeats) else 0)


if __name__ == "__main__":
    main()
