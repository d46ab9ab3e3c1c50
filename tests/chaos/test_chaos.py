"""Chaos: kill -9 engine and activity workers, stall engine workers past their session timeout
and restart the broker while 500+ workflows run, then prove from the events topic alone that
nothing was lost, duplicated, corrupted or written by two engines.

What runs (real processes, real broker, 6 partitions):

- two engine workers and two activity workers (``chaos_workflows``: activities that fail and
  are retried, timers that fire and are cancelled — near ones and far ones, signals, child
  workflows on other partitions, continue-as-new, a non-retryable failure, slow heartbeating
  activities);
- a load of ``AION_CHAOS_WORKFLOWS`` (default 520) root workflows: a trickle, and a wave of 30
  right before each fault so that many are in flight when it strikes;
- ``AION_CHAOS_ENGINE_KILLS`` (default 8) times: kill -9 a random engine worker (mostly one
  that owns partitions, now and then one still starting up) and start a new one — with a
  fresh data folder or a dead worker's one (local RocksDB reuse) — then wait until every
  workflow that was in flight at the kill (open, or its start sent) recorded a new event: that
  wait is the *recovery time*; a second or two later, the next kill;
- ``AION_CHAOS_ENGINE_PAUSES`` (default 2) times, between the kills: SIGSTOP a random engine
  worker (its process group) for the session timeout + 4-7 s, so that the group gives its
  partitions to the other worker, then SIGCONT — a stall, after which it must write nothing for
  the partitions it lost (ARCHITECTURE.md, guarantee 4, "single writer"); a wave right before
  the stall and half a wave once its session expired keep both owners busy with the same
  workflows. Its recovery time is the takeover: until every workflow in flight at the SIGSTOP
  recorded a new event. A worker that exits after it woke up is replaced.

Then stop and start the broker once: the test runs on a kafka-local broker of its own (free ports,
its own data folder, started and stopped here), so that the restart disturbs neither the tests
that run beside it (``pytest -n``) nor anyone sharing the session broker; without Java it runs
on the session broker and skips the restart;
then kill -9 the activity worker that is running a slow activity right now and start a new
one. The workers run with the deployed ``AION_SESSION_TIMEOUT`` (``AION_CHAOS_SESSION_TIMEOUT``
overrides).

Then: every workflow (and child) must close as expected; the whole events topic, read from
offset 0 with ``read_committed`` (re-writes included), must pass
:func:`aion.testing.check_event_log` in strict mode — a ``(workflow_id, seq)`` re-written with
any field different, ``recorded_at_ms`` included, is a violation, and so is a timer left
unfired 30 s past its due time in an open run; nothing may be dead-lettered; and the surviving
engine worker's RocksDB tables must equal a rebuild from the events topic (``aion rebuild``'s
digests, plus a direct row-by-row comparison of ``history``).

On a replicated cluster (``AION_CHAOS_CLUSTER=1``, not in CI: see the README, "Reliability"):
the test runs on a three-broker ``kafka-local --cluster`` of its own with replication factor 3
and ``min.insync.replicas`` 2, and instead of the broker restart, ``AION_CHAOS_BROKER_KILLS``
(default 2) times: kill -9 the broker that leads the most partitions of the events and commands
topics while a wave is in flight, measure how long until every workflow in flight recorded a new
event (the progress resumes on the two brokers left), and start the broker again a few seconds
later (it catches up and takes leaderships back); each kill takes another broker than the last.

Reproduce: ``python -m pytest -q tests/chaos -s`` (``AION_CHAOS_SEED`` replays a run's choices;
``AION_CHAOS_BROKER_RESTART=0`` runs on the session broker and leaves it alone).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from aion.client import Client
from aion.engine.settings import Settings
from aion.engine.topics import TopicNames, ensure_topics
from aion.exceptions import WorkflowAlreadyStartedError
from aion.model import Command, SignalWorkflow
from aion.testing import Expectation, check_event_log, read_event_log

from chaos_cluster import ChaosCluster, OwnBroker, OwnCluster, start_new
from chaos_follow import EventFollower, probe_ids as _probe_ids
from chaos_workflows import expected_outcome

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(600)]

PARTITIONS = 6
N_WORKFLOWS = int(os.environ.get("AION_CHAOS_WORKFLOWS", "520"))
ENGINE_KILLS = int(os.environ.get("AION_CHAOS_ENGINE_KILLS", "8"))
ENGINE_PAUSES = int(os.environ.get("AION_CHAOS_ENGINE_PAUSES", "2"))
#: A stall lasts the session timeout plus this many seconds (drawn per pause).
PAUSE_EXTRA_S = (4.0, 7.0)
#: A timer of an open run not fired this long after its due time is lost (the checker's rule).
LOST_TIMER_GRACE_MS = 30_000
TRICKLE_RATE = float(os.environ.get("AION_CHAOS_START_RATE", "1.2"))  # root workflows per second between waves
WAVE = 30  # root workflows started right before each fault
SLOW_FLOWS = 12
RECOVERY_CAP_S = 60.0
DRAIN_TIMEOUT_S = 150.0
CLUSTER = os.environ.get("AION_CHAOS_CLUSTER", "0") == "1"
BROKER_KILLS = int(os.environ.get("AION_CHAOS_BROKER_KILLS", "2"))


# ============================================================================ the load


@dataclass
class Spec:
    wid: str
    wtype: str
    args: list[Any]
    signals: list[int] = field(default_factory=list)

    def expectations(self) -> dict[str, Expectation]:
        status, result = expected_outcome(self.wtype, self.args, self.signals)
        runs = self.args[1] - self.args[0] + 1 if self.wtype == "LoopFlow" else 1
        out = {self.wid: (Expectation(status, failure_type=result, runs=runs) if status == "FAILED"
                          else Expectation(status, result, runs=runs))}
        if self.wtype == "ParentFlow":
            out[f"{self.wid}-child"] = Expectation(*expected_outcome("ChildFlow", self.args), runs=1)
        return out


def make_specs(rng: random.Random, n: int) -> list[Spec]:
    mix = [("ActivityFlow", 28), ("TimerFlow", 13), ("SignalFlow", 14), ("ParentFlow", 14), ("LoopFlow", 11),
           ("NapFlow", 7), ("DeclineFlow", 5), ("SlowFlow", 8)]
    kinds = [k for k, w in mix for _ in range(w)]
    specs = []
    for i in range(n):
        kind = rng.choice(kinds)
        wid = f"{kind.lower()}-{i}"
        if kind == "ActivityFlow":
            specs.append(Spec(wid, kind, [f"k{i}", rng.choice([0, 0, 1, 2])]))
        elif kind == "TimerFlow":
            specs.append(Spec(wid, kind, [i]))
        elif kind == "SignalFlow":
            specs.append(Spec(wid, kind, [2], [rng.randrange(100), rng.randrange(100)]))
        elif kind == "ParentFlow":
            specs.append(Spec(wid, kind, [i]))
        elif kind == "LoopFlow":
            specs.append(Spec(wid, kind, [0, rng.choice([1, 2])]))
        elif kind == "NapFlow":
            specs.append(Spec(wid, kind, [rng.choice([100, 300, 600])]))
        elif kind == "DeclineFlow":
            specs.append(Spec(wid, kind, [f"d{i}"]))
        else:
            specs.append(Spec(wid, kind, [f"s{i}"]))
    return specs


@dataclass
class Stats:
    seed: int = 0
    started: int = 0
    start_retries: int = 0
    signals: int = 0
    signal_retries: int = 0
    engine_kills: list[dict[str, Any]] = field(default_factory=list)
    engine_pauses: list[dict[str, Any]] = field(default_factory=list)
    broker_restart: dict[str, Any] | None = None
    broker_kills: list[dict[str, Any]] = field(default_factory=list)
    broker_skipped: str = ""
    activity_kills: list[dict[str, Any]] = field(default_factory=list)
    session_timeout: float = 0.0
    #: workflow id -> when its start was first sent (monotonic)
    sent: dict[str, float] = field(default_factory=dict)
    #: The test's own broker while this test has it stopped (not started again yet).
    broker_down: OwnBroker | OwnCluster | None = None
    notes: list[str] = field(default_factory=list)

    def say(self, msg: str) -> None:
        line = f"[chaos {time.strftime('%H:%M:%S')}] {msg}"
        self.notes.append(line)
        print(line, flush=True)


async def start_spec(client: Client, spec: Spec, stats: Stats) -> None:
    """Start ``spec`` (idempotent retries: same request id) and send its signals (idempotent
    retries: fixed command ids)."""
    stats.sent.setdefault(spec.wid, time.monotonic())
    for attempt in range(20):
        try:
            await client.start_workflow(spec.wtype, *spec.args, id=spec.wid, request_id=f"chaos-{spec.wid}",
                                        id_reuse_policy="REJECT_DUPLICATE")
            break
        except WorkflowAlreadyStartedError:
            if attempt == 0:
                raise
            break  # an earlier attempt went through (and the run moved on, e.g. continued as new)
        except Exception:  # RPCTimeoutError while a partition changes hands, KafkaException while the broker restarts
            stats.start_retries += 1
            await asyncio.sleep(0.5)
    else:
        raise AssertionError(f"could not start {spec.wid} in 20 attempts")
    stats.started += 1
    for i, value in enumerate(spec.signals):
        payloads = client.converter.to_payloads([value])
        cid = f"chaos-signal-{spec.wid}-{i}"
        for _ in range(20):
            cmd = Command(command_id=cid, workflow_id=spec.wid, sent_at_ms=int(time.time() * 1000),
                          body=SignalWorkflow("add", payloads, signal_id=cid), reply_to=client.reply_to)
            try:
                await client.request(cmd, payloads, what="signal 'add'")
                break
            except Exception:
                stats.signal_retries += 1
                await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"could not signal {spec.wid} in 20 attempts")
        stats.signals += 1


class Load:
    """Starts the specs: a steady trickle, plus a wave right before each fault (so that many
    workflows are in flight when it strikes), and whatever is left in a burst at the end."""

    def __init__(self, client: Client, specs: list[Spec], stats: Stats) -> None:
        self.client = client
        self.queue = list(specs)
        self.stats = stats
        self.tasks: list[asyncio.Task[None]] = []
        self.done = asyncio.Event()

    def _start(self, n: int) -> int:
        batch, self.queue = self.queue[:n], self.queue[n:]
        for spec in batch:
            self.tasks.append(asyncio.create_task(start_spec(self.client, spec, self.stats)))
        return len(batch)

    def wave(self, n: int = WAVE) -> int:
        return self._start(n)

    async def trickle(self) -> None:
        while self.queue and not self.done.is_set():
            self._start(1)
            try:
                await asyncio.wait_for(self.done.wait(), 1.0 / TRICKLE_RATE)
            except asyncio.TimeoutError:
                pass
        while self.queue:  # the faults are over: the rest, quickly
            self._start(10)
            await asyncio.sleep(0.2)
        await asyncio.gather(*self.tasks)


# ============================================================================ the faults


def in_flight(follower: EventFollower, stats: Stats) -> dict[str, int]:
    """Workflows in flight now: open ones (-> their highest seq) and starts sent but not yet
    recorded (-> 0)."""
    open_ = follower.snapshot_open()
    known = follower.known()
    for wid in list(stats.sent):
        if wid not in known:
            open_.setdefault(wid, 0)
    return open_


async def wait_recovery(follower: EventFollower, t0: float, open_at: dict[str, int], cap: float,
                        ref: float | None = None) -> tuple[float | None, list[str]]:
    """Seconds from ``ref`` (default: the fault at ``t0``) until every workflow of ``open_at``
    recorded a new event after ``t0``; None (and the ids still waiting) after ``cap`` seconds."""
    ref = t0 if ref is None else ref
    while True:
        rec, waiting = follower.recovery(t0, open_at)
        if rec is not None:
            return max(0.0, rec - (ref - t0)), waiting
        if time.monotonic() - ref > cap:
            return None, waiting
        await asyncio.sleep(0.05)


def fault_schedule(kills: int, pauses: int) -> list[str]:
    """The engine faults in order: the kills, with the pauses spread evenly between them."""
    out = ["kill"] * kills
    for j in range(pauses):
        out.insert(round((j + 1) * kills / (pauses + 1)) + j, "pause")
    return out


async def engine_kill(k: int, cluster: ChaosCluster, follower: EventFollower, load: Load, stats: Stats,
                      rng: random.Random) -> None:
    wave = load.wave()
    # Most of a wave's workflows finish within a second: strike while they are in flight.
    await asyncio.sleep(rng.uniform(0.05, 0.5))
    engines = cluster.alive("engine")
    settled = [e for e in engines if time.monotonic() - e.started_at > 5]
    # Mostly a worker that owns partitions; now and then one still starting up / restoring.
    victim = rng.choice(settled if settled and rng.random() < 0.75 else engines)
    reuse = cluster.reusable_data_dirs()
    # The last replacement always reuses a dead worker's folder when there is one: it is the
    # worker whose tables are compared with the log at the end, and a folder a killed worker
    # wrote (mid-batch, mid-transaction) is where the local tables could hold what the log
    # does not.
    data_dir = rng.choice(reuse) if reuse and (k == ENGINE_KILLS - 1 or rng.random() < 0.4) else None
    open_at = in_flight(follower, stats)
    wall0 = time.time()
    t0 = time.monotonic()
    victim.kill9()
    new = cluster.engine(data_dir)
    rec, waiting = await wait_recovery(follower, t0, open_at, RECOVERY_CAP_S)
    stats.engine_kills.append({"victim": victim.name, "pid": victim.pid, "lived_s": round(t0 - victim.started_at, 1),
                               "replacement": new.name, "reused_data_dir": data_dir is not None, "data_dir": data_dir,
                               "wave": wave, "in_flight": len(open_at), "recovery_s": rec, "stuck": waiting[:5],
                               "at_wall_ms": int(wall0 * 1000)})
    stats.say(f"engine kill {k + 1}/{ENGINE_KILLS}: kill -9 {victim.name} (pid {victim.pid}, up "
              f"{t0 - victim.started_at:.1f}s), started {new.name}"
              f"{' reusing ' + data_dir.name if data_dir else ''}; {len(open_at)} workflows in flight "
              f"({wave} just started), "
              + (f"all progressed after {rec:.2f}s" if rec is not None else
                 f"NOT RECOVERED after {RECOVERY_CAP_S:.0f}s: {len(waiting)} stuck, e.g. {waiting[:5]}"))


async def engine_pause(j: int, cluster: ChaosCluster, follower: EventFollower, load: Load, stats: Stats,
                       rng: random.Random) -> None:
    """SIGSTOP an engine worker past its session timeout under load, then SIGCONT (a zombie)."""
    wave = load.wave()
    await asyncio.sleep(rng.uniform(0.05, 0.5))
    engines = cluster.alive("engine")
    settled = [e for e in engines if time.monotonic() - e.started_at > 5]
    victim = rng.choice(settled or engines)
    stall = stats.session_timeout + rng.uniform(*PAUSE_EXTRA_S)
    open_at = in_flight(follower, stats)
    wall0 = time.time()
    t0 = victim.pause()
    recovery = asyncio.create_task(wait_recovery(follower, t0, open_at, RECOVERY_CAP_S))
    # Once its session expired the other worker owns its partitions: more work for the new
    # owner there, so that both hold the same workflows when the stalled one wakes up.
    await asyncio.sleep(min(stall, stats.session_timeout + 1.5))
    mid = load.wave(WAVE // 2)
    await asyncio.sleep(max(0.0, t0 + stall - time.monotonic()))
    stalled = victim.resume()
    rec, waiting = await recovery
    await asyncio.sleep(2.0)  # time to write what it still held, or to notice it was fenced
    alive = victim.alive()
    new = None if alive else cluster.engine()
    stats.engine_pauses.append({"victim": victim.name, "pid": victim.pid, "at": time.strftime("%H:%M:%S", time.localtime(wall0)),
                                "at_wall_ms": int(wall0 * 1000), "stalled_s": round(stalled, 1),
                                "wave": wave + mid, "in_flight": len(open_at), "recovery_s": rec, "stuck": waiting[:5],
                                "after": "kept running" if alive else f"exited ({victim.p.returncode if victim.p else '?'})",
                                "replacement": new.name if new else None})
    stats.say(f"engine pause {j + 1}/{ENGINE_PAUSES}: SIGSTOP {victim.name} (pid {victim.pid}) for {stalled:.1f}s "
              f"(session timeout {stats.session_timeout:g}s), then SIGCONT; {len(open_at)} workflows in flight "
              f"({wave} just started, {mid} more once its session expired), "
              + (f"all progressed after {rec:.2f}s" if rec is not None else
                 f"NOT RECOVERED after {RECOVERY_CAP_S:.0f}s: {len(waiting)} stuck, e.g. {waiting[:5]}")
              + ("; woke up and kept running" if alive else f"; exited after it woke up, started {new.name}"))  # type: ignore[union-attr]


def busiest_leader(settings: Settings, names: TopicNames, spare: int | None) -> tuple[int, int]:
    """(broker id, partitions it leads) of the broker that leads the most partitions of the
    events and commands topics (another than ``spare`` when there is a choice)."""
    from confluent_kafka.admin import AdminClient

    md = AdminClient(settings.confluent_config()).list_topics(timeout=10)
    led: Counter[int] = Counter()
    for topic in (names.events, names.commands):
        for part in md.topics[topic].partitions.values():
            if part.leader >= 0:
                led[part.leader] += 1
    ranked = [b for b, _ in led.most_common() if b != spare] or [b for b, _ in led.most_common()]
    return ranked[0], led[ranked[0]]


async def broker_kills(own: OwnCluster, settings: Settings, follower: EventFollower, load: Load, stats: Stats,
                       rng: random.Random, kept: list[Spec]) -> None:
    """kill -9 the busiest leader broker under load, measure until progress resumes, restart it."""
    loop = asyncio.get_running_loop()
    names = TopicNames(settings.topic_prefix)
    last: int | None = None
    for k in range(BROKER_KILLS):
        node, leads = await loop.run_in_executor(None, busiest_leader, settings, names, last)
        load.queue[:0] = kept[k * (WAVE + 10):(k + 1) * (WAVE + 10)]  # the trickle may have ended by now
        load.wave(WAVE + 10)
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        open_at = in_flight(follower, stats)
        t0 = time.monotonic()
        stats.broker_down = own
        r = await loop.run_in_executor(None, own.run, "kill", node)
        assert r.returncode == 0, f"kafka-local kill --cluster {node} failed: {r.stdout}{r.stderr}"
        rec, waiting = await wait_recovery(follower, t0, open_at, RECOVERY_CAP_S)
        await asyncio.sleep(rng.uniform(3.0, 6.0))  # the load goes on with a broker down
        down_s = time.monotonic() - t0
        r = await loop.run_in_executor(None, own.run, "start", node)
        assert r.returncode == 0, f"kafka-local start --cluster {node} failed: {r.stdout}{r.stderr}"
        stats.broker_down = None
        back_s = time.monotonic() - t0
        stats.broker_kills.append({"node": node, "led_partitions": leads, "in_flight": len(open_at),
                                   "recovery_s": rec, "stuck": waiting[:5], "down_s": round(down_s, 1),
                                   "restarted_after_s": round(back_s, 1)})
        stats.say(f"broker kill {k + 1}/{BROKER_KILLS}: kill -9 node {node} (leader of {leads} events/commands "
                  f"partitions); {len(open_at)} workflows in flight, "
                  + (f"all progressed after {rec:.2f}s on the other brokers" if rec is not None else
                     f"NOT RECOVERED after {RECOVERY_CAP_S:.0f}s: {len(waiting)} stuck, e.g. {waiting[:5]}")
                  + f"; node {node} started again {back_s:.1f}s after the kill")
        last = node
        await asyncio.sleep(rng.uniform(2.0, 4.0))


async def drive(cluster: ChaosCluster, follower: EventFollower, load: Load, stats: Stats, rng: random.Random,
                own_broker: OwnBroker | OwnCluster | None, skip_restart: str, slow_specs: list[Spec]) -> None:
    loop = asyncio.get_running_loop()
    # The broker kills come after the engine faults: keep their waves out of the trickle.
    kept: list[Spec] = []
    if isinstance(own_broker, OwnCluster):
        n = min(len(load.queue) // 3, BROKER_KILLS * (WAVE + 10))
        kept, load.queue = load.queue[len(load.queue) - n:], load.queue[:len(load.queue) - n]
    await asyncio.sleep(3)
    # -------------------------------------------------------------- engine workers: kills and stalls
    kills = pauses = 0
    for fault in fault_schedule(ENGINE_KILLS, ENGINE_PAUSES):
        if fault == "kill":
            await engine_kill(kills, cluster, follower, load, stats, rng)
            kills += 1
        else:
            await engine_pause(pauses, cluster, follower, load, stats, rng)
            pauses += 1
        await asyncio.sleep(rng.uniform(1.0, 3.0))
    # -------------------------------------------------------------- the broker
    stats.broker_skipped = skip_restart
    if isinstance(own_broker, OwnCluster):
        await broker_kills(own_broker, cluster.settings, follower, load, stats, rng, kept)  # type: ignore[arg-type]
    elif own_broker is None:
        stats.say(f"broker restart skipped: {stats.broker_skipped}")
    else:
        load.wave(WAVE + 10)
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        open_at = in_flight(follower, stats)
        t0 = time.monotonic()
        stats.broker_down = own_broker
        r = await loop.run_in_executor(None, own_broker.run, "stop")
        assert r.returncode == 0, f"kafka-local stop failed: {r.stdout}{r.stderr}"
        down = time.monotonic()
        await asyncio.sleep(2.0)
        r = await loop.run_in_executor(None, own_broker.run, "start")
        assert r.returncode == 0, f"kafka-local start failed: {r.stdout}{r.stderr}"
        stats.broker_down = None
        up = time.monotonic()
        follower.reconnect()
        rec, waiting = await wait_recovery(follower, t0, open_at, RECOVERY_CAP_S, ref=up)
        stats.broker_restart = {"stop_s": round(down - t0, 1), "down_s": round(up - down, 1), "in_flight": len(open_at),
                                "recovery_s": rec, "stuck": waiting[:5]}
        stats.say(f"broker stopped ({down - t0:.1f}s) and started again ({up - down:.1f}s down); "
                  f"{len(open_at)} workflows in flight, "
                  + (f"all progressed {rec:.2f}s after the broker was back" if rec is not None else
                     f"NOT RECOVERED after {RECOVERY_CAP_S:.0f}s: {len(waiting)} stuck, e.g. {waiting[:5]}"))
        await asyncio.sleep(1.0)
    # -------------------------------------------------------------- an activity worker, mid-activity
    load.queue[:0] = slow_specs
    load.wave(len(slow_specs) + WAVE)
    import socket

    host = socket.gethostname()
    deadline = time.monotonic() + 60
    victim = None
    while time.monotonic() < deadline and victim is None:
        for p in cluster.alive("activities"):
            running = follower.running_on(f"{host}:{p.pid}:")
            if any(w.startswith("slowflow-") for w in running):
                victim, hit = p, running
                break
        else:
            await asyncio.sleep(0.05)
    if victim is None:
        stats.say("activity worker kill: no slow activity was seen running within 60s (skipped)")
        return
    t0 = time.monotonic()
    victim.kill9()
    new = cluster.activities()
    rec, waiting = await wait_recovery(follower, t0, hit, 120.0)
    # Recovery here = every workflow whose attempt died with the worker closed (retried elsewhere).
    closed_at: float | None = None
    while time.monotonic() - t0 < 120:
        if set(hit) <= follower.closed():
            closed_at = time.monotonic() - t0
            break
        await asyncio.sleep(0.1)
    stats.activity_kills.append({"victim": victim.name, "pid": victim.pid, "attempts_lost": len(hit),
                                 "progress_s": rec, "completed_s": closed_at, "replacement": new.name})
    stats.say(f"activity worker kill: kill -9 {victim.name} (pid {victim.pid}) while it ran {len(hit)} attempt(s) "
              f"({sorted(hit)[:4]}), started {new.name}; their workflows "
              + (f"completed after {closed_at:.1f}s" if closed_at is not None else "did NOT complete within 120s"))


# ============================================================================ the test


@pytest.fixture
def chaos_broker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, OwnBroker | OwnCluster | None, str]]:
    """``(bootstrap, own broker or None, why the restart is skipped)``: a kafka-local broker of
    this test's own (the restart must not hit the session broker, which other tests and other
    people use at the same time), or the session broker when the restart is off."""
    if os.environ.get("AION_CHAOS_BROKER_RESTART", "1") == "0":
        yield kafka_bootstrap, None, "AION_CHAOS_BROKER_RESTART=0"
        return
    if shutil.which("java") is None:
        yield kafka_bootstrap, None, "Java is not installed: no kafka-local broker of the test's own to restart"
        return
    data = tmp_path_factory.mktemp("kafka-chaos")
    own: OwnBroker | OwnCluster = OwnCluster.on_free_ports(data) if CLUSTER else OwnBroker.on_free_ports(data)
    try:
        started = time.monotonic()
        r = start_new(own)
        assert r.returncode == 0, f"kafka-local start (the chaos test's own broker) failed:\n{r.stdout}{r.stderr}"
        print(f"[chaos] own broker on {own.bootstrap} started in {time.monotonic() - started:.1f}s", flush=True)
        yield own.bootstrap, own, ""
    finally:
        r = own.run("stop")
        if r.returncode != 0:
            print(f"kafka-local stop (the chaos test's own broker): {r.stdout}{r.stderr}")
        shutil.rmtree(data, ignore_errors=True)


async def test_chaos(chaos_broker: tuple[str, OwnBroker | OwnCluster | None, str], topic_prefix: str, tmp_path: Path) -> None:
    kafka_bootstrap, own_broker, skip_restart = chaos_broker
    seed = int(os.environ.get("AION_CHAOS_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    stats = Stats(seed=seed)
    t_begin = time.monotonic()
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=PARTITIONS,
                        data_dir=tmp_path, replication_factor=3 if isinstance(own_broker, OwnCluster) else 1)
    ensure_topics(settings)
    names = TopicNames(settings.topic_prefix)
    specs = make_specs(rng, N_WORKFLOWS)
    slow_specs = [Spec(f"slowflow-x{i}", "SlowFlow", [f"x{i}"]) for i in range(SLOW_FLOWS)]
    expected: dict[str, Expectation] = {}
    for s in [*specs, *slow_specs]:
        expected.update(s.expectations())
    stats.say(f"seed {seed}; prefix {topic_prefix}; {len(specs) + len(slow_specs)} root workflows "
              f"({len(expected)} with children) on {PARTITIONS} partitions; broker {kafka_bootstrap}"
              f"{' (its own kafka-local, restartable)' if own_broker else ''}"
              f"{', replication factor 3, min.insync.replicas 2' if settings.replication_factor == 3 else ''}")

    cluster = ChaosCluster(settings, tmp_path)
    stats.session_timeout = Settings.from_env(cluster.env).session_timeout
    stats.say(f"workers' session timeout (AION_SESSION_TIMEOUT): {stats.session_timeout:g}s")
    follower = EventFollower(settings.confluent_config(), names.events, PARTITIONS).start()
    client: Client | None = None
    try:
        cluster.engine()
        cluster.engine()
        cluster.activities()
        cluster.activities()
        client = await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix,
                                      settings=settings, rpc_timeout=20.0)
        warm = _probe_ids(PARTITIONS, "warmup")
        await asyncio.gather(*(start_spec(client, Spec(w, "ActivityFlow", [w, 0]), stats) for w in warm))
        for w in warm:
            expected[w] = Expectation("COMPLETED", f"done:{w}", runs=1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not set(warm) <= follower.closed():
            await asyncio.sleep(0.1)
        assert set(warm) <= follower.closed(), f"the engine workers did not come up within 120s\n{cluster.logs()}"
        stats.say(f"2 engine and 2 activity workers up: a workflow on every partition completed "
                  f"{time.monotonic() - t_begin:.1f}s after the start")
        load = Load(client, specs, stats)
        trickle = asyncio.create_task(load.trickle())
        try:
            await drive(cluster, follower, load, stats, rng, own_broker, skip_restart, slow_specs)
        finally:
            load.done.set()
        await trickle
        t_chaos_end = time.monotonic()
        stats.say(f"faults done after {t_chaos_end - t_begin:.0f}s; {stats.started} workflows started "
                  f"({stats.start_retries} start retries, {stats.signals} signals, {stats.signal_retries} signal retries)")

        # ---------------------------------------------------------------- drain
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            missing = set(expected) - follower.closed()
            if not missing:
                break
            await asyncio.sleep(0.2)
        missing = sorted(set(expected) - follower.closed())
        if missing:
            stats.say(f"{len(missing)} workflows did not close within {DRAIN_TIMEOUT_S:.0f}s, e.g. "
                      + ", ".join(f"{w} (last seq {t.max_seq} {t.last_type})" if (t := follower.track(w)) else f"{w} (no events)"
                                  for w in missing[:8]))
            print(cluster.logs(), flush=True)
        else:
            stats.say(f"all {len(expected)} workflows closed {time.monotonic() - t_chaos_end:.1f}s after the faults")

        # ---------------------------------------------------------------- hand over, then stop
        engines = cluster.alive("engine")
        last = engines[-1]
        reused_dirs = {k["data_dir"] for k in stats.engine_kills if k.get("data_dir")}
        for e in engines[:-1]:
            e.stop()
        probes = _probe_ids(PARTITIONS)
        for wid in probes:
            await start_spec(client, Spec(wid, "ActivityFlow", [wid, 0]), stats)
            expected[wid] = Expectation("COMPLETED", f"done:{wid}", runs=1)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not set(probes) <= follower.closed():
            await asyncio.sleep(0.2)
        assert set(probes) <= follower.closed(), (
            f"the last engine worker {last.name} did not take over every partition within 90s "
            f"(probe workflows {sorted(set(probes) - follower.closed())} open)\n{cluster.logs()}")
        last.stop()
        last_stopped_ms = int(time.time() * 1000)
        for a in cluster.alive("activities"):
            a.stop()
        stats.say(f"{last.name} took over all {PARTITIONS} partitions and stopped; checking")

        # ---------------------------------------------------------------- the events topic
        log = read_event_log(settings)
        report = check_event_log(log, expected=expected, only_expected=True, require_closed=True,
                                 strict_recorded_at=True, lost_timer_grace_ms=LOST_TIMER_GRACE_MS)
        dlq = _dead_letters(settings)
        tables = _compare_tables(settings, last.data_dir, log, reused=last.data_dir in reused_dirs)
        if tables["problems"]:
            stats.say(f"the last engine worker stopped at {last_stopped_ms} ms since the epoch")
        _print_summary(stats, report, follower, cluster, tables, dlq, time.monotonic() - t_begin)

        assert not log.undecided, (f"transactions still open when the events topic was read (partition: "
                                   f"(last stable offset, high watermark)): {log.undecided}")
        report.raise_for_violations()
        assert not dlq, f"{len(dlq)} commands were dead-lettered under chaos, e.g. {dlq[:3]}"
        for problem in tables["problems"]:
            raise AssertionError(f"engine tables differ from the events topic: {problem}")
    finally:
        if client is not None:
            await client.close()
        follower.stop()
        cluster.stop()
        if stats.broker_down:  # the restart failed half-way: started again, to be stopped cleanly
            stats.broker_down.run("start")


def _dead_letters(settings: Settings) -> list[str]:
    from confluent_kafka import Consumer, TopicPartition

    topic = TopicNames(settings.topic_prefix).dlq
    c = Consumer({**settings.confluent_config(), "group.id": f"chaos-dlq-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return []
        out: list[str] = []
        for p in md.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi <= lo:
                continue
            c.assign([TopicPartition(topic, p, lo)])
            while True:
                m = c.poll(5)
                if m is None or m.error() is not None:
                    break
                headers = dict(m.headers() or [])
                out.append(f"{m.key()!r}: {headers.get('aion.reason', b'').decode(errors='replace')}")
                if m.offset() >= hi - 1:
                    break
        return out
    finally:
        c.close()


def _compare_tables(settings: Settings, data_dir: Path | None, log: Any, reused: bool) -> dict[str, Any]:
    """The stopped worker's tables vs the events topic: the ``history`` table row by row
    against the records read, then every table against ``aion rebuild`` — run on a copy of
    the data folder (swap, keep the replaced tables) so that the rows that differ can be named.

    A row whose value the table's changelog never carried (*unlogged*) fails: a write a killed
    worker made to its local RocksDB before its transaction committed, kept by a worker that
    later reused that data folder. The timer wheel wrote its rows so until 2026-12-04 (they are
    pending until the commit now), and every run whose last worker reused a folder had some.

    Two kinds of difference were diagnosed in the timer wheel and reported; they are listed
    apart (``known``, printed as KNOWN ISSUE, the first three with their changelog records and
    their workflow's events). They fail the test like any other difference since 2026-12-05
(30 strict runs clean across sessions); ``AION_CHAOS_STRICT_TABLES=0`` only reports them:

    - *orphaned*: a ``timers`` time row of a timer that was armed again at another due time
      (the recovery effects re-arm a heartbeat timeout from "now") before the new owner had
      loaded the old row into memory, so the old row was never deleted. Fixed on 2026-12-04: a
      batch that reaches a partition before the wheel's loop loaded its window loads it first
      (``TimerWheel._loaded_part``);
    - *leaked*: a ``timer_terminal`` row of one timer (fired / cancelled) of a run whose closed
      marker is there too, where the rebuild has none (closing a run deletes its timers' rows):
      seen under broker kills and starvation; harmless to what fires (the closed marker and the
      row both say "do not fire"), a leak of one small row per timer. It fits the race fixed on
      2026-12-04 (Faust's recovery applying the engine's own records again behind it, which
      brought a deleted timer row back: ``_faust.skip_recovery_of``); none seen since.

    Every other difference fails the test."""
    import shutil

    from aion.codec import Codec
    from rocksdict import AccessType, Options, Rdict

    assert data_dir is not None
    from aion.engine._timers import META_LOW, TIME_END

    out: dict[str, Any] = {"problems": [], "known": [], "digests": {}, "history_rows": 0, "method": "",
                           "reused_data_dir": reused}

    def known(what: str, table: str, part: int, key: bytes) -> None:
        """A known kind of difference; the first three with their trail."""
        out["known"].append(what + (_row_trail(settings, table, part, key, log) if len(out["known"]) < 3 else ""))

    def rows(path: Path) -> dict[bytes, bytes]:
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            return {k: v for k, v in db.items() if not k.startswith(b"__faust")}
        finally:
            db.close()

    # 1. history, row by row, against the compacted view of the records we read.
    codec = Codec()
    want: dict[int, dict[bytes, bytes]] = {p: {} for p in range(settings.partitions)}
    for r in log.records:
        if r.key is None:
            continue
        if r.value is None:
            want[r.partition].pop(r.key, None)
        else:
            want[r.partition][r.key] = r.value
    paths = {int(p.name[len("history-"):-3]): p for p in data_dir.glob("**/tables/history-*.db")}
    for part in range(settings.partitions):
        path = paths.get(part)
        if path is None:
            out["problems"].append(f"{data_dir} has no history table for partition {part}")
            continue
        got = rows(path)
        out["history_rows"] += len(got)
        for k in sorted(set(got) | set(want[part])):
            if got.get(k) != want[part].get(k):
                key = codec.decode_event_key(k)
                what = "missing" if k not in got else ("extra" if k not in want[part] else "different")
                out["problems"].append(f"history partition {part}: {what} row for {key.workflow_id!r} seq {key.seq}")
                break
    out["method"] = "history table row by row"
    # 2. aion rebuild of a copy of the folder; then the rows of the tables whose digests differ.
    try:
        from aion.engine._rebuild import rebuild_tables
    except ImportError:
        out["method"] += "; aion rebuild not available (history compared directly only)"
        return out
    copy = data_dir.parent / f"{data_dir.name}-rebuilt"
    shutil.copytree(data_dir, copy)
    rep = rebuild_tables(settings.replace(data_dir=copy), swap=True, keep_backup=True)
    out["method"] += "; aion rebuild digests"
    logged: dict[str, dict[int, dict[bytes, set[bytes | None]]]] = {}
    for d in rep.digests:
        out["digests"][d.table] = {"matches": d.matches, "rows": d.old_rows, "rebuilt_rows": d.new_rows,
                                   "only_old": d.only_old, "only_new": d.only_new, "different": d.different}
        if d.matches:
            continue
        if rep.backup_dir is None:
            out["problems"].append(f"table {d.table!r}: digest {d.old[:12]} != rebuilt {d.new[:12]}")
            continue
        if d.table not in logged:
            logged[d.table] = _changelog_values(settings, d.table)
        for part in range(settings.partitions):
            old_path, new_path = rep.backup_dir / f"{d.table}-{part}.db", rep.table_dir / f"{d.table}-{part}.db"
            old = rows(old_path) if old_path.exists() else {}
            new = rows(new_path) if new_path.exists() else {}
            changelog = logged[d.table].get(part, {})
            for k in sorted(set(old) | set(new)):
                if old.get(k) == new.get(k) or k == META_LOW:  # the scan position is bookkeeping
                    continue
                row = (f"table {d.table!r} partition {part} key {k!r}: worker has {old.get(k)!r}, "
                       f"the rebuild {new.get(k)!r}")
                if k in old and old[k] not in changelog.get(k, set()):
                    # A value the changelog never carried: a write that reached RocksDB before
                    # (or without) its transaction's commit. The timer wheel wrote its rows so
                    # until 2026-12-04; every run whose last worker reused a folder had some.
                    out["problems"].append(f"unlogged (a value its changelog never carried): {row}"
                                           + _row_trail(settings, d.table, part, k, log))
                elif d.table == "timers" and k not in new and k < TIME_END and any(
                        other != k and other < TIME_END and other[8:] == k[8:] for other in changelog):
                    known(f"orphaned (its timer was armed again at another time): {row}", d.table, part, k)
                elif d.table == "timer_terminal" and k not in new and old[k] in (b"F", b"C") \
                        and new.get(k[:k.rfind(b"\x00") + 1]) == b"X":
                    known(f"leaked (a timer's row beside its run's closed marker): {row}", d.table, part, k)
                else:
                    out["problems"].append(row + _row_trail(settings, d.table, part, k, log))
    if os.environ.get("AION_CHAOS_STRICT_TABLES", "1") != "0":
        out["problems"].extend(out["known"])
    return out


def _row_trail(settings: Settings, table: str, partition: int, key: bytes, log: Any) -> str:
    """What explains one differing row: the key's records on the table's changelog in offset
    order (and, for a ``timers`` time row, its index row's), and the events of its workflow."""
    from aion.engine._timers import INDEX_PREFIX, TIME_END, parse_ident

    keys = [key]
    wid = None
    if table == "timers" and key < TIME_END:
        keys.append(INDEX_PREFIX + key[8:])
        wid = parse_ident(key[8:])[0]
    elif table == "timer_terminal":
        wid = key.split(b"\x00", 1)[0].decode()
    trail = _changelog_trail(settings, table, partition, set(keys))
    lines = [f"\n  changelog of {k!r}: " + (", ".join(f"@{o} {v!r}" for o, v in trail.get(k, [])) or "no record")
             for k in keys]
    if wid is not None:
        evs = [r.event for r in log.records if r.event is not None and r.event.workflow_id == wid]
        lines.append(f"\n  events of {wid!r}: " + ", ".join(
            f"{e.seq} {type(e.body).__name__}{'(' + str(getattr(e.body, 'timer_id')) + ')' if hasattr(e.body, 'timer_id') else ''}"
            f"@{e.recorded_at_ms}" for e in evs))
        data_dir = settings.data_dir
        for f in sorted(Path(data_dir).glob("engine*.log")) if data_dir is not None else []:
            said = [line for line in f.read_text(errors="replace").splitlines() if wid in line]
            if said:
                lines.append(f"\n  {f.name} says of {wid!r}:\n    " + "\n    ".join(said[-20:]))
    return "".join(lines)


def _changelog_trail(settings: Settings, table: str, partition: int, keys: set[bytes]) -> dict[bytes, list[tuple[int, bytes | None]]]:
    """The records of ``keys`` on one partition of an engine table's changelog, in offset order
    (committed ones only: the engine's own reader, as its catch-up reads)."""
    from aion.engine._changelog import scan_events

    out: dict[bytes, list[tuple[int, bytes | None]]] = {}
    for _p, offset, key, value in scan_events(settings, [partition], topic=f"{settings.topic_prefix}-engine-{table}-changelog",
                                              timeout_s=60):
        if key in keys:
            out.setdefault(key, []).append((offset, value))
    return out


def _changelog_values(settings: Settings, table: str) -> dict[int, dict[bytes, set[bytes | None]]]:
    """Every value each key of an engine table's changelog topic ever had, per partition."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    topic = f"{settings.topic_prefix}-engine-{table}-changelog"
    c = Consumer({**settings.confluent_config(), "group.id": f"chaos-changelog-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    out: dict[int, dict[bytes, set[bytes | None]]] = {}
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return out
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in md.partitions}
        pending = {p for p, (lo, hi) in ends.items() if hi > lo}
        c.assign([TopicPartition(topic, p, ends[p][0]) for p in pending])
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(m.partition())
                continue
            out.setdefault(m.partition(), {}).setdefault(m.key(), set()).add(m.value())
            if m.offset() >= ends[m.partition()][1] - 1:
                pending.discard(m.partition())
        return out
    finally:
        c.close()


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}s"


def _first_per_invariant(violations: list[Any], n: int) -> list[Any]:
    seen: Counter[str] = Counter()
    out = []
    for v in violations:
        seen[v.invariant] += 1
        if seen[v.invariant] <= n:
            out.append(v)
    return out


def _relative_to_faults(ms: int, stats: Stats) -> str:
    """When a re-write was recorded, relative to the last engine fault before it."""
    faults = sorted([(k["at_wall_ms"], "kill", k) for k in stats.engine_kills]
                    + [(p["at_wall_ms"], "pause", p) for p in stats.engine_pauses], key=lambda f: f[0])
    before = [f for f in faults if f[0] <= ms]
    if not before:
        return "before the first engine fault"
    at, kind, f = before[-1]
    if kind == "kill":
        return f"{(ms - at) / 1000:+.1f}s from the kill -9 of {f['victim']}"
    woke = at + f["stalled_s"] * 1000
    return (f"{(ms - woke) / 1000:+.1f}s from the SIGCONT of {f['victim']}" if ms >= woke
            else f"during the stall of {f['victim']} (+{(ms - at) / 1000:.1f}s)")


def _print_summary(stats: Stats, report: Any, follower: EventFollower, cluster: ChaosCluster, tables: dict[str, Any],
                   dlq: list[str], wall_s: float) -> None:
    recs = [k["recovery_s"] for k in stats.engine_kills if k["recovery_s"] is not None]
    engines = [p for p in cluster.procs if p.kind == "engine"]
    acts = [p for p in cluster.procs if p.kind == "activities"]
    lines = [
        "",
        "================ chaos run ================",
        f"seed {stats.seed}; wall time {wall_s:.0f}s; workers' session timeout {stats.session_timeout:g}s",
        f"workflows: {report.workflows} ({stats.started} started by the client incl. probes, the rest children); "
        f"statuses {dict(report.statuses)}",
        f"engine kills (kill -9): {len(stats.engine_kills)}, of which {sum(k['reused_data_dir'] for k in stats.engine_kills)} "
        f"restarted on a dead worker's data folder; engine processes started: {len(engines)}",
        f"engine pauses (SIGSTOP past the session timeout, then SIGCONT): {len(stats.engine_pauses)}"
        + "".join(f"; {p['victim']} (pid {p['pid']}) at {p['at']} for {p['stalled_s']}s, takeover "
                  f"{_ms(p['recovery_s'])}, {p['after']}" for p in stats.engine_pauses),
        "recovery after an engine kill (until every in-flight workflow recorded a new event): "
        + (f"median {statistics.median(recs):.2f}s, max {max(recs):.2f}s over {len(recs)} kills" if recs else "-")
        + (f"; {len(stats.engine_kills) - len(recs)} kills NOT recovered within {RECOVERY_CAP_S:.0f}s" if len(recs) < len(stats.engine_kills) else ""),
        ("broker kills (kill -9 of the busiest leader, 3 brokers, RF 3, min ISR 2): " + "; ".join(
            f"node {b['node']} (led {b['led_partitions']}, {b['in_flight']} in flight): progress resumed after "
            f"{_ms(b['recovery_s'])}, restarted after {b['restarted_after_s']}s" for b in stats.broker_kills)
         if stats.broker_kills else
         "broker restart: " + (f"recovery {_ms(stats.broker_restart['recovery_s'])} after it was back "
                              f"(stop {stats.broker_restart['stop_s']}s, down {stats.broker_restart['down_s']}s, "
                              f"{stats.broker_restart['in_flight']} in flight)" if stats.broker_restart else f"skipped ({stats.broker_skipped})")),
        "activity worker kills (kill -9 mid-activity): " + (", ".join(
            f"{k['attempts_lost']} attempt(s) lost, their workflows completed after {_ms(k['completed_s'])}"
            for k in stats.activity_kills) or "none") + f"; activity worker processes started: {len(acts)}",
        f"events topic: {report.records} records checked ({report.rewrite_records} re-written records of "
        f"{report.rewritten_keys} keys, {len(report.recorded_at_drifts)} with another recorded_at), "
        f"{report.events} events, {report.runs} runs, {report.timers} timers, {report.activities} activities "
        f"({report.activity_retries} retried attempts), {report.signals} signals, {report.children} children",
        f"dead letters: {len(dlq)}",
        f"tables of {'a reused' if tables['reused_data_dir'] else 'a fresh'} data folder ({tables['method']}): "
        f"{tables['history_rows']} history rows; "
        + ", ".join(f"{t}: {'match' if d['matches'] else 'DIFFER'} ({d['rows']} rows)" for t, d in tables["digests"].items()),
        f"invariant violations (strict: any re-write of a seq with another field is one): {len(report.violations)}"
        + (f" {dict(sorted(report.by_invariant().items()))}; first: {report.violations[0]}" if report.violations else ""),
        "==========================================",
    ]
    for d in report.recorded_at_drifts[:5]:
        lines.insert(-1, f"recorded_at drift: {d} (first stamped {_relative_to_faults(d.first_ms, stats)}, "
                         f"the later record stamped {_relative_to_faults(d.other_ms, stats)})")
    for v in _first_per_invariant(report.violations, 3):
        lines.insert(-1, f"violation: {v}")
    for p in tables["problems"][:5]:
        lines.insert(-1, f"table problem: {p}")
    for p in tables["known"][:5]:
        lines.insert(-1, f"KNOWN ISSUE (timer wheel, reported; fails the test unless AION_CHAOS_STRICT_TABLES=0): {p}")
    print("\n".join(lines), flush=True)
    out = os.environ.get("AION_CHAOS_REPORT")
    if out:
        Path(out).write_text(json.dumps({
            "seed": stats.seed, "wall_s": round(wall_s, 1), "session_timeout_s": stats.session_timeout, "workflows": report.workflows,
            "engine_kills": stats.engine_kills, "engine_pauses": stats.engine_pauses,
            "broker_restart": stats.broker_restart, "broker_kills": stats.broker_kills,
            "broker_skipped": stats.broker_skipped, "activity_kills": stats.activity_kills,
            "engine_processes": len(engines), "activity_processes": len(acts),
            "records_checked": report.records, "rewrites": report.rewrite_records,
            "recorded_at_drifts": len(report.recorded_at_drifts), "events": report.events,
            "recovery_median_s": statistics.median(recs) if recs else None, "recovery_max_s": max(recs) if recs else None,
            "tables": tables, "violations": [str(v) for v in report.violations[:20]], "dead_letters": dlq[:20],
        }, indent=2, default=str))
