"""Measure Temporal's hello samples on Aion: ``python tests/temporal_samples/measure.py CHECKOUT [NAME ...]``.

``CHECKOUT`` is a clone of temporalio/samples-python (not part of this repository: nothing of
the samples is kept here). Each ``hello/hello_*.py`` is copied to a temporary folder with only
its ``temporalio`` imports changed — ``workflow``, ``activity``, ``exceptions``, ``common`` to
``aion``'s; ``client``, ``worker``, ``envconfig``, ``service`` (what ``main()`` uses to reach a
Temporal server) to ``_aion_harness``, which runs ``main()``'s client and ``Worker`` on one
``aion.testing.WorkflowEnvironment.start_time_skipping`` — then its ``main()`` runs in a
subprocess (``hello_patch`` once per version argument; ``hello_cron`` for 130 s with INFO logs,
since it runs forever). The output of each is printed for a reader to compare with what the
sample prints on Temporal; the README's "Coming from Temporal" records the verdicts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
STREAMS = HERE.parents[1] / "streams"
IMPORTS = [
    (r"^(\s*)from temporalio import (.*)$", r"\1from aion import \2"),
    (r"^(\s*)from temporalio\.common import (.*)$", r"\1from aion.common import \2"),
    (r"^(\s*)from temporalio\.exceptions import (.*)$", r"\1from aion.exceptions import \2"),
    (r"^(\s*)from temporalio\.(client|worker|envconfig|service) import (.*)$", r"\1from _aion_harness import \3"),
]
#: How each sample is run: extra argv, wall-clock limit, whether INFO logs are shown.
RUNS: dict[str, list[tuple[list[str], int, bool]]] = {
    "hello_patch": [(["v1"], 60, False), (["v2"], 60, False), (["v3"], 60, False)],
    "hello_cron": [([], 130, True)],
}


def rewrite(text: str) -> str:
    for pattern, repl in IMPORTS:
        text = re.sub(pattern, repl, text, flags=re.M)
    return text


def main(checkout: Path, names: list[str]) -> None:
    samples = sorted((checkout / "hello").glob("hello_*.py"))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        for src in samples:
            if names and src.stem not in names:
                continue
            text = rewrite(src.read_text())
            left = [ln.strip() for ln in text.splitlines() if "temporalio" in ln and not ln.strip().startswith("#")]
            (run_dir / src.name).write_text(text)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STREAMS), str(HERE), str(run_dir)])}
            for argv, limit, info in RUNS.get(src.stem, [([], 60, False)]):
                setup = "import logging; logging.basicConfig(level=logging.INFO); " if info else ""
                code = (f"{setup}import sys, asyncio; sys.argv = [{src.name!r}, *{argv!r}]; "
                        f"import {src.stem} as m; asyncio.run(m.main())")
                try:
                    p = subprocess.run([sys.executable, "-c", code], cwd=run_dir, env=env, capture_output=True,
                                       text=True, timeout=limit)
                    rc, out, err = str(p.returncode), p.stdout, p.stderr
                except subprocess.TimeoutExpired as e:
                    rc = f"stopped after {limit} s"
                    out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                    err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
                print(f"===== {src.stem} {' '.join(argv)}: exit {rc}" + (f"; temporalio left: {left}" if left else ""))
                print(out[-2000:].rstrip())
                if err.strip():
                    print("--- stderr (end):\n" + err[-1500:].rstrip())


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2:])
