"""``python -m aion.bench.history``: what one workflow's history read costs when its partition
holds many other workflows' events — served by the engine that owns it (``__aion.history``) or
read from the events topic (the fallback, and how it was done before).

Needs the broker (``AION_BOOTSTRAP_SERVERS``, default 127.0.0.1:9092). Makes a topic prefix of
its own with one partition, fills that partition with ``--others`` events of other workflows
(written straight to the topic after it ran, as many workflows' histories would be), runs one
workflow through an engine and an activity worker, then times ``handle.history()``
both ways (median of ``--repeats``) and prints the figures. The prefix's topics are deleted at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer

from ..client import Client
from ..client._history import read_history
from ..codec import Codec
from ..common.settings import Settings
from ..common.topics import TopicNames, ensure_topics
from ..model import Event, EventKey, MarkerRecorded
from ._procs import Procs
from ._timers import _delete_topics


def fill(settings: Settings, others: int) -> None:
    """``others`` events of other workflows (five per workflow) on the one partition."""
    codec = Codec()
    topic = TopicNames(settings.topic_prefix).events
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 50, "compression.type": "lz4"})
    now = int(time.time() * 1000)
    for i in range(others):
        wid, seq = f"filler-{i // 5}", i % 5 + 1
        ev = Event(wid, seq, "run-0", now, MarkerRecorded("filler", str(i), None))
        while True:
            try:
                p.produce(topic, key=codec.encode_event_key(EventKey(wid, seq)), value=codec.encode_event(ev), partition=0)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    p.flush(60)


async def measure(settings: Settings, repeats: int, others: int) -> dict[str, float]:
    client = await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings)
    try:
        h = await client.start_workflow("BenchOne", "x", id=f"history-{uuid.uuid4().hex[:8]}")
        await h.result(timeout=120)
        t0 = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(None, fill, settings, others)
        print(f"filled its partition with {others:,} events of other workflows in {time.perf_counter() - t0:.1f}s")
        served: list[float] = []
        logged: list[float] = []
        n = 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            events = await h._history_from_engine()
            served.append(time.perf_counter() - t0)
            assert events is not None, "no engine served the history"
            n = len(events)
            t0 = time.perf_counter()
            from_log = await asyncio.get_running_loop().run_in_executor(
                None, read_history, h._reader(), client.codec, h.id)
            logged.append(time.perf_counter() - t0)
            assert from_log == events, "the engine's history differs from the log's"
        return {"events": n, "served_ms": statistics.median(served) * 1000,
                "log_ms": statistics.median(logged) * 1000}
    finally:
        await client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--others", type=int, default=300_000, help="events of other workflows on the partition")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    settings = Settings.from_env(topic_prefix=f"aion.bench-history-{uuid.uuid4().hex[:6]}", partitions=1)
    ensure_topics(settings)
    procs = Procs(settings, Path(tempfile.mkdtemp(prefix="aion-bench-history-")))
    try:
        procs.engine()
        procs.activities()
        r = asyncio.run(measure(settings, a.repeats, a.others))
    finally:
        procs.stop()
        _delete_topics(settings)
    print(f"history of {r['events']} events, {a.others:,} other events on its partition "
          f"(median of {a.repeats}):")
    print(f"  served by the engine : {r['served_ms']:8.1f} ms")
    print(f"  read from the log    : {r['log_ms']:8.1f} ms   ({r['log_ms'] / r['served_ms']:.0f}x the engine's)")


if __name__ == "__main__":
    main()
