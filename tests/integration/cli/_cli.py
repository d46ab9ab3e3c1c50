"""Helpers of the CLI tests: the installed wheel, running ``aion``, topic clean-up."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
#: What a wheel is built from: the files of the distribution, nothing generated.
DIST_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "schemas", "streams")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def aion(self) -> str:
        return str(self.venv / "bin" / "aion")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")


def _checked(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}", pytrace=False)
    return res


def run(installed: Installed, *args: str, cwd: Path, env: dict[str, str],
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``aion ARGS`` as a user types it, in ``cwd``."""
    return subprocess.run([installed.aion, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def topics_with_prefix(bootstrap: str, prefix: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    return sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{prefix}."))


def delete_topics(bootstrap: str, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    names = topics_with_prefix(bootstrap, prefix)
    if names:
        for fut in AdminClient({"bootstrap.servers": bootstrap}).delete_topics(names, operation_timeout=10).values():
            try:
                fut.result()
            except Exception:
                pass
