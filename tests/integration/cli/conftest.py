"""The ``aion`` command as a user meets it: built into a wheel, installed into a fresh venv,
run as a subprocess from a project folder outside the source tree, against the real broker.

The venv is made with ``--system-site-packages`` so that the dependencies (faust, confluent-kafka,
rocksdict ...) come from the test environment instead of being downloaded again, and the wheel is
installed with ``--no-deps``; ``aion`` itself is the wheel's copy (the venv's site-packages comes
first on ``sys.path``), which ``test_cli_install.py`` checks.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from pathlib import Path

import pytest

from _cli import DIST_FILES, REPO, Installed, Workers, _checked, run, write_myapp


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A wheel built from a copy of the source, installed into a fresh venv: once per run, shared
    by the parallel workers (``pytest -n``) through the run's folder, which tests/conftest.py
    makes; the tests only run the venv's ``aion``, they change nothing in it."""
    run_dir = os.environ.get("AION_TEST_RUN_DIR")
    if not run_dir:
        return _build_installed(tmp_path_factory.mktemp("wheel"))
    root = Path(run_dir) / "wheel"
    with open(Path(run_dir) / "wheel.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker builds, the others wait and reuse
        if not (root / "built").exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            _build_installed(root)
            (root / "built").write_text("")
    return _installed_in(root)


def _build_installed(root: Path) -> Installed:
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "_schemas")
    for name in DIST_FILES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    _checked([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(src)])
    wheels = list((root / "dist").glob("aion_streams-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    _checked([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)])
    _checked([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
              "--no-deps", str(wheels[0])])
    return _installed_in(root)


def _installed_in(root: Path) -> Installed:
    wheels = list((root / "dist").glob("aion_streams-*.whl"))
    assert len(wheels) == 1, wheels
    return Installed(wheel=wheels[0], venv=root / "venv")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project folder, far from the source tree (the current directory of each run)."""
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture
def user_env(kafka_bootstrap: str) -> dict[str, str]:
    """The environment of a user's shell: the broker's address, nothing of the source tree."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "AION_SCHEMAS_DIR", "AION_TOPIC_PREFIX", "AION_DATA_DIR")}
    env["AION_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    return env


@pytest.fixture
def myapp_env(user_env: dict[str, str], topic_prefix: str, tmp_path: Path) -> dict[str, str]:
    """The user's shell for ``myapp``: this test's topics (deleted afterwards), its own tables."""
    return dict(user_env, AION_TOPIC_PREFIX=topic_prefix, AION_PARTITIONS="2", AION_DATA_DIR=str(tmp_path / "data"))


@pytest.fixture
def myapp_running(installed: Installed, project: Path, myapp_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """``myapp`` in ``project``, its topics created and both workers running (from ``project``)."""
    write_myapp(project)
    res = run(installed, "topics", "create", cwd=project, env=myapp_env)
    assert res.returncode == 0, res.stderr
    workers = Workers(installed, project, myapp_env)
    workers.start("worker", "--workflows", "myapp.workflows", "--loglevel", "warning")
    workers.start("activity-worker", "--activities", "myapp.activities")
    yield workers
    workers.stop()
