"""Engine and activity worker processes of the chaos test, and the broker of its own that it stops
and starts.

Each process is ``python -m aion.cli ...`` in its own session (so ``kill -9`` of its group
takes everything it started, and SIGSTOP stalls all of it), logging to its own file. Engine
workers get their own data folder, or a dead worker's folder to exercise the reuse of local
RocksDB state.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aion.testing.ports import free_ports

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KAFKA_LOCAL = REPO / "docker" / "kafka-local" / "kafka-local"

#: How long a kill -9'd worker's partitions stay orphaned (engine and activity workers):
#: ``AION_SESSION_TIMEOUT`` as deployed (default 6 s) unless ``AION_CHAOS_SESSION_TIMEOUT``
#: says otherwise (6 s is the broker's minimum, group.min.session.timeout.ms).
SESSION_TIMEOUT_ENV = ({"AION_SESSION_TIMEOUT": os.environ["AION_CHAOS_SESSION_TIMEOUT"]}
                       if os.environ.get("AION_CHAOS_SESSION_TIMEOUT") else {})


@dataclass
class Proc:
    kind: str  # "engine" | "activities"
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    data_dir: Path | None = None
    p: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ended: str = ""
    #: monotonic time of the SIGSTOP while the process is stalled, else None.
    paused_at: float | None = None

    def start(self) -> "Proc":
        f = open(self.log, "ab")
        self.p = subprocess.Popen([sys.executable, "-m", "aion.cli", *self.args], env=self.env,
                                  stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        f.close()
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self.p is not None
        return self.p.pid

    def alive(self) -> bool:
        return bool(self.p and self.p.poll() is None)

    def kill9(self) -> None:
        if self.p and self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()
        self.ended = "killed"

    def pause(self) -> float:
        """SIGSTOP the process group: a stall (a GC pause, a frozen VM, a laptop lid) — the
        process keeps its sockets and state and learns nothing until :meth:`resume`."""
        assert self.p is not None and self.p.poll() is None, f"{self.name} is not running"
        os.killpg(self.p.pid, signal.SIGSTOP)
        self.paused_at = time.monotonic()
        return self.paused_at

    def resume(self) -> float:
        """SIGCONT the process group; returns for how long it was stalled."""
        assert self.p is not None and self.paused_at is not None, f"{self.name} is not paused"
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGCONT)
        stalled, self.paused_at = time.monotonic() - self.paused_at, None
        return stalled

    def stop(self, timeout: float = 30) -> None:
        if self.paused_at is not None:  # a stopped process would not act on SIGTERM
            self.resume()
        if self.p and self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                return
        if not self.ended:
            self.ended = "stopped"

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


@dataclass
class ChaosCluster:
    """The processes of one chaos run (topic prefix ``settings.topic_prefix``)."""

    settings: object
    tmp: Path
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        self.env = dict(os.environ)
        self.env.update({
            "AION_BOOTSTRAP_SERVERS": s.bootstrap_servers,  # type: ignore[attr-defined]
            "AION_TOPIC_PREFIX": s.topic_prefix,  # type: ignore[attr-defined]
            "AION_PARTITIONS": str(s.partitions),  # type: ignore[attr-defined]
            "AION_REPLICATION_FACTOR": str(s.replication_factor),  # type: ignore[attr-defined]
            "PYTHONPATH": os.pathsep.join(p for p in [str(HERE), self.env.get("PYTHONPATH", "")] if p),
            **SESSION_TIMEOUT_ENV,
        })
        self._n = 0

    def _name(self, kind: str) -> str:
        self._n += 1
        return f"{kind}{self._n}"

    def engine(self, data_dir: Path | None = None, **extra_env: str) -> Proc:
        name = self._name("engine")
        data_dir = data_dir or self.tmp / f"data-{name}"
        env = dict(self.env, AION_DATA_DIR=str(data_dir), **extra_env)
        p = Proc("engine", name, ["worker", "--workflows", "chaos_workflows", "--loglevel", os.environ.get("AION_CHAOS_ENGINE_LOGLEVEL", "warning")], env,
                 self.tmp / f"{name}.log", data_dir).start()
        self.procs.append(p)
        return p

    def activities(self, concurrency: int = 100) -> Proc:
        name = self._name("acts")
        p = Proc("activities", name, ["activity-worker", "--activities", "chaos_workflows", "--concurrency",
                                      str(concurrency)], self.env, self.tmp / f"{name}.log").start()
        self.procs.append(p)
        return p

    def alive(self, kind: str) -> list[Proc]:
        return [p for p in self.procs if p.kind == kind and p.alive()]

    def reusable_data_dirs(self) -> list[Path]:
        """Data folders of dead engine workers that no live worker uses."""
        live = {p.data_dir for p in self.alive("engine")}
        dead = [p.data_dir for p in self.procs if p.kind == "engine" and not p.alive() and p.data_dir is not None]
        return sorted({d for d in dead if d not in live})

    def by_pid(self, pid: int) -> Proc | None:
        return next((p for p in self.procs if p.p is not None and p.pid == pid), None)

    def stop(self) -> None:
        for p in self.procs:
            p.stop(timeout=20)

    def logs(self, n: int = 30) -> str:
        return "\n".join(f"--- {p.name} ({p.ended or ('alive' if p.alive() else 'exited')})\n{p.tail(n)}"
                         for p in self.procs)


# ------------------------------------------------------------------ the broker


@dataclass
class OwnBroker:
    """A kafka-local broker of the chaos test alone: free ports, its own data folder. Stopping and
    starting it disturbs no other test running at the same time (``pytest -n``) and nobody who
    shares the session broker."""

    port: int
    controller_port: int
    data: Path

    @classmethod
    def on_free_ports(cls, data: Path) -> "OwnBroker":
        port = free_ports(2)
        return cls(port, port + 1, data)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        """What the stats and messages call it: its port."""
        return str(self.port)

    def run(self, action: str) -> subprocess.CompletedProcess[str]:
        return kafka_local([action], KAFKA_LOCAL_PORT=str(self.port), KAFKA_LOCAL_CONTROLLER_PORT=str(self.controller_port),
                           KAFKA_LOCAL_DIR=str(self.data))

    def repick(self) -> None:
        """Thrown away (killed, its folder emptied) and moved to other free ports."""
        self.run("kill")
        shutil.rmtree(self.data, ignore_errors=True)
        self.port = free_ports(2)
        self.controller_port = self.port + 1


def kafka_local(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``kafka-local ARGS`` with these ``KAFKA_LOCAL_*`` settings only (none inherited)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_LOCAL_")}
    full.update(env)
    return subprocess.run([str(KAFKA_LOCAL), *args], env=full, capture_output=True, text=True, timeout=300)


@dataclass
class OwnCluster:
    """A three-broker kafka-local cluster of the chaos test alone (``kafka-local --cluster``):
    replication factor 3, min.insync.replicas 2; its nodes are killed with kill -9 and started
    again while the load runs."""

    port: int
    data: Path
    nodes: int = 3

    @classmethod
    def on_free_ports(cls, data: Path) -> "OwnCluster":
        return cls(free_ports(2 * cls.nodes), data)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + 2 * i}" for i in range(self.nodes))

    @property
    def name(self) -> str:
        return f"cluster {self.bootstrap}"

    def node_of_port(self, port: int) -> int:
        return (port - self.port) // 2 + 1

    def run(self, action: str, node: int | None = None) -> subprocess.CompletedProcess[str]:
        return kafka_local([action, "--cluster"] + ([str(node)] if node is not None else []),
                           KAFKA_LOCAL_CLUSTER_PORT=str(self.port), KAFKA_LOCAL_CLUSTER_DIR=str(self.data))

    def repick(self) -> None:
        """Thrown away (every node killed, its folder emptied) and moved to other free ports."""
        for node in range(1, self.nodes + 1):
            self.run("kill", node)
        shutil.rmtree(self.data, ignore_errors=True)
        self.port = free_ports(2 * self.nodes)


def start_new(own: OwnBroker | OwnCluster, attempts: int = 3) -> subprocess.CompletedProcess[str]:
    """``kafka-local start`` of a broker or cluster that never ran. Its ports were free when
    picked, but another process on the machine may bind one before the JVM does ("Address
    already in use"): then it starts again on other free ports, from an empty folder, up to
    ``attempts`` times in all. The last ``start``'s result."""
    for attempt in range(1, attempts + 1):
        r = own.run("start")
        if r.returncode == 0 or attempt == attempts or "already in use" not in r.stdout + r.stderr:
            return r
        print(f"[kafka-local] a port of {own.name} was taken before it bound it: again on other ports", flush=True)
        own.repick()
    raise AssertionError("unreachable")
