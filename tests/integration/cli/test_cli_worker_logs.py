"""Workers that say what they do: the installed ``aion worker`` and ``aion activity-worker`` at
their default log level, run from a user's project folder.

* Healthy (the session broker): the engine worker prints one ``engine worker ready`` line and
  none of Faust's internals, no ERROR line; the activity worker logs its failed and retried
  attempts at INFO.
* Broker down (a kafka-local broker of this test's own on free ports, stopped under the running
  workers): a few rate-limited lines per kind, through logging, instead of librdkafka's stderr
  flood (1,100 and 1,900 lines in 40 s before).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from aion.testing.ports import free_ports
from _cli import REPO, Installed, Workers, run, write_myapp

KAFKA_LOCAL = REPO / "docker" / "kafka-local" / "kafka-local"

#: An activity that fails on its first attempt and succeeds on the retry, and its workflow.
RETRY_MODULE = '''
from datetime import timedelta

from aion import RetryPolicy, activity, workflow
from aion.exceptions import ApplicationError


@activity.defn
async def reserve(item: str) -> str:
    if activity.info().attempt == 1:
        raise ApplicationError("the stock service timed out")
    return f"reserved {item}"


@workflow.defn
class Reserve:
    @workflow.run
    async def run(self, item: str) -> str:
        return await workflow.execute_activity(
            reserve, item, start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200)))
'''


def _wait_for(workers: Workers, text: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while text not in workers.logs():
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} not logged within {timeout:g} s:\n{workers.logs()}", pytrace=False)
        time.sleep(0.3)


def _log(workers: Workers, i: int) -> str:
    return workers.procs[i][1].read_text(errors="replace")


def _start_workers(installed: Installed, project: Path, env: dict[str, str]) -> Workers:
    pkg = write_myapp(project)
    (pkg / "retry.py").write_text(RETRY_MODULE)
    res = run(installed, "topics", "create", cwd=project, env=env)
    assert res.returncode == 0, res.stderr
    workers = Workers(installed, project, env)
    workers.start("worker", "--workflows", "myapp.workflows", "--workflows", "myapp.retry")  # default level
    workers.start("activity-worker", "--activities", "myapp.activities", "--activities", "myapp.retry")
    return workers


def test_healthy_workers_say_ready_and_log_attempts_without_errors(installed: Installed, project: Path,
                                                                  myapp_env: dict[str, str]) -> None:
    workers = _start_workers(installed, project, myapp_env)
    try:
        _wait_for(workers, "engine worker ready")
        res = run(installed, "workflow", "execute", "Reserve", '"book"', "--id", "r-1", "--timeout", "90",
                  cwd=project, env=myapp_env, timeout=120)
        assert res.returncode == 0 and res.stdout.strip() == "reserved book", res.stderr + workers.logs()
        res = run(installed, "workflow", "execute", "Order", '{"id": "o-2", "cents": -5}', "--id", "o-2",
                  "--timeout", "90", cwd=project, env=myapp_env, timeout=120)
        assert res.returncode == 3, res.stderr + workers.logs()
        _wait_for(workers, "of charge of workflow o-2")
    finally:
        workers.stop()
    engine, acts = _log(workers, 0), _log(workers, 1)
    prefix = myapp_env["AION_TOPIC_PREFIX"]
    ready = [ln for ln in engine.splitlines() if "engine worker ready" in ln]
    assert ready, engine  # one, or one per rebalance that gave it partitions
    started = [p for ln in ready for p in ln.split("partitions [", 1)[1].split("]", 1)[0].split(", ")]
    assert len(started) == len(set(started)), ready  # each partition started once (not twice at once)
    assert f"engine worker ready: partitions [0, 1] of {prefix}.commands (tables caught up" in ready[0]
    assert "workflow types: Buggy, Order, Patient, Reserve, aion.Schedule" in ready[0]
    assert "[ERROR]" not in engine and "[ERROR]" not in acts, workers.logs()
    # Faust's, mode's and aiokafka's internals stay at DEBUG; librdkafka never writes to stderr.
    for internal in ("]: Starting...", "Subscribed to topic", "Joined group", "[^Worker]", "%3|", "%4|"):
        assert internal not in engine, (internal, engine)
    assert "%3|" not in acts and "%4|" not in acts, acts
    assert re.search(r"\[INFO\] attempt 1 of reserve of workflow r-1 \(activity 1\) failed: "
                     r"ApplicationError: the stock service timed out\n", acts), acts
    assert re.search(r"\[INFO\] retrying reserve of workflow r-1 \(activity 1\): attempt 2\n", acts), acts
    assert re.search(r"\[INFO\] attempt 1 of charge of workflow o-2 \(activity 1\) failed: ApplicationError: "
                     r"cannot charge -5 cents \(non-retryable\)\n", acts), acts


def _own_broker(data: Path, action: str, port: int, controller: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_LOCAL_")}
    env.update(KAFKA_LOCAL_PORT=str(port), KAFKA_LOCAL_CONTROLLER_PORT=str(controller), KAFKA_LOCAL_DIR=str(data))
    return subprocess.run([str(KAFKA_LOCAL), action], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("java") is None, reason="Java is not installed: no kafka-local broker of our own")
def test_a_broker_outage_is_a_few_rate_limited_lines(installed: Installed, project: Path, myapp_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    port = free_ports(2)
    controller = port + 1
    data = tmp_path / "kafka"
    res = _own_broker(data, "start", port, controller)
    assert res.returncode == 0, f"kafka-local start (this test's own broker) failed:\n{res.stdout}{res.stderr}"
    env = dict(myapp_env, AION_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}")
    workers: Workers | None = None
    try:
        workers = _start_workers(installed, project, env)
        _wait_for(workers, "engine worker ready")
        _wait_for(workers, "] assigned [")
        res = _own_broker(data, "stop", port, controller)
        assert res.returncode == 0, res.stdout + res.stderr
        time.sleep(25)  # both workers keep trying to reach the broker
        engine, acts = _log(workers, 0), _log(workers, 1)
    finally:
        if workers is not None:
            workers.stop()
        _own_broker(data, "stop", port, controller)
        shutil.rmtree(data, ignore_errors=True)
    for name, text in (("engine worker", engine), ("activity worker", acts)):
        lines = text.splitlines()
        # before: 1,100 (engine) and 1,900 (activity worker) lines in 40 s, mostly librdkafka's
        assert len(lines) < 120, f"{name}: {len(lines)} lines in 25 s of outage:\n{text[-4000:]}"
        assert not any(ln.startswith("%") for ln in lines), f"{name}: librdkafka wrote to stderr:\n{text[-4000:]}"
        assert f"127.0.0.1:{port}" in text and "Connection refused" in text, text  # still said, through logging
        kinds: dict[str, int] = {}
        for ln in lines:
            if "[ERROR]" in ln:
                kind = re.sub(r"\d+", "#", ln.split("[ERROR]", 1)[1])
                kinds[kind] = kinds.get(kind, 0) + 1
        assert kinds and max(kinds.values()) <= 3, f"{name}: an error kind said more than 3 times: {kinds}"
