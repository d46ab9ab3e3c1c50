"""Installing: a wheel carries the Avro schemas (a build-time copy of ``schemas/``, the one
source) and the installed ``aion`` runs workflows on the real broker from any folder."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

from _cli import REPO, Installed, delete_topics, run, topics_with_prefix

SCHEMAS = REPO / "schemas"


def test_wheel_ships_a_copy_of_schemas_identical_to_the_source(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        packaged = {n[len("aion/_schemas/"):]: whl.read(n) for n in whl.namelist()
                    if n.startswith("aion/_schemas/") and not n.endswith("/")}
    source = {str(p.relative_to(SCHEMAS)): p.read_bytes() for p in SCHEMAS.rglob("*.avsc")}
    assert source, "no schema in schemas/"
    assert packaged == source
    # One source of truth: the package folder is made at build time, never kept in the tree.
    assert not (REPO / "streams" / "aion" / "_schemas").exists()


def test_installed_package_reads_its_own_schemas(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    code = "import aion, aion.codec as c; c.Codec(); print(aion.__file__); print(c.locate_schemas_dir())"
    res = subprocess.run([installed.python, "-c", code], cwd=project, env=user_env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    module, schemas = res.stdout.split()
    site = str(installed.venv / "lib")
    assert module.startswith(site), module
    assert schemas.startswith(site) and schemas.endswith("aion/_schemas"), schemas


def test_version(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    res = run(installed, "--version", cwd=project, env=user_env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"aion (aion-streams) {version}"


def test_installed_aion_lists_workflows_on_the_broker(installed: Installed, project, user_env, topic_prefix) -> None:  # type: ignore[no-untyped-def]
    env = dict(user_env, AION_TOPIC_PREFIX=topic_prefix, AION_PARTITIONS="2")
    res = run(installed, "topics", "create", cwd=project, env=env)
    assert res.returncode == 0, res.stderr
    assert f"prefix {topic_prefix!r}" in res.stdout
    res = run(installed, "workflow", "list", "--json", cwd=project, env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []


def test_installed_demo_runs_the_order_saga_on_the_broker(installed: Installed, project, user_env, kafka_bootstrap) -> None:  # type: ignore[no-untyped-def]
    res = run(installed, "demo", cwd=project, env=user_env, timeout=240)
    prefix = re.search(r"prefix '([^']+)'", res.stdout)
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        assert re.search(r"^result: .*", res.stdout, re.M), res.stdout
        assert "was declined" in res.stdout and "compensated: release_inventory" in res.stdout
        assert "WorkflowCompleted" in res.stdout and "WorkflowFailed" in res.stdout
        # It cleans up what it made: its topics and its folder of logs and tables.
        assert prefix, res.stdout
        assert topics_with_prefix(kafka_bootstrap, prefix.group(1)) == []
        folder = re.search(r"logs in (\S+)", res.stdout)
        assert folder and not Path(folder.group(1)).exists(), res.stdout
    finally:
        if prefix:
            delete_topics(kafka_bootstrap, prefix.group(1))


def test_demo_keep_keeps_its_topics(installed: Installed, project, user_env, kafka_bootstrap) -> None:  # type: ignore[no-untyped-def]
    res = run(installed, "demo", "--keep", cwd=project, env=user_env, timeout=240)
    prefix = re.search(r"prefix '([^']+)'", res.stdout)
    folder = re.search(r"logs in (\S+)", res.stdout)
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        assert prefix and f"{prefix.group(1)}.events" in topics_with_prefix(kafka_bootstrap, prefix.group(1))
        assert folder and Path(folder.group(1), "engine.log").is_file()
    finally:
        if prefix:
            delete_topics(kafka_bootstrap, prefix.group(1))
        if folder:
            shutil.rmtree(folder.group(1), ignore_errors=True)
