"""Versions of a small workflow package, written to a folder for the deploy tests."""

from __future__ import annotations

from pathlib import Path

FLOWS = '''
from aion import workflow
from {root}.helpers import PREFIX


@workflow.defn
class Greeter:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def release(self) -> None:
        self.go = True

    @workflow.query
    def version(self) -> str:
        return PREFIX

    @workflow.run
    async def run(self, name: str) -> str:
        {extra}await workflow.wait_condition(lambda: self.go)
        return f"{{PREFIX}}: hello {{name}}"


@workflow.defn
class Looper:
    @workflow.run
    async def run(self, n: int, pause: float = 1.0) -> str:
        if n > 0:
            await workflow.sleep(pause)
            workflow.continue_as_new(n - 1, pause)
        return PREFIX
'''


def write_version(base: Path, version: str, root: str = "verapp", *, broken: bool = False,
                  incompatible: bool = False) -> Path:
    """``base/<version>/<root>/``: a package whose workflows answer ``version``; ``incompatible``:
    its Greeter sleeps before it waits (a command its earlier histories do not hold)."""
    pkg = base / version / root
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text(f"PREFIX = {version!r}\n" + ("import no_such_module_anywhere\n" if broken else ""))
    extra = "await workflow.sleep(0.1)\n        " if incompatible else ""
    (pkg / "flows.py").write_text(FLOWS.format(root=root, extra=extra))
    return pkg
