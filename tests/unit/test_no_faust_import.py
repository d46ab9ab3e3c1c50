"""Clients, activity workers and workflow code never load the engine's stack: importing them
imports no module of Faust, mode, aiokafka or rocksdict (each checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ENGINE_STACK = ("faust", "mode", "aiokafka", "rocksdict")


@pytest.mark.parametrize(
    "module",
    [
        "aion",
        "aion.client",
        "aion.workflow",
        "aion.activity",
        "aion.testing",
        "aion.worker",
        "aion.exceptions",
        # aion/engine/__init__.py promises these two to clients and activity workers.
        "aion.engine.settings",
        "aion.engine.topics",
    ],
)
def test_import_loads_no_faust_module(module: str) -> None:
    code = f"import {module}, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in {ENGINE_STACK!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"import {module} loaded {out.stdout.strip()}"


def test_the_check_sees_faust_when_it_is_loaded() -> None:
    code = f"import aion.engine._app, sys; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({ENGINE_STACK!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "faust" in out.stdout
