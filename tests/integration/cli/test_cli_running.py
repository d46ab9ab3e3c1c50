"""Running: workers import the user's modules from the current directory, import errors name
their real cause, the broker address follows KAFKA_LOCAL_PORT, the demo fails in one line."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from _cli import REPO, Installed, run, write_myapp

KAFKA_LOCAL = REPO / "docker" / "kafka-local" / "kafka-local"


def test_workers_import_myapp_from_the_current_directory(installed: Installed, project, myapp_env, myapp_running) -> None:  # type: ignore[no-untyped-def]
    res = run(installed, "workflow", "execute", "Order", '{"id": "o-1", "cents": 500}', "--id", "o-1",
              "--timeout", "90", "--json", cwd=project, env=myapp_env, timeout=120)
    assert res.returncode == 0, res.stderr + myapp_running.logs()
    assert json.loads(res.stdout) == "ch-o-1-500 auto"


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_missing_module_says_where_it_looked(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    res = run(installed, "worker", "--workflows", "shop.workflows", cwd=project, env=user_env)
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert "cannot import workflow module 'shop.workflows'" in line
    assert "no module 'shop'" in line and str(project) in line and "shop/" in line


def test_missing_dependency_is_not_a_missing_module(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    pkg = write_myapp(project)
    (pkg / "needs_dep.py").write_text("import surely_not_installed_dep\n")
    res = run(installed, "worker", "--workflows", "myapp.needs_dep", cwd=project, env=user_env)
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert "it imports 'surely_not_installed_dep', which is not installed" in line
    assert "current directory" not in line


def test_error_while_importing_names_the_exception_and_place(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    pkg = write_myapp(project)
    (pkg / "boom.py").write_text("x = 1\nraise RuntimeError('config file missing')\n")
    res = run(installed, "worker", "--workflows", "myapp.boom", cwd=project, env=user_env)
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert "RuntimeError: config file missing" in line and "boom.py:2" in line


def test_activity_worker_speaks_of_activity_modules(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    res = run(installed, "activity-worker", "--activities", "shop.activities", cwd=project, env=user_env)
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert "cannot import activity module 'shop.activities'" in line and "workflow module" not in line


def test_aion_follows_kafka_local_port(installed: Installed, project, user_env, kafka_bootstrap, topic_prefix) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in user_env.items() if k != "AION_BOOTSTRAP_SERVERS"}
    env["AION_TOPIC_PREFIX"] = topic_prefix
    res = run(installed, "workflow", "list", cwd=project, env=dict(env, KAFKA_LOCAL_PORT="1"))
    assert res.returncode == 6
    assert "127.0.0.1:1 (from KAFKA_LOCAL_PORT)" in one_line(res.stderr)
    host, port = kafka_bootstrap.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost"):
        return  # the port check above is the whole test for a broker elsewhere
    res = run(installed, "topics", "create", cwd=project, env=dict(env, KAFKA_LOCAL_PORT=port))
    assert res.returncode == 0, res.stderr
    assert f"prefix {topic_prefix!r}" in res.stdout


def test_kafka_local_start_prints_the_export_line(kafka_bootstrap) -> None:  # type: ignore[no-untyped-def]
    port = os.environ.get("KAFKA_LOCAL_PORT", "9092")
    status = subprocess.run([str(KAFKA_LOCAL), "status"], capture_output=True, text=True, timeout=60)
    if status.returncode != 0 or kafka_bootstrap != f"127.0.0.1:{port}":
        pytest.skip("the session broker is not kafka-local: `start` would start a second broker")
    # Already running: `start` waits until it answers and says so (it starts nothing).
    res = subprocess.run([str(KAFKA_LOCAL), "start"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"kafka-local: for aion: export AION_BOOTSTRAP_SERVERS=127.0.0.1:{port}" in res.stdout.splitlines()


def test_demo_with_an_unreachable_broker_fails_in_one_line(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    res = run(installed, "demo", cwd=project, env=dict(user_env, AION_BOOTSTRAP_SERVERS="127.0.0.1:1"))
    assert time.monotonic() - started < 10
    assert res.returncode == 6 and res.stdout == ""
    line = one_line(res.stderr)
    assert line.startswith("aion: Kafka broker unreachable at 127.0.0.1:1 (from AION_BOOTSTRAP_SERVERS)")


def test_activity_worker_says_what_it_runs(installed: Installed, project, myapp_env, myapp_running) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while "activity worker:" not in myapp_running.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    line = next(ln for ln in myapp_running.logs().splitlines() if ln.startswith("activity worker:"))
    assert line.startswith("activity worker: task queue 'default', concurrency 100, 2 activities: charge, flaky")
    assert myapp_env["AION_BOOTSTRAP_SERVERS"] in line and repr(myapp_env["AION_TOPIC_PREFIX"]) in line


@pytest.mark.parametrize("args", [["worker", "--workflows", "myapp.activities"],
                                  ["activity-worker", "--activities", "myapp"]], ids=lambda a: a[0])
def test_a_module_without_definitions_is_a_usage_error(installed: Installed, project, user_env, args) -> None:  # type: ignore[no-untyped-def]
    write_myapp(project)
    res = run(installed, *args, cwd=project, env=user_env)
    assert res.returncode == 2
    kind = "workflow.defn class" if args[0] == "worker" else "activity.defn function"
    assert f"no @{kind} in {args[2]}" in one_line(res.stderr)
