"""The processes a benchmark starts (engine workers, activity workers, floor roles) and what
they cost: CPU seconds and resident memory read from ``/proc`` (Linux; zeros elsewhere)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..common.settings import Settings

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0.0 when unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 when unknown)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class Proc:
    """One child process, in its own session so that a kill reaches all of it."""

    def __init__(self, role: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.role = role
        self.args = args
        self.env = env
        self.log = log
        self.p: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> "Proc":
        f = open(self.log, "ab")
        self.started_at = time.monotonic()
        self.p = subprocess.Popen([sys.executable, *self.args], env=self.env, stdout=f,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        f.close()
        return self

    @property
    def pid(self) -> int:
        assert self.p is not None
        return self.p.pid

    def alive(self) -> bool:
        return bool(self.p and self.p.poll() is None)

    def kill9(self) -> None:
        if self.alive():
            assert self.p is not None
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()

    def pause(self) -> None:
        """SIGSTOP: the process stalls (a GC or swap pause, a VM migration) without dying."""
        if self.alive():
            assert self.p is not None
            os.killpg(self.p.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive():
            assert self.p is not None
            os.killpg(self.p.pid, signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            assert self.p is not None
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


class Procs:
    """The processes of one benchmark run, on one topic prefix; all stopped by :meth:`stop`."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self.env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])  # the source root, for a checkout run
        self.env.update(settings.connection_env())  # bootstrap and security (SASL, TLS)
        self.env.update({
            "AION_TOPIC_PREFIX": settings.topic_prefix,
            "AION_PARTITIONS": str(settings.partitions),
            "PYTHONPATH": os.pathsep.join(p for p in (src, self.env.get("PYTHONPATH", "")) if p),
        })
        self._n = 0

    def _name(self, role: str) -> str:
        self._n += 1
        return f"{role}{self._n}"

    def engine(self, extra_env: dict[str, str] | None = None) -> Proc:
        name = self._name("engine")
        env = self._metrics(dict(self.env, AION_DATA_DIR=str(self.workdir / name), **(extra_env or {})))
        level = os.environ.get("AION_BENCH_LOGLEVEL", "warning")
        return self._start(Proc("engine", ["-m", "aion.cli", "worker", "--workflows", "aion.bench._workload",
                                           "--loglevel", level], env, self.workdir / f"{name}.log"))

    def activities(self, concurrency: int = 1000) -> Proc:
        name = self._name("activities")
        return self._start(Proc("activities", ["-m", "aion.cli", "activity-worker", "--activities",
                                               "aion.bench._workload", "--concurrency", str(concurrency)],
                                self._metrics(self.env), self.workdir / f"{name}.log"))

    def _metrics(self, env: dict[str, str]) -> dict[str, str]:
        """With ``AION_METRICS_PORT=P`` set, each worker process the benchmark starts serves its
        metrics on a port of its own: P + its number (engine1 on P + 1, ...)."""
        base = int(env.get("AION_METRICS_PORT") or 0)
        return dict(env, AION_METRICS_PORT=str(base + self._n)) if base else env

    def python(self, role: str, module_args: list[str]) -> Proc:
        name = self._name(role)
        return self._start(Proc(role, ["-m", *module_args], self.env, self.workdir / f"{name}.log"))

    def _start(self, p: Proc) -> Proc:
        self.procs.append(p.start())
        return p

    def of(self, role: str) -> list[Proc]:
        return [p for p in self.procs if p.role == role]

    def check_alive(self) -> None:
        for p in self.procs:
            if p.p is not None and p.p.poll() is not None and not getattr(p, "killed", False):
                raise RuntimeError(f"{p.role} process {p.pid} exited with {p.p.returncode}:\n{p.tail()}")

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.tail()}" for p in self.procs)


class CpuMeter:
    """CPU and memory of a set of processes over a measurement window."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._t0 = 0.0
        self.peak_rss: dict[str, int] = {k: 0 for k in pids}

    def begin(self) -> None:
        self._t0 = time.monotonic()
        self._start = {k: sum(cpu_seconds(p) for p in v) for k, v in self.pids.items()}
        self.sample()

    def sample(self) -> None:
        for k, v in self.pids.items():
            self.peak_rss[k] = max(self.peak_rss[k], sum(rss_bytes(p) for p in v))

    def end(self) -> dict[str, dict[str, Any]]:
        self.sample()
        dt = max(1e-6, time.monotonic() - self._t0)
        out = {}
        for k, v in self.pids.items():
            used = sum(cpu_seconds(p) for p in v) - self._start.get(k, 0.0)
            out[k] = {"cpu_cores": round(used / dt, 2), "rss_mb": round(self.peak_rss[k] / 2**20, 1)}
        return out


# ------------------------------------------------------------------ the broker


def broker_pid(bootstrap: str) -> int | None:
    """The pid of the process listening on the first bootstrap address when it runs on this
    machine (found through /proc/net/tcp*), else None."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        port_n = int(port)
    except ValueError:
        return None
    if not _is_local(host):
        return None
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, state, inode = parts[1], parts[3], parts[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port_n:
                        inodes.add(f"socket:[{inode}]")
        except OSError:
            continue
    if not inodes:
        return None
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return int(pid)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def _is_local(host: str) -> bool:
    host = host.strip("[]") or "127.0.0.1"
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    if any(a.startswith("127.") or a == "::1" for a in addrs):
        return True
    try:
        mine = {ai[4][0] for ai in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        mine = set()
    return bool(addrs & mine)


def broker_is_local(bootstrap: str) -> bool:
    host = bootstrap.split(",")[0].strip().rpartition(":")[0]
    return _is_local(host)


def broker_version(pid: int | None) -> str | None:
    """The Kafka version from the broker's class path (kafka_2.13-X.Y.Z.jar), when local."""
    if pid is None:
        return None
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except OSError:
        return None
    import re

    m = re.search(r"kafka_\d+\.\d+-(\d+\.\d+\.\d+)", cmd) or re.search(r"kafka-clients-(\d+\.\d+\.\d+)", cmd)
    return m.group(1) if m else None

