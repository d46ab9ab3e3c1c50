"""Rebuild: how fast the engine's tables are rebuilt from the events topic (offset 0).

With the engine's rebuild tool (``aion.engine._rebuild.rebuild_tables``) that is timed
directly: all three tables from offset 0 into a fresh data folder. Without it, this measures
what a fresh engine worker does on start: Faust's recovery of the
``history`` table from its changelog, the events topic. The events topic is filled with
``events`` records of real ``BenchOne`` histories (5 events each, written with the engine's
codec), then a fresh engine worker (empty data dir) starts; the time from its start until it
answers a start is compared with the same on an empty events topic. The difference is the
rebuild time; events / difference is the rate.

The floor: reading the same records with one bare confluent-kafka consumer (no decoding,
no RocksDB).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from ..client import Client
from ..codec import Codec, partition_for
from ..converter import default_converter
from ..common.settings import Settings
from ..model import ActivityTaskCompleted, ActivityTaskStarted, Command, Event, EventKey, StartWorkflow
from ..runtime import Registry, WorkflowExecution
from ._deploy import Deployment
from ._engine_runs import EngineDriver
from ._load import Progress
from ._workload import BenchOne, bench_echo


def template_history() -> list[Event]:
    """The 5 events of one completed ``BenchOne`` run, produced by the real runtime."""
    conv = default_converter()
    reg = Registry(workflows=[BenchOne], activities=[bench_echo])
    wid = "template"
    ex = WorkflowExecution.new(reg, wid)
    now = int(time.time() * 1000)
    events: list[Event] = []
    step = ex.handle(Command(str(uuid.uuid4()), wid, now, StartWorkflow("BenchOne", conv.to_payloads([1]),
                                                                      request_id="r")), now)
    events += step.events
    sched = step.events[-1]
    run_id, act = sched.run_id, sched.body.activity_id
    step = ex.handle(Command(str(uuid.uuid4()), wid, now + 1, ActivityTaskStarted(run_id, act, 1, "bench")), now + 1)
    events += step.events
    step = ex.handle(Command(str(uuid.uuid4()), wid, now + 2,
                             ActivityTaskCompleted(run_id, act, 1, conv.to_payload(1), "bench")), now + 2)
    events += step.events
    return events


def fill_events(settings: Settings, n_events: int, progress: Progress | None = None) -> float:
    """Append ``n_events`` history records (whole 5-event histories) to the events topic;
    returns the seconds it took."""
    codec = Codec()
    template = template_history()
    names_events = f"{settings.topic_prefix}.events"
    cfg = dict(settings.confluent_config(), **{"linger.ms": 20, "batch.num.messages": 10000,
                                               "queue.buffering.max.messages": 500000,
                                               "compression.type": "lz4", "acks": "all"})
    producer = Producer(cfg)
    t0 = time.monotonic()
    n_wf = max(1, n_events // len(template))
    for w in range(n_wf):
        wid = f"rebuild-{w}"
        part = partition_for(wid, settings.partitions)
        for ev in template:
            e = dataclasses.replace(ev, workflow_id=wid)
            key = codec.encode_event_key(EventKey(wid, e.seq))
            while True:
                try:
                    producer.produce(names_events, codec.encode_event(e), key=key, partition=part)
                    break
                except BufferError:
                    producer.poll(0.05)
        if w % 2000 == 0:
            producer.poll(0)
            if progress is not None:
                progress(time.monotonic() - t0, f"writing events: {w * len(template)}/{n_events}")
    producer.flush()
    return time.monotonic() - t0


def bare_read(settings: Settings, n_events: int) -> float:
    """Seconds one bare consumer takes to read every record of the events topic from offset 0."""
    c = Consumer(dict(settings.confluent_config(), **{"group.id": f"{settings.topic_prefix}.bench.{uuid.uuid4().hex}",
                                                       "enable.auto.commit": False, "enable.partition.eof": False,
                                                       "isolation.level": "read_committed"}))
    topic = f"{settings.topic_prefix}.events"
    c.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    t0 = time.monotonic()
    seen = 0
    idle_since = time.monotonic()
    while seen < n_events and time.monotonic() - idle_since < 10:
        msgs = c.consume(10000, 0.5)
        if msgs:
            seen += sum(1 for m in msgs if m.error() is None)
            idle_since = time.monotonic()
    dt = time.monotonic() - t0
    c.close()
    return dt


async def _time_to_answer(deploy: Deployment, timeout: float = 900.0) -> float:
    """Start a fresh engine worker and return the seconds until it answers a start."""
    t0 = time.monotonic()
    deploy.procs.engine()
    client = await Client.connect(settings=deploy.settings, rpc_timeout=timeout)
    try:
        driver = EngineDriver(client, f"probe{uuid.uuid4().hex[:4]}")
        await asyncio.wait_for(client.start_workflow("BenchOne", 0, id=f"{driver.tag}-0"), timeout)
        return time.monotonic() - t0
    finally:
        await client.close()


def _rebuild_tool() -> Any:
    try:
        from ..engine._rebuild import rebuild_tables
    except ImportError:
        return None
    return rebuild_tables


#: Reuse an events topic filled by an earlier run (``<prefix>.events``, e.g. one kept with
#: ``--keep-topics``) instead of writing ``events`` records again: for A/B runs of the rebuild
#: itself. The topic is left as it is (not deleted) at the end.
REUSE_ENV = "AION_BENCH_REBUILD_REUSE_PREFIX"


async def rebuild(base: Settings, *, events: int, progress: Progress | None = None, keep: bool = False) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    tool = _rebuild_tool()
    out: dict[str, Any] = {}
    reuse = os.environ.get(REUSE_ENV) or None
    if reuse is not None and tool is None:
        raise RuntimeError(f"{REUSE_ENV} needs aion.engine._rebuild (the rebuild tool); unset it")
    if tool is None:
        # Baseline: a fresh engine worker on an empty events topic.
        with Deployment(base, "rb0", keep=keep) as empty:
            if progress is not None:
                progress(0.0, "engine start on an empty events topic")
            baseline = await _time_to_answer(empty)
    with Deployment(base, "rb", keep=keep or reuse is not None) as deploy:
        if reuse is not None:
            # The deployment's own (empty) topics stay unused; the reused prefix is read.
            deploy.delete_topics()
            deploy.settings = deploy.settings.replace(topic_prefix=reuse)
            deploy.names = type(deploy.names)(reuse)
            fill_s = None
            if progress is not None:
                progress(0.0, f"reusing the events topic {deploy.names.events} ({REUSE_ENV})")
        else:
            fill_s = await loop.run_in_executor(None, fill_events, deploy.settings, events, progress)
        n = await deploy.aend_offsets(deploy.names.events)
        if n == 0:
            raise RuntimeError(f"{deploy.names.events} is empty or missing: check {REUSE_ENV}={reuse!r}")
        bare_s = await loop.run_in_executor(None, bare_read, deploy.settings, n)
        if tool is not None:
            settings = deploy.settings.replace(data_dir=deploy.dir / "rebuild")
            t0 = time.monotonic()

            def report(p: Any) -> None:
                if progress is not None:
                    progress(time.monotonic() - t0, f"rebuilding: {p.phase} {p.events}/{p.total_events} events")

            rep = await loop.run_in_executor(None, lambda: tool(settings, progress=report, swap=True, keep_backup=False))
            if reuse is not None and not keep:  # the deployment is kept (for the topic): not its folder
                shutil.rmtree(deploy.dir, ignore_errors=True)
            rebuild_s = max(1e-3, rep.total_s)
            out.update({
                "method": "aion.engine._rebuild.rebuild_tables (history, workflows, timers from offset 0)",
                "read_phase_events_per_s": round(rep.events_per_s, 0),
                "workflows": rep.workflows,
            })
        else:
            if progress is not None:
                progress(0.0, f"fresh engine worker rebuilding {n} events")
            with_events = await _time_to_answer(deploy)
            rebuild_s = max(1e-3, with_events - baseline)
            out.update({
                "method": "faust recovery of a fresh engine worker (aion.engine._rebuild not available)",
                "engine_start_empty_s": round(baseline, 2),
                "engine_start_with_events_s": round(with_events, 2),
            })
    out.update({
        "events": n,
        "events_per_s": round(n / rebuild_s, 0),
        "rebuild_s": round(rebuild_s, 2),
        "write_events_per_s": round(n / max(1e-6, fill_s), 0) if fill_s is not None else None,
        "floor_read_events_per_s": round(n / max(1e-6, bare_s), 0),
    })
    return out
