"""The replay gate with the installed aion: the history the CLI prints is the file the replayer
reads, system workflows (schedules) replay with the engine's code, --running-only checks only
open workflows."""

from __future__ import annotations

import json

from _cli import Installed, run

CHANGED = '''
from datetime import timedelta

from aion import RetryPolicy, activity, workflow


@activity.defn
async def refund(order_id: str, cents: int) -> str:
    return "r"


@workflow.defn
class Order:
    @workflow.run
    async def run(self, order: dict) -> str:
        # changed code: a different activity where the history recorded `charge`
        return await workflow.execute_activity(refund, order["id"], order["cents"],
                                               start_to_close_timeout=timedelta(seconds=10))
'''


def test_replay_gate(installed: Installed, project, myapp_env, myapp_running) -> None:  # type: ignore[no-untyped-def]
    def aion(*args: str, timeout: float = 120):  # type: ignore[no-untyped-def]
        return run(installed, *args, cwd=project, env=myapp_env, timeout=timeout)

    res = aion("workflow", "execute", "Order", '{"id": "done", "cents": 1}', "--id", "o-done", "--timeout", "90")
    assert res.returncode == 0, res.stderr + myapp_running.logs()
    res = aion("workflow", "start", "Order", '{"id": "open", "cents": 2, "wait": true}', "--id", "o-open")
    assert res.returncode == 0, res.stderr
    res = aion("schedule", "create", "nightly", "Order", '{"id": "n", "cents": 3}', "--cron", "0 3 * * *")
    assert res.returncode == 0, res.stderr
    res = aion("workflow", "query", "o-open", "status", "--json")  # it has run its activity
    assert res.returncode == 0 and json.loads(res.stdout) == "charged", res.stderr

    # The README's pair: history --json > FILE, then replay FILE.
    res = aion("workflow", "history", "o-done", "--json")
    assert res.returncode == 0, res.stderr
    (project / "h.json").write_text(res.stdout)
    res = aion("replay", "h.json", "--workflows", "myapp.workflows")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("ok: o-done replayed "), res.stdout

    (project / "changed.py").write_text(CHANGED)
    res = aion("replay", "h.json", "--workflows", "changed")
    assert res.returncode == 1
    assert "refund" in res.stderr and "charge" in res.stderr, res.stderr

    # The whole topic, a schedule's system workflow included: nothing is the user's divergence.
    res = aion("replay", "check", "--from-topic", "--workflows", "myapp.workflows", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    checked = {r["workflow_id"]: r for r in rows[:-1]}
    assert {"o-done", "o-open", "schedule:nightly"} <= set(checked), rows
    assert all(r["ok"] for r in checked.values()), rows
    assert rows[-1]["diverged"] == 0 and rows[-1]["failed"] == 0

    # --running-only: the open ones, with their real status; the completed one is skipped.
    res = aion("replay", "check", "--from-topic", "--running-only", "--workflows", "myapp.workflows", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    checked = {r["workflow_id"]: r["status"] for r in rows[:-1]}
    assert "o-done" not in checked and checked.get("o-open") == "RUNNING", rows
    assert set(checked.values()) == {"RUNNING"}
    assert rows[-1]["skipped"] >= 1
