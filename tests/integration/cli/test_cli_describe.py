"""``aion workflow describe`` says what an open workflow waits on: pending activities with their
attempt, last failure and next retry; pending timers; a workflow task held by a bug."""

from __future__ import annotations

import json
import re
import time

from _cli import Installed, run

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_describe_shows_what_a_workflow_waits_on(installed: Installed, project, myapp_env, myapp_running) -> None:  # type: ignore[no-untyped-def]
    def aion(*args: str):  # type: ignore[no-untyped-def]
        return run(installed, *args, cwd=project, env=myapp_env)

    assert aion("workflow", "start", "Patient", "--id", "p-1").returncode == 0
    assert aion("workflow", "start", "Buggy", "--id", "b-1").returncode == 0

    deadline = time.monotonic() + 60
    while True:  # until the first attempt has failed and the task failure is recorded
        p = json.loads(aion("workflow", "describe", "p-1", "--json").stdout)
        b = json.loads(aion("workflow", "describe", "b-1", "--json").stdout)
        acts = p["pending_activities"]
        if (acts and acts[0]["state"] == "BACKOFF" and b["workflow_task"]) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert p["status"] == "RUNNING"
    assert len(acts) == 1, (p, myapp_running.logs())
    assert acts[0]["activity_type"] == "flaky" and acts[0]["attempt"] == 1
    assert "the card service is down" in acts[0]["last_failure"]
    assert re.fullmatch(ISO, acts[0]["next_retry"])
    assert [t["fire_at"] is not None for t in p["pending_timers"]] == [True]
    assert b["status"] == "RUNNING" and b["workflow_task"]["state"] == "HELD", b
    assert "KeyError" in b["workflow_task"]["error"] and "customer" in b["workflow_task"]["error"]

    res = aion("workflow", "describe", "p-1")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "pending activities:" in out and "pending timers:" in out
    assert re.search(rf"^\S+\s+flaky\s+BACKOFF\s+1\s+.*card service is down.*{ISO}", out, re.M), out
    res = aion("workflow", "describe", "b-1")
    assert re.search(r"^workflow task HELD after attempt \d+: .*KeyError.*customer", res.stdout, re.M), res.stdout

    # The operator's actions on the same workflows: pause, a refused second pause, resume, cancel.
    res = aion("workflow", "pause", "p-1", "--reason", "maintenance")
    assert (res.returncode, res.stdout.strip()) == (0, "paused"), res.stderr
    assert json.loads(aion("workflow", "describe", "p-1", "--json").stdout)["paused"] is True
    res = aion("workflow", "pause", "p-1")
    assert res.returncode != 0 and "already paused" in res.stderr, (res.returncode, res.stderr)
    res = aion("workflow", "resume", "p-1")
    assert (res.returncode, res.stdout.strip()) == (0, "resumed"), res.stderr
    res = aion("workflow", "cancel", "p-1")
    assert (res.returncode, res.stdout.strip()) == (0, "cancel requested"), res.stderr
