"""Arguments and errors, as a user meets them: strict JSON arguments, a generated workflow id,
one line per error with an exit code per kind, statuses in any case, ISO times, and a broker
that does not answer."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from _cli import Installed, run

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("aion: "), lines[0]
    return lines[0]


# ------------------------------------------------------------------ arguments (no broker needed)


def test_malformed_json_argument_is_a_usage_error(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    res = run(installed, "workflow", "execute", "Order", '{"id": "x-3", cents: 500}', "--id", "x-3",
              cwd=project, env=user_env)
    assert res.returncode == 2 and res.stdout == ""
    line = one_line(res.stderr)
    assert "argument 1 is not JSON" in line and "Expecting property name enclosed in double quotes" in line


def test_bare_word_is_not_taken_for_a_string(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    res = run(installed, "workflow", "signal", "o-1", "decide", "yes", cwd=project, env=user_env)
    assert res.returncode == 2
    assert """a string is written as JSON: '"yes"'""" in one_line(res.stderr)


def test_unknown_status_is_a_usage_error(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    res = run(installed, "workflow", "list", "--status", "bogus", cwd=project, env=user_env)
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert "'bogus' is not a status" in line and "RUNNING" in line


def test_help_says_units_and_exit_codes(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    res = run(installed, "workflow", "execute", "--help", cwd=project, env=user_env)
    assert res.returncode == 0
    assert re.search(r"--timeout.*\n?.*Seconds to wait", res.stdout), res.stdout
    res = run(installed, "--help", cwd=project, env=user_env)
    assert "6 broker unreachable" in " ".join(res.stdout.split())


# ------------------------------------------------------------------ the broker does not answer

DOWN_COMMANDS = [
    ["workflow", "list"],
    ["workflow", "execute", "Order", '{"id": "o-1", "cents": 1}'],
    ["workflow", "describe", "o-1"],
    ["workflow", "history", "o-1"],
    ["topics", "create"],
    ["schedule", "list"],
]


@pytest.mark.parametrize("args", DOWN_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_broker_down_fails_fast_in_one_line(installed: Installed, project, user_env, args) -> None:  # type: ignore[no-untyped-def]
    from _cli import write_myapp

    write_myapp(project)
    startup = startup_seconds(installed, project, user_env)
    started = time.monotonic()
    res = run(installed, *args, cwd=project, env=dict(user_env, AION_BOOTSTRAP_SERVERS="127.0.0.1:1"))
    elapsed = time.monotonic() - started
    assert elapsed < 6 + startup, f"should fail fast: {elapsed:.1f}s ({startup:.1f}s to start aion)"
    assert res.returncode == 6, res.stderr
    line = one_line(res.stderr)  # no librdkafka lines (%3|...|FAIL|...), no traceback
    assert "Kafka broker unreachable at 127.0.0.1:1 (from AION_BOOTSTRAP_SERVERS)" in line
    assert "connection refused" in line


def startup_seconds(installed: Installed, project: Path, env: dict[str, str]) -> float:
    """What starting ``aion`` costs on this machine now (more while other tests run beside): the
    time limits below are that plus what the command itself may take."""
    started = time.monotonic()
    assert run(installed, "--version", cwd=project, env=env).returncode == 0
    return time.monotonic() - started


@pytest.mark.parametrize("args", [["worker", "--workflows", "myapp.workflows"],
                                  ["activity-worker", "--activities", "myapp.activities"]], ids=lambda a: a[0])
def test_workers_wait_a_while_for_the_broker_then_fail_in_one_line(installed: Installed, project, user_env, args) -> None:  # type: ignore[no-untyped-def]
    from _cli import write_myapp

    write_myapp(project)
    startup = startup_seconds(installed, project, user_env)
    started = time.monotonic()
    res = run(installed, *args, cwd=project,
              env=dict(user_env, AION_BOOTSTRAP_SERVERS="127.0.0.1:1", AION_WORKER_BROKER_WAIT="2"))
    elapsed = time.monotonic() - started
    assert res.returncode == 6, res.stderr
    assert 2 <= elapsed < 8 + startup, (elapsed, startup)
    waiting, error = res.stderr.strip().splitlines()
    assert waiting.startswith("aion: waiting up to 2 s for the Kafka broker at 127.0.0.1:1")
    assert error.startswith("aion: Kafka broker unreachable at 127.0.0.1:1 (from AION_BOOTSTRAP_SERVERS) (waited 2 s)")


def test_a_listener_that_never_answers_times_out_in_one_line(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel's backlog), answers nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = "127.0.0.1:%d" % silent.getsockname()[1]
        startup = startup_seconds(installed, project, user_env)
        started = time.monotonic()
        res = run(installed, "workflow", "list", cwd=project,
                  env=dict(user_env, AION_BOOTSTRAP_SERVERS=address, AION_CONNECT_TIMEOUT="2"))
    elapsed = time.monotonic() - started
    assert elapsed < 8 + startup, (elapsed, startup)
    assert res.returncode == 6, res.stderr
    line = one_line(res.stderr)
    assert f"Kafka broker at {address} (from AION_BOOTSTRAP_SERVERS) did not answer a metadata request within 2 s" in line


def test_bootstrap_flag_is_named_as_the_source(installed: Installed, project, user_env) -> None:  # type: ignore[no-untyped-def]
    res = run(installed, "--bootstrap", "127.0.0.1:1", "workflow", "list", cwd=project, env=user_env)
    assert res.returncode == 6
    assert "127.0.0.1:1 (from --bootstrap)" in one_line(res.stderr)


# ------------------------------------------------------------------ against the broker, with workers


def test_topics_missing_says_what_to_do(installed: Installed, project, user_env, topic_prefix) -> None:  # type: ignore[no-untyped-def]
    res = run(installed, "workflow", "list", cwd=project, env=dict(user_env, AION_TOPIC_PREFIX=topic_prefix))
    assert res.returncode == 1
    line = one_line(res.stderr)
    assert "aion topics create" in line and topic_prefix in line and "ensure_topics" not in line


def test_workflow_outcomes_and_exit_codes(installed: Installed, project, myapp_env, myapp_running, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def aion(*args: str, timeout: float = 120):  # type: ignore[no-untyped-def]
        return run(installed, *args, cwd=project, env=myapp_env, timeout=timeout)

    # Input from a file, no --id: an id is generated and said on stderr.
    order = tmp_path / "order.json"
    order.write_text('{"id": "o-7", "cents": 700}')
    res = aion("workflow", "execute", "Order", "--input-file", str(order), "--timeout", "90")
    assert res.returncode == 0, res.stderr + myapp_running.logs()
    assert res.stdout.strip() == "ch-o-7-700 auto"
    wid = re.fullmatch(r"workflow id: (Order-[0-9a-f-]{36})", res.stderr.strip())
    assert wid, res.stderr
    wid = wid.group(1)

    # describe: a table with ISO times; --json keeps the raw fields and adds ISO ones.
    res = aion("workflow", "describe", wid)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^status\s+COMPLETED$", res.stdout, re.M), res.stdout
    assert re.search(rf"^start_time\s+{ISO}$", res.stdout, re.M), res.stdout
    assert "_ms" not in res.stdout
    d = json.loads(aion("workflow", "describe", wid, "--json").stdout)
    assert d["status"] == "COMPLETED" and re.fullmatch(ISO, d["close_time"]) and isinstance(d["close_time_ms"], int)

    # history: ISO times, not epoch milliseconds or a bare clock time.
    res = aion("workflow", "history", wid)
    assert res.returncode == 0, res.stderr
    assert re.search(rf"^1\s+WorkflowStarted\s+\S+\s+{ISO}\s", res.stdout, re.M), res.stdout

    # A workflow that fails: exit 3 and its failure in one line.
    res = aion("workflow", "execute", "Order", '{"id": "o-8", "cents": -5}', "--id", "o-8", "--timeout", "90")
    assert res.returncode == 3, res.stderr
    line = one_line(res.stderr)
    assert "'o-8'" in line and "ended FAILED" in line

    # Waiting past --timeout: exit 4, the unit and a CLI command (not a Python call) in the message.
    res = aion("workflow", "execute", "Order", '{"id": "o-9", "cents": 900, "wait": true}', "--id", "o-9",
               "--timeout", "3")
    assert res.returncode == 4, res.stderr
    line = one_line(res.stderr)
    assert "did not close within 3 s" in line and "aion workflow describe o-9" in line and "handle." not in line

    # Lowercase status; the waiting workflow is listed as running (the index may lag a moment).
    deadline = time.monotonic() + 30
    while True:
        res = aion("workflow", "list", "--status", "running", "--json")
        assert res.returncode == 0, res.stderr
        rows = json.loads(res.stdout)
        if any(r["workflow_id"] == "o-9" for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert [r["workflow_id"] for r in rows] == ["o-9"], rows
    assert re.fullmatch(ISO, rows[0]["started_at"])

    res = aion("workflow", "query", "o-9", "status", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == "charged", res.stderr
    res = aion("workflow", "signal", "o-9", "decide", '"yes"')
    assert res.returncode == 0, res.stderr
    res = aion("workflow", "result", "o-9", "--timeout", "60", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == "ch-o-9-900 yes", res.stderr

    # Unknown ids: exit 5.
    res = aion("workflow", "describe", "no-such-order")
    assert res.returncode == 5 and "no-such-order" in one_line(res.stderr)
    res = aion("workflow", "history", "no-such-order")
    assert res.returncode == 5 and "no workflow 'no-such-order'" in one_line(res.stderr)
