"""The README's quick start, verbatim: ``bash docker/demo.sh`` in a fresh clone with a fresh
venv first on PATH (the script installs the project into it), against the session broker; and
the same with AION_BOOTSTRAP_SERVERS naming a broker that does not answer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _cli import DIST_FILES, REPO, delete_topics, topics_with_prefix

CLONE_FILES = (*DIST_FILES, "docker/demo.sh", "docker/kafka-local/kafka-local", "docker/kafka-local/pom.xml")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A copy of the project's tracked layout and a venv (with pip) whose bin/ leads PATH."""
    root = tmp_path_factory.mktemp("clone")
    src = root / "aion-streams"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "_schemas")
    for name in CLONE_FILES:
        path, dest = REPO / name, src / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, dest, ignore=ignore)
        else:
            shutil.copy2(path, dest)
    venv = root / "venv"
    res = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "AION_SCHEMAS_DIR", "AION_TOPIC_PREFIX", "AION_DATA_DIR",
                        "AION_BOOTSTRAP_SERVERS", "KAFKA_LOCAL_PORT", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return src, env


def test_demo_script_as_the_readme_says(clone, kafka_bootstrap) -> None:  # type: ignore[no-untyped-def]
    src, env = clone
    host, _, port = kafka_bootstrap.rpartition(":")
    if host in ("127.0.0.1", "localhost"):
        env = dict(env, KAFKA_LOCAL_PORT=port)  # the script finds the broker listening there
    else:
        env = dict(env, AION_BOOTSTRAP_SERVERS=kafka_bootstrap)
    res = subprocess.run(["bash", "docker/demo.sh"], cwd=src, env=env, capture_output=True, text=True, timeout=600)
    prefix = re.search(r"prefix '([^']+)'", res.stdout)
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        assert re.search(r"^result: ", res.stdout, re.M) and "was declined" in res.stdout, res.stdout
        assert prefix and topics_with_prefix(kafka_bootstrap, prefix.group(1)) == []
    finally:
        if prefix:
            delete_topics(kafka_bootstrap, prefix.group(1))
    # The project went into the venv on PATH, not anywhere else.
    aion = Path(env["PATH"].split(os.pathsep)[0]) / "aion"
    assert aion.is_file()


def test_demo_script_with_an_unreachable_broker_fails_in_one_line(clone) -> None:  # type: ignore[no-untyped-def]
    src, env = clone
    res = subprocess.run(["bash", "docker/demo.sh"], cwd=src, env=dict(env, AION_BOOTSTRAP_SERVERS="127.0.0.1:1"),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 6, res.stdout + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if not ln.startswith("WARNING: Running pip as")]
    assert len(errors) == 1 and errors[0].startswith("aion: Kafka broker unreachable at 127.0.0.1:1"), res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
