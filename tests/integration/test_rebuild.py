"""The events topic is the system of record: tables rebuilt from it, and replay against new code.

- ``aion rebuild`` rebuilds a stopped worker's tables (history, workflows, timers) from the
  events topic, refuses while the worker runs, reports digests, and the worker resumes on the
  rebuilt tables (a timer armed before the rebuild fires after it);
- a worker whose data folder was deleted recovers from the topics on start and serves the
  same workflows;
- ``aion replay check --from-topic`` passes with the code that wrote the histories and fails
  (exit 1, the seq named) with changed code.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from faust.stores.rocksdb import RocksDBOptions

from aion.client import QueryTimeoutError

from _procs import HERE, Cluster


def aion(cluster: Cluster, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aion.cli", *args], env=env or cluster.env,
                          capture_output=True, text=True, timeout=timeout)


def tables(data_dir: Path) -> Path:
    return data_dir / "v1" / "tables"


async def wait_for(pred, timeout: float = 60.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await pred()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_rebuild_refuses_a_running_worker_then_rebuilds_and_the_worker_resumes(cluster, client, settings, tmp_path):  # type: ignore[no-untyped-def]
    engine = cluster.engine("engine")
    cluster.activities()
    data = tmp_path / "engine"
    hello = await client.start_workflow("Hello", "rebuild", id="rb-hello")
    assert await hello.result(timeout=90) == "Hello, rebuild!"
    approval = await client.start_workflow("Approval", 1, id="rb-approval")
    # Its timer fires after the rebuild: 40 s leave room for a slow machine (4 test processes on
    # 2 cores); the test waits for it at the end anyway.
    sleeper = await client.start_workflow("Sleeper", 40, id="rb-sleeper")
    assert await query(approval, "status") == "waiting:0"

    async def sleeper_armed() -> bool:
        return "TimerStarted" in [e.type for e in await sleeper.history()]

    await wait_for(sleeper_armed, what="the sleeper's TimerStarted")
    n_events = sum([len(await h.history()) for h in (hello, approval, sleeper)])

    # While the worker runs, its RocksDB folders are locked: the rebuild refuses, touching nothing.
    out = aion(cluster, "rebuild", "--data-dir", str(data))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "refusing to rebuild" in out.stderr and "Stop that worker first" in out.stderr
    assert not list((data / "v1").glob("replaced-*"))

    engine.stop()
    assert not engine.alive()

    # Damage the local tables: a lost visibility row and a stale timer row.
    opts = RocksDBOptions()
    from aion.codec import partition_for

    p = partition_for("rb-approval", settings.partitions)
    db = opts.open(tables(data) / f"workflows-{p}.db")
    assert db.get(b"rb-approval") is not None
    db.delete(b"rb-approval")
    db.close()
    db = opts.open(tables(data) / f"timers-{p}.db")
    db.put(b"\x00\x00\x00\x00\x00\x00\x00\x01stale\x00run\x00t", b"1")
    db.close()

    out = aion(cluster, "rebuild", "--data-dir", str(data), "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["swapped"] and report["events"] == n_events
    assert report["partitions"] == list(range(settings.partitions))
    digests = {d["table"]: d for d in report["digests"]}
    assert digests["history"]["matches"] and digests["history"]["new_rows"] == n_events
    assert not digests["workflows"]["matches"] and digests["workflows"]["only_new"] == 1
    assert digests["workflows"]["new_rows"] == 3
    assert not digests["timers"]["matches"] and digests["timers"]["only_old"] == 1
    assert digests["timers"]["new_rows"] == 1  # the sleeper's timer
    assert "partitions" in out.stderr and "events/s" in out.stderr  # the progress bar
    backup = Path(report["backup_dir"])
    assert (backup / f"workflows-{p}.db").is_dir()

    # Byte-compatible with Faust's store: same paths, Faust's persisted offset = last record read.
    db = opts.open(tables(data) / f"workflows-{p}.db")
    row = json.loads(db.get(b"rb-approval"))
    assert row["status"] == "RUNNING" and row["workflow_type"] == "Approval"
    db.close()
    hp = partition_for("rb-hello", settings.partitions)
    db = opts.open(tables(data) / f"history-{hp}.db")
    assert int(db.get(b"__faust\x00offset__")) == report["offsets"]["history"][str(hp)]
    db.close()

    # Rebuilding again finds nothing to fix — also when worker processes derive the partitions.
    out = aion(cluster, "rebuild", "--data-dir", str(data), "--no-swap", "--processes", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "digests match" in out.stdout and out.stdout.count(" match") >= 3, out.stdout

    # The worker resumes on the rebuilt tables: queries, signals, and the timer armed before.
    cluster.engine("engine")
    assert await query(approval, "status") == "waiting:0"
    await approval.signal("decide", "after-rebuild")
    assert await approval.result(timeout=90) == ["after-rebuild"]
    assert await sleeper.result(timeout=90) == "rested"
    fired = [e for e in await sleeper.history() if e.type == "TimerFired"]
    assert len(fired) == 1


async def test_deleted_data_folder_is_rebuilt_on_start_and_replay_check_gates_code_changes(cluster, client, settings, tmp_path):  # type: ignore[no-untyped-def]
    engine = cluster.engine("engine")
    approval = await client.start_workflow("Approval", 2, id="dd-approval")
    await approval.signal("decide", "first")
    counter = await client.start_workflow("Counter", 0, 2, id="dd-counter")
    assert await counter.result(timeout=60) == 2
    await wait_for(lambda: _status_is(approval, "waiting:1"), what="the first decision")
    before = await approval.history()
    engine.stop()

    shutil.rmtree(tmp_path / "engine")
    cluster.engine("engine")  # same data folder, now empty: Faust recovers from the topics
    assert await query(approval, "status") == "waiting:1"
    await approval.signal("decide", "second")
    assert await approval.result(timeout=90) == ["first", "second"]
    after = await approval.history()
    assert after[: len(before)] == before  # the same history, continued
    assert [e.seq for e in after] == list(range(1, len(after) + 1))
    assert (tables(tmp_path / "engine")).is_dir()

    # Deploy gate: the code that wrote the histories replays them all ...
    out = aion(cluster, "replay", "check", "--from-topic", "--workflows", "engine_workflows")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "checked 2 workflow(s)" in out.stdout and "0 diverged" in out.stdout

    # ... a changed Approval (it now sleeps before waiting) does not.
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "changed_workflows.py").write_text(textwrap.dedent('''
        from datetime import timedelta
        from aion import workflow
        from engine_workflows import Counter  # unchanged

        @workflow.defn
        class Approval:
            def __init__(self) -> None:
                self.decisions = []

            @workflow.run
            async def run(self, needed: int) -> list:
                await workflow.sleep(timedelta(seconds=1))
                await workflow.wait_condition(lambda: len(self.decisions) >= needed)
                return self.decisions

            @workflow.signal
            def decide(self, decision: str) -> None:
                self.decisions.append(decision)
        '''))
    env = dict(cluster.env, PYTHONPATH=os.pathsep.join([str(changed), str(HERE), cluster.env.get("PYTHONPATH", "")]))
    out = aion(cluster, "replay", "check", "--from-topic", "--workflows", "changed_workflows", env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "dd-approval" in out.stdout and "DIVERGED at seq" in out.stdout
    assert "checked 2 workflow(s)" in out.stdout and "1 diverged" in out.stdout
    out = aion(cluster, "replay", "check", "--from-topic", "--workflow", "dd-counter", "--workflows",
               "changed_workflows", "--json", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    first = json.loads(out.stdout.splitlines()[0])
    assert first["workflow_id"] == "dd-counter" and first["ok"] and first["runs"] == 3


async def _status_is(handle, want: str) -> bool:  # type: ignore[no-untyped-def]
    return await query(handle, "status") == want


async def query(handle, name: str, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    """A query, retried while a (re)started worker is still joining the group and recovering."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await handle.query(name)
        except QueryTimeoutError:
            if asyncio.get_running_loop().time() > deadline:
                raise
