"""Timer benchmark: fire lag through Kafka, and the wheel with 1,000,000 pending timers.

:func:`run` (called by ``aion bench timers``) measures two things:

1. **Fire lag through a real deployment**: an engine worker process on a fresh topic
   prefix, ``n`` workflows (:class:`TimerBenchSleep`) each sleeping until an absolute due
   time spread evenly over ``duration`` seconds. The lag of a timer is its ``TimerFired``
   event's recorded time minus its ``TimerStarted.fire_at_ms``, read back from the events
   topic; p50/p99/max over all of them. With ``load_rate`` (``aion bench --timer-load-rate``,
   100/s by default), one-activity workflows (``BenchOne``, through an activity worker of
   their own) start at that rate while the timers fall due: the lag users see under load,
   with the load's own start→result latency beside it.
2. **1,000,000 pending timers, in process**: the engine's own :class:`~aion.engine._wheel.TimerWheel`
   on RocksDB (rocksdict, as Faust opens it) behind a stand-in for Faust (changelog sends
   and FireTimer sends complete at once; no broker). Running a million timer starts through
   Kafka would take tens of minutes on a 2-core machine and measure the engine's start
   throughput rather than the wheel. It reports the resident memory the pending timers add
   (all due beyond the in-memory window, and the worst case: all within the window), the
   cost of arming them in batches, and the longest stretch a wheel tick held the event loop
   (measured by a probe task sleeping 1 ms in a loop, as the engine's command processing
   would) while firing a burst of due timers among the million.

Targets (2-core machine, broker local): p99 lag <= 50 ms; 1M pending <= 500 MB resident; a
tick never blocks command processing for more than 10 ms.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

from .. import workflow
from ..codec import Codec
from ..common.settings import Settings
from ..common.topics import TopicNames, ensure_topics
from ..model import Command, Event, FireTimer, TimerFired, TimerStarted

__all__ = ["run", "read_events", "read_commands", "produce_commands", "fire_lags", "fire_split", "wheel_in_process",
           "TimerBenchSleep"]


@workflow.defn
class TimerBenchSleep:
    """Sleeps until the absolute time ``at_ms`` (one durable timer due exactly then)."""

    @workflow.run
    async def run(self, at_ms: int) -> int:
        await workflow.sleep(max(1, at_ms - int(workflow.time() * 1000)) / 1000)
        return at_ms


# ============================================================================ Kafka helpers


def _consumer(settings: Settings) -> Any:
    from confluent_kafka import Consumer

    return Consumer({**settings.confluent_config(), "group.id": f"{settings.topic_prefix}.timers-read.{uuid.uuid4().hex}",
                     "enable.auto.commit": False, "enable.partition.eof": True, "auto.offset.reset": "earliest",
                     "isolation.level": "read_committed"})


def _read_topic(settings: Settings, topic: str, timeout: float) -> Iterable[tuple[bytes | None, bytes | None]]:
    """Every record of ``topic`` up to its end offsets at the call (all partitions)."""
    from confluent_kafka import KafkaError, TopicPartition

    c = _consumer(settings)
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(md.partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts}
        pending = {p for p in parts if ends[p][1] > ends[p][0]}
        if not pending:
            return
        c.assign([TopicPartition(topic, p, ends[p][0]) for p in sorted(pending)])
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for m in c.consume(10_000, 0.5):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF and m.offset() >= ends[m.partition()][1]:
                        pending.discard(m.partition())
                    continue
                if m.offset() < ends[m.partition()][1]:
                    yield m.key(), m.value()
                if m.offset() >= ends[m.partition()][1] - 1:
                    pending.discard(m.partition())
        if pending:
            raise TimeoutError(f"reading {topic}: partitions {sorted(pending)} not read to their end in {timeout}s")
    finally:
        c.close()


def read_events(settings: Settings, workflow_ids: Iterable[str] | None = None, *,
                timeout: float = 60.0, codec: Codec | None = None) -> dict[str, list[Event]]:
    """The histories of ``workflow_ids`` (all when None) from the events topic, by seq."""
    codec = codec or Codec(registry_url=settings.schema_registry_url)
    wanted = None if workflow_ids is None else set(workflow_ids)
    by_key: dict[tuple[str, int], Event] = {}
    for _key, value in _read_topic(settings, TopicNames(settings.topic_prefix).events, timeout):
        if value is None:
            continue
        ev = codec.decode_event(value)
        if wanted is None or ev.workflow_id in wanted:
            by_key[(ev.workflow_id, ev.seq)] = ev
    out: dict[str, list[Event]] = {}
    for (wid, _), ev in sorted(by_key.items()):
        out.setdefault(wid, []).append(ev)
    return out


def read_commands(settings: Settings, workflow_ids: Iterable[str] | None = None, *,
                  timeout: float = 60.0, codec: Codec | None = None) -> list[Command]:
    """Commands on the commands topic (of ``workflow_ids``), per partition in offset order."""
    codec = codec or Codec(registry_url=settings.schema_registry_url)
    wanted = None if workflow_ids is None else set(workflow_ids)
    out = []
    for _key, value in _read_topic(settings, TopicNames(settings.topic_prefix).commands, timeout):
        if value is None:
            continue
        try:
            cmd = codec.decode_command(value)
        except Exception:
            continue
        if wanted is None or cmd.workflow_id in wanted:
            out.append(cmd)
    return out


def produce_commands(settings: Settings, commands: Iterable[Command], *, codec: Codec | None = None) -> None:
    """Produce ``commands`` (keyed by workflow id, in order) and wait for Kafka's acks."""
    from confluent_kafka import Producer

    codec = codec or Codec(registry_url=settings.schema_registry_url)
    p = Producer({**settings.confluent_config(), "partitioner": "murmur2_random", "enable.idempotence": True,
                  "linger.ms": 5})
    for cmd in commands:
        p.produce(TopicNames(settings.topic_prefix).commands, codec.encode_command(cmd), key=cmd.workflow_id.encode())
    if p.flush(30) != 0:
        raise TimeoutError("commands not acknowledged within 30 s")


def _fired(histories: dict[str, list[Event]]) -> Iterable[tuple[Event, int]]:
    """Every ``TimerFired`` event with its timer's ``TimerStarted.fire_at_ms``."""
    for events in histories.values():
        due: dict[tuple[str, str], int] = {}
        for ev in events:
            if isinstance(ev.body, TimerStarted):
                due[(ev.run_id, ev.body.timer_id)] = ev.body.fire_at_ms
            elif isinstance(ev.body, TimerFired):
                at = due.get((ev.run_id, ev.body.timer_id))
                if at is not None:
                    yield ev, at


def fire_lags(histories: dict[str, list[Event]]) -> list[int]:
    """``TimerFired.recorded_at_ms - TimerStarted.fire_at_ms`` of every fired timer."""
    return [ev.recorded_at_ms - at for ev, at in _fired(histories)]


def fire_split(histories: dict[str, list[Event]], commands: list[Command]) -> tuple[list[int], list[int]]:
    """The fire lag in two parts, for timers fired by a ``FireTimer`` command: the wheel's
    (the command's ``sent_at_ms - fire_at_ms``) and the delivery's (``TimerFired.recorded_at_ms``
    minus the command's ``sent_at_ms``: the commands topic, the engine's queue and its step)."""
    sent = {(c.workflow_id, c.body.run_id, c.body.timer_id): c.sent_at_ms
            for c in commands if isinstance(c.body, FireTimer)}
    sends, deliveries = [], []
    for ev, at in _fired(histories):
        s = sent.get((ev.workflow_id, ev.run_id, ev.body.timer_id))  # type: ignore[union-attr]
        if s is not None:
            sends.append(s - at)
            deliveries.append(ev.recorded_at_ms - s)
    return sends, deliveries


def _pct(values: list[int], q: float) -> int | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


# ============================================================================ 1: lag through Kafka


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _delete_topics(settings: Settings) -> None:
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient(settings.confluent_config())
        mine = [t for t in admin.list_topics(timeout=10).topics
                if t.startswith((settings.topic_prefix + ".", settings.topic_prefix + "-"))]
        for fut in (admin.delete_topics(mine, operation_timeout=30).values() if mine else []):
            try:
                fut.result()
            except Exception:
                pass
    except Exception:
        pass


async def _lag_through_kafka(settings: Settings, duration: float, n: int, workdir: Path,
                            load_rate: float = 0.0) -> dict[str, Any]:
    """Fire lag of ``n`` timers due over ``duration`` seconds, read from the log; with
    ``load_rate``, one-activity workflows (``BenchOne``) are started at that rate while the
    timers fall due, through an activity worker of their own (the lag users see under load)."""
    from ..client import Client

    env = dict(os.environ, AION_BOOTSTRAP_SERVERS=settings.bootstrap_servers, AION_TOPIC_PREFIX=settings.topic_prefix,
               AION_PARTITIONS=str(settings.partitions), AION_DATA_DIR=str(workdir / "engine"))
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    log = open(workdir / "engine.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "aion.cli", "worker", "--workflows", "aion.bench._timers",
                             "--workflows", "aion.bench._workload", "--loglevel", "warning"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    workers: list[subprocess.Popen[bytes]] = []
    if load_rate > 0:
        workers.append(subprocess.Popen([sys.executable, "-m", "aion.cli", "activity-worker", "--activities",
                                         "aion.bench._workload", "--concurrency", "1000"],
                                        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    load: dict[str, Any] = {}
    try:
        client = await Client.connect(settings=settings)
        try:
            # Wait until the engine answers (its group has formed, its tables are recovered).
            from ..client import RPCTimeoutError

            deadline = time.monotonic() + 180
            while True:
                try:
                    probe_at = int(time.time() * 1000) + 500
                    warm = await client.start_workflow(TimerBenchSleep.run, probe_at, id="warmup", request_id="warmup")
                    break
                except RPCTimeoutError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
            await warm.result(timeout=120)
            if load_rate > 0:
                from ._engine_runs import EngineDriver

                driver = EngineDriver(client, "load")
                await asyncio.wait_for(driver.run_one(-1), 120)  # the activity worker answers
            # Measure the start rate, so that every workflow is started (its timer armed)
            # before the first is due: the lag is then the wheel's, not a backlog of starts.
            cal = min(500, max(50, n // 20))
            c0 = time.monotonic()
            sem0 = asyncio.Semaphore(200)

            async def warm_start(i: int) -> None:
                async with sem0:
                    await client.start_workflow(TimerBenchSleep.run, int(time.time() * 1000) + 1_000, id=f"cal-{i}")

            await asyncio.gather(*(warm_start(i) for i in range(cal)))
            rate = cal / max(0.001, time.monotonic() - c0)
            lead = 5.0 + 2.5 * n / rate  # (a long run of starts goes slower than the calibration)
            t0 = int((time.time() + lead) * 1000)
            span = int(duration * 1000)
            ats = [t0 + (i * span) // max(1, n) for i in range(n)]
            sem = asyncio.Semaphore(200)

            async def start(i: int) -> None:
                async with sem:
                    await client.start_workflow(TimerBenchSleep.run, ats[i], id=f"t-{i}")

            await asyncio.gather(*(start(i) for i in range(n)))
            started_late = max(0.0, time.time() - t0 / 1000)
            load_task = None
            if load_rate > 0:
                from ._load import open_loop

                # From a second before the first timer is due until the last one is.
                await asyncio.sleep(max(0.0, t0 / 1000 - 1.0 - time.time()))
                load_task = asyncio.create_task(open_loop(
                    driver, rate=load_rate, duration=max(1.0, ats[-1] / 1000 - time.time()), warmup=0.0))
            peak_rss = 0.0
            while time.time() * 1000 < ats[-1] + 2_000:
                peak_rss = max(peak_rss, _rss_mb(proc.pid))
                await asyncio.sleep(1.0)
                if proc.poll() is not None:
                    raise RuntimeError(f"the engine worker exited with {proc.returncode}; see {workdir / 'engine.log'}")
            if load_task is not None:
                from ._stats import latency_summary

                res = await load_task
                lat = latency_summary(res.latencies())
                load = {"load_starts_per_s": load_rate, "load_achieved_per_s": round(res.rate(), 1),
                        "load_p50_ms": lat.get("p50_ms"), "load_p99_ms": lat.get("p99_ms"),
                        "load_errors": res.errors, "load_not_completed": len(res.pending)}
        finally:
            await client.close()
        ids = [f"t-{i}" for i in range(n)]
        deadline = time.monotonic() + 120
        while True:
            histories = await asyncio.get_running_loop().run_in_executor(None, lambda: read_events(settings, ids))
            lags = fire_lags(histories)
            if len(lags) >= n or time.monotonic() > deadline:
                break
            await asyncio.sleep(2.0)
        sends, deliveries = fire_split(histories, await asyncio.get_running_loop().run_in_executor(
            None, lambda: read_commands(settings, ids)))
        return {
            "timers": n,
            "spread_s": duration,
            "fired": len(lags),
            "fire_lag_p50_ms": _pct(lags, 50),
            "fire_lag_p99_ms": _pct(lags, 99),
            "fire_lag_max_ms": max(lags) if lags else None,
            "fire_send_p50_ms": _pct(sends, 50),
            "fire_send_p99_ms": _pct(sends, 99),
            "fire_deliver_p50_ms": _pct(deliveries, 50),
            "fire_deliver_p99_ms": _pct(deliveries, 99),
            "starts_per_s": round(rate),
            "starts_late_s": round(started_late, 2),
            "engine_rss_mb": round(peak_rss, 1),
            **load,
        }
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
                try:
                    w.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(w.pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


# ============================================================================ 2: the wheel in process


@dataclasses.dataclass
class _Meta:
    offset: int


class _Data:
    #: Where Faust's RocksDB store keeps a partition's changelog offset (``Store.offset_key``).
    offset_key = b"__faust\0offset__"

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.dbs: dict[int, Any] = {}

    def _db_for_partition(self, partition: int) -> Any:
        from faust.stores.rocksdb import RocksDBOptions

        db = self.dbs.get(partition)
        if db is None:  # opened with Faust's own RocksDB options, as the engine's tables are
            db = self.dbs[partition] = RocksDBOptions().open(self.root / f"{self.name}-{partition}")
        return db

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


class _Topic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class _Table:
    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.data = _Data(root, name)
        self.changelog_topic = _Topic(f"bench-{name}-changelog")


class _Producer:
    """Sends complete at once (no broker): counts them per topic."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self._offset = 0

    async def send(self, topic: str, key: Any, value: Any, partition: Any, timestamp: Any, headers: Any) -> Any:
        self.sent[topic] = self.sent.get(topic, 0) + 1
        self._offset += 1
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(_Meta(self._offset))
        return fut


class _Assignor:
    def __init__(self, topic: str, partitions: int) -> None:
        from faust.types import TP

        self._tps = {TP(topic, p) for p in range(partitions)}

    def assigned_actives(self) -> set[Any]:
        return self._tps


class _App:
    def __init__(self, root: Path, topic: str, partitions: int) -> None:
        self.root = root
        self.producer = _Producer()
        self.assignor = _Assignor(topic, partitions)
        self.rebalancing = False
        self.in_recovery = False
        self.tasks: list[Any] = []
        self.tables: dict[str, _Table] = {}

    def Table(self, name: str, **kw: Any) -> _Table:  # noqa: N802 - Faust's spelling
        t = self.tables[name] = _Table(self.root, name)
        return t

    def task(self, fn: Any) -> Any:
        self.tasks.append(fn)
        return fn


class _Output:
    """The wheel's output without a broker: every transaction commits at once (counted by topic)."""

    def __init__(self, producer: _Producer, partitions: int) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._producer = producer
        self._partitions = set(range(partitions))

    def owned(self) -> set[int]:
        return set(self._partitions)

    def lock_for(self, partition: int) -> asyncio.Lock:
        return self._locks.setdefault(partition, asyncio.Lock())

    async def write(self, partition: int, records: Any) -> list[int]:
        out = []
        for topic, key, value, p in records:
            out.append((await (await self._producer.send(topic, key, value, p, None, None))).offset)
        return out

    def fire_due(self, partition: int) -> None:  # fires go through the (stand-in) topic here
        raise AssertionError("the in-process wheel fires through the commands topic (timer_fire='topic')")

    def lost(self, partition: int) -> None:
        self._partitions.discard(partition)


class _Engine:
    def __init__(self, root: Path, partitions: int, timer_batch: int) -> None:
        self.settings = Settings(partitions=partitions, timer_batch=timer_batch, data_dir=root, timer_fire="topic")
        self.names = TopicNames("bench")
        self.codec = Codec()
        self.app = _App(root, self.names.commands, partitions)
        self.output = _Output(self.app.producer, partitions)


class InProcessWheel:
    """The engine's :class:`TimerWheel` on real RocksDB without Faust or a broker (for the
    1M-pending measurement and unit tests). ``await start()`` runs its loop as the engine does."""

    def __init__(self, root: Path, partitions: int = 4, timer_batch: int = 1_000) -> None:
        from ..engine._wheel import TimerWheel

        self.root = root
        self.engine = _Engine(root, partitions, timer_batch)
        e = self.engine
        self.wheel = TimerWheel(e.app, e.settings, e.codec, e.names, e.output, timers=e.app.Table("timers"),
                                terminal=e.app.Table("timer_terminal"))
        for table in self.engine.app.tables.values():  # Faust opens them at assignment
            for p in range(partitions):
                table.data._db_for_partition(p)
        self._task: asyncio.Task[Any] | None = None

    @property
    def fires_sent(self) -> int:
        return self.engine.app.producer.sent.get(self.engine.names.commands, 0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.wheel._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for t in self.engine.app.tables.values():
            t.data.close()


async def _probe(stop: asyncio.Event, gaps: list[float]) -> None:
    """Sleep 1 ms in a loop: how long past 1 ms each wake-up came is how long something else
    held the event loop (what a batch of commands would have waited)."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        gaps.append((time.perf_counter() - t) * 1000 - 1.0)


async def wheel_in_process(pending: int = 1_000_000, *, partitions: int = 4, burst: int = 10_000,
                           within_window: bool = False, freeze_gc: bool = False,
                           workdir: Path | None = None) -> dict[str, Any]:
    """Arm ``pending`` timers on an in-process wheel, then fire ``burst`` due ones among them.

    ``within_window``: the pending timers are due within the in-memory window (the worst case
    for memory) instead of hours ahead (the usual case: only the table holds them).
    ``freeze_gc``: ``gc.freeze()`` once set up, so that a full garbage collection does not
    walk every object the process holds (a gen-2 pause stalls whatever code runs, wheel or
    not; it is reported apart as ``gc_pause_max_ms``)."""
    from ..runtime import effects as fx

    root = Path(workdir or tempfile.mkdtemp(prefix="aion-bench-wheel-"))
    gc.collect()
    rss0 = _rss_mb(os.getpid())
    w = InProcessWheel(root, partitions)
    wheel = w.wheel
    if within_window:  # a window wide enough to hold them all, none due during the run
        wheel.WINDOW_MS = 3_600_000
    now = int(time.time() * 1000)
    # Load the (empty) window first, as a running worker has.
    await wheel._tick()
    far = now + (1_200_000 if within_window else 7_200_000)
    spread = 1_200_000 if within_window else 3_600_000
    batch = 500
    t0 = time.perf_counter()
    worst_apply = 0.0
    for start in range(0, pending, batch):
        effs = []
        for i in range(start, min(pending, start + batch)):
            wid = f"order-{i:07d}"
            effs.append((i % partitions, fx.ScheduleTimer(wid, f"run-{i:07d}", "1", far + (i * spread) // pending)))
        a = time.perf_counter()
        await wheel.apply(effs)
        worst_apply = max(worst_apply, (time.perf_counter() - a) * 1000)
    arm_s = time.perf_counter() - t0
    gc.collect()
    rss1 = _rss_mb(os.getpid())
    # The burst: ``burst`` timers due now, among the pending ones; the loop runs with a probe.
    due_at = int(time.time() * 1000) + 300
    effs = [(i % partitions, fx.ScheduleTimer(f"burst-{i}", "r", "1", due_at)) for i in range(burst)]
    for s in range(0, burst, batch):
        await wheel.apply(effs[s:s + batch])
    if freeze_gc:  # what a long-running worker gets from gc.freeze() after start-up
        gc.collect()
        gc.freeze()
    gc_pauses: list[float] = []
    gc_t: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_t[0] = time.perf_counter()
        else:
            gc_pauses.append((time.perf_counter() - gc_t[0]) * 1000)

    gc.callbacks.append(on_gc)
    wheel.stats["tick_max_block_ms"] = wheel.stats["tick_max_block_cpu_ms"] = 0.0
    gaps: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(_probe(stop, gaps))
    w.start()
    t_fire = time.perf_counter()
    deadline = time.monotonic() + 120
    while wheel.stats["fired"] < burst and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    fire_s = time.perf_counter() - t_fire - 0.3
    # Keep ticking a few seconds with the million pending (window advances, idle ticks).
    await asyncio.sleep(3.0)
    stop.set()
    await probe
    gc.callbacks.remove(on_gc)
    if freeze_gc:
        gc.unfreeze()
    rss2 = _rss_mb(os.getpid())
    in_memory = wheel.pending()
    await w.stop()
    shutil.rmtree(root, ignore_errors=True)
    gaps.sort()
    return {
        "pending": pending,
        "within_window": within_window,
        "rss_added_mb": round(rss1 - rss0, 1),
        "rss_total_mb": round(max(rss1, rss2), 1),
        "in_memory_after": in_memory,
        "arm_s": round(arm_s, 2),
        "arm_per_s": round(pending / arm_s),
        "apply_batch_max_ms": round(worst_apply, 2),
        "burst": burst,
        "burst_fired": wheel.stats["fired"],
        "burst_fire_s": round(max(0.0, fire_s), 3),
        "tick_max_block_ms": wheel.stats["tick_max_block_ms"],
        "tick_max_block_cpu_ms": wheel.stats["tick_max_block_cpu_ms"],
        "loop_stall_max_ms": round(gaps[-1], 2) if gaps else None,
        "loop_stall_p99_ms": round(gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))], 2) if gaps else None,
        "gc_pause_max_ms": round(max(gc_pauses), 2) if gc_pauses else 0.0,
        "freeze_gc": freeze_gc,
    }


def _in_subprocess(pending: int, within_window: bool, freeze_gc: bool = False) -> dict[str, Any]:
    """Run :func:`wheel_in_process` in a fresh interpreter (a clean RSS baseline)."""
    import json

    code = ("import asyncio, json, sys; from aion.bench._timers import wheel_in_process; "
            f"print(json.dumps(asyncio.run(wheel_in_process({pending}, within_window={within_window!r}, "
            f"freeze_gc={freeze_gc!r}))))")
    src = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"in-process wheel benchmark failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ============================================================================ entry point


def run(settings: Settings, duration: float = 60.0, n: int = 10_000, pending: int = 1_000_000,
        keep: bool = False, kafka: bool = True, in_process: bool = True, load_rate: float = 0.0) -> dict[str, Any]:
    """The timer scenario: returns flat figures (see the module docs)."""
    out: dict[str, Any] = {}
    if kafka:
        s = dataclasses.replace(settings, topic_prefix=f"{settings.topic_prefix}.bench-timers-{uuid.uuid4().hex[:6]}")
        workdir = Path(tempfile.mkdtemp(prefix=f"aion-{s.topic_prefix}-"))
        ensure_topics(s)
        try:
            out.update(asyncio.run(_lag_through_kafka(s, duration, n, workdir, load_rate)))
        finally:
            if not keep:
                _delete_topics(s)
                shutil.rmtree(workdir, ignore_errors=True)
    if in_process:
        far = _in_subprocess(pending, False)
        frozen = _in_subprocess(pending, False, freeze_gc=True)
        near = _in_subprocess(pending, True)
        for k in ("rss_added_mb", "arm_per_s", "apply_batch_max_ms", "burst_fire_s", "tick_max_block_ms",
                  "tick_max_block_cpu_ms", "loop_stall_max_ms", "loop_stall_p99_ms", "gc_pause_max_ms"):
            out[f"pending_1m_{k}"] = far[k]
        for k in ("tick_max_block_ms", "tick_max_block_cpu_ms", "loop_stall_max_ms", "gc_pause_max_ms"):
            out[f"pending_1m_gc_frozen_{k}"] = frozen[k]
        for k in ("rss_added_mb", "tick_max_block_ms", "tick_max_block_cpu_ms", "loop_stall_max_ms",
                  "gc_pause_max_ms"):
            out[f"pending_1m_in_window_{k}"] = near[k]
        out["pending_timers"] = pending
    return out


if __name__ == "__main__":  # python -m aion.bench._timers [duration] [n]
    import json

    args = sys.argv[1:]
    res = run(Settings.from_env(), float(args[0]) if args else 60.0, int(args[1]) if len(args) > 1 else 10_000)
    print(json.dumps(res, indent=2))
