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
    # Aion's own topics (<prefix>.events ...) and Faust's (<prefix>-engine-...-changelog).
    return sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith((f"{prefix}.", f"{prefix}-")))


def delete_topics(bootstrap: str, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    names = topics_with_prefix(bootstrap, prefix)
    if names:
        for fut in AdminClient({"bootstrap.servers": bootstrap}).delete_topics(names, operation_timeout=10).values():
            try:
                fut.result()
            except Exception:
                pass


#: A user's own project: ``myapp/`` with an Order workflow (activity, timer, signal, query).
MYAPP_ACTIVITIES = '''
from aion import activity
from aion.exceptions import ApplicationError


@activity.defn
async def charge(order_id: str, cents: int) -> str:
    if cents < 0:
        raise ApplicationError(f"cannot charge {cents} cents", non_retryable=True)
    return f"ch-{order_id}-{cents}"


@activity.defn
async def flaky() -> str:
    raise ApplicationError("the card service is down")
'''

MYAPP_WORKFLOWS = '''
import asyncio
from datetime import timedelta

from aion import RetryPolicy, workflow
from myapp.activities import charge, flaky


@workflow.defn
class Order:
    def __init__(self) -> None:
        self.state = "new"
        self.decision = None

    @workflow.run
    async def run(self, order: dict) -> str:
        charge_id = await workflow.execute_activity(
            charge, order["id"], order["cents"], start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=1))
        self.state = "charged"
        await workflow.sleep(timedelta(milliseconds=100))
        if order.get("wait"):
            await workflow.wait_condition(lambda: self.decision is not None)
        return f"{charge_id} {self.decision or 'auto'}"

    @workflow.signal
    def decide(self, decision: str) -> None:
        self.decision = decision

    @workflow.query
    def status(self) -> str:
        return self.state


@workflow.defn
class Patient:
    """Waits on an activity that keeps failing (retried in an hour) and on a two-hour timer."""

    @workflow.run
    async def run(self) -> str:
        await asyncio.gather(
            workflow.execute_activity(flaky, start_to_close_timeout=timedelta(seconds=10),
                                      retry_policy=RetryPolicy(initial_interval=timedelta(hours=1))),
            workflow.sleep(timedelta(hours=2)))
        return "done"


@workflow.defn(failure_exception_types=[ValueError])
class Buggy:
    """A bug in workflow code (not a ValueError): the workflow task is held, not failed."""

    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(timedelta(milliseconds=10))
        raise KeyError("customer")
'''


def write_myapp(folder: Path) -> Path:
    pkg = folder / "myapp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "activities.py").write_text(MYAPP_ACTIVITIES)
    (pkg / "workflows.py").write_text(MYAPP_WORKFLOWS)
    return pkg


class Workers:
    """``aion worker`` and ``aion activity-worker`` of the installed wheel, started in a project
    folder; stopped (SIGTERM, then SIGKILL) by :meth:`stop`."""

    def __init__(self, installed: Installed, cwd: Path, env: dict[str, str]) -> None:
        self.installed, self.cwd, self.env = installed, cwd, env
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.cwd / f"{args[0]}-{len(self.procs)}.log"
        p = subprocess.Popen([self.installed.aion, *args], cwd=self.cwd, env=self.env, stdout=open(log, "wb"),
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((p, log))
        return p

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for _, log in self.procs)

    def stop(self) -> None:
        import os
        import signal

        for p, _ in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p, _ in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
