"""Engine and activity worker processes for integration tests (real processes, real Kafka)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log = log
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> "Proc":
        f = open(self.log, "ab")
        self.p = subprocess.Popen([sys.executable, "-m", "aion.cli", *self.args], env=self.env,
                                  stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill9(self) -> None:
        if self.p and self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()

    def stop(self, timeout: float = 20) -> None:
        if self.p and self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()

    def alive(self) -> bool:
        return bool(self.p and self.p.poll() is None)

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


class Cluster:
    """Engine and activity workers on one topic prefix, all stopped at the end."""

    def __init__(self, settings, tmp: Path, workflows: str = "engine_workflows") -> None:  # type: ignore[no-untyped-def]
        self.settings = settings
        self.workflows = workflows
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.env = dict(os.environ)
        self.env.update({
            "AION_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "AION_TOPIC_PREFIX": settings.topic_prefix,
            "AION_PARTITIONS": str(settings.partitions),
            "AION_TEST_STATE": str(tmp),
            "PYTHONPATH": os.pathsep.join([str(HERE), self.env.get("PYTHONPATH", "")]),
            "AION_METRICS_HOST": "127.0.0.1",  # a test's metrics endpoints (if any) stay on this host
        })
        self._n = 0

    def engine(self, name: str | None = None, fault: str | None = None, metrics_port: int | None = None) -> Proc:
        """An engine worker (data dir named ``name``: reuse a name to restart on the same
        RocksDB folder); ``fault`` sets ``AION_FAULT`` (see aion/engine/_faults.py);
        ``metrics_port`` serves its metrics and health on 127.0.0.1."""
        self._n += 1
        name = name or f"engine{self._n}"
        env = dict(self.env, AION_DATA_DIR=str(self.tmp / name))
        if fault:
            env["AION_FAULT"] = fault
        p = Proc(["worker", "--workflows", self.workflows, "--loglevel", "warning", *_metrics(metrics_port)], env,
                 self.tmp / f"{name}.log").start()
        self.procs.append(p)
        return p

    def activities(self, concurrency: int = 50, name: str | None = None, metrics_port: int | None = None,
                   module: str = "engine_workflows") -> Proc:
        self._n += 1
        name = name or f"acts{self._n}"
        p = Proc(["activity-worker", "--activities", module, "--concurrency", str(concurrency),
                  *_metrics(metrics_port)], self.env, self.tmp / f"{name}.log").start()
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in self.procs:
            p.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.tail()}" for p in self.procs)


def _metrics(port: int | None) -> list[str]:
    return ["--metrics-port", str(port)] if port else []
