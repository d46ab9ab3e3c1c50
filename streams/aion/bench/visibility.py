"""``python -m aion.bench.visibility``: a list's first page and a count among many workflows —
answered by the engines from their visibility index (``__aion.list``) or read from the
``workflows`` changelog (the fallback, and how every list was done before).

Needs the broker (``AION_BOOTSTRAP_SERVERS``, default 127.0.0.1:9092). Makes a topic prefix of
its own, writes ``--workflows`` visibility rows straight to the ``workflows`` table's changelog
(each on its workflow's partition, as the engines would have: ``--types`` workflow types, 5 %
RUNNING, the rest closed, start times over 30 days), starts one engine worker (which restores
them into RocksDB and builds its index), then times, median of ``--repeats``:

- the first page (``--page`` rows) of RUNNING workflows of one type;
- the count of RUNNING workflows of that type (the index alone);
- a count the index cannot narrow (a search attribute: every row is read, in steps);
- the same first page read from the changelog (``--log-repeats`` times; 0 skips it);

and prints the engine's RSS. The prefix's topics are deleted at the end.

``--no-broker`` measures the engine's side alone, in this process: the same rows in one real
RocksDB database (one partition holding them all), the index built from it, and each answer's
CPU time (what the engine spends; a list adds one Kafka round trip to it). CPU time barely
moves with the machine's load, unlike wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

from confluent_kafka import Producer

from ..client import Client
from ..client._visibility import read_workflow_rows, workflows_changelog
from ..codec import partition_for
from ..common.settings import Settings
from ..common.topics import ensure_topics
from ..common.visibility import ListRequest
from ._procs import Procs, rss_bytes
from ._timers import _delete_topics

DAY_MS = 86_400_000
STATUSES = ["COMPLETED"] * 14 + ["FAILED"] * 4 + ["RUNNING"]  # 5 % running


def rows_of(n: int, types: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    """``n`` visibility rows as the engine writes them: ``types`` workflow types, 5 % RUNNING,
    the rest closed, start times over the last 30 days."""
    rnd = random.Random(seed)
    now = int(time.time() * 1000)
    for i in range(n):
        status = rnd.choice(STATUSES)
        wf_type = f"Type{rnd.randrange(types)}"
        started = now - 30 * DAY_MS + rnd.randrange(30 * DAY_MS)
        yield {"workflow_id": f"vis-{i:08d}", "workflow_type": wf_type,
               "run_id": uuid.UUID(int=rnd.getrandbits(128)).hex, "status": status, "history_length": 11,
               "started_at_ms": started, "closed_at_ms": None if status == "RUNNING" else started + 60_000,
               "task_queue": "default", "search_attributes": {"Customer": f"c-{rnd.randrange(100_000)}"},
               "search_attribute_types": {}, "code_version": ""}


def fill(settings: Settings, n: int, types: int) -> dict[str, int]:
    """:func:`rows_of` on the ``workflows`` changelog, each on its workflow's partition; returns
    how many rows per (status, type)."""
    topic = workflows_changelog(settings.topic_prefix)
    p = Producer({**settings.confluent_config(), "linger.ms": 50, "compression.type": "lz4",
                  "queue.buffering.max.messages": 500_000})
    counts: dict[str, int] = {}
    for row in rows_of(n, types):
        wid, kind = row["workflow_id"], f"{row['status']}/{row['workflow_type']}"
        counts[kind] = counts.get(kind, 0) + 1
        while True:
            try:
                p.produce(topic, key=wid.encode(), value=json.dumps(row).encode(),
                          partition=partition_for(wid, settings.partitions))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    p.flush(120)
    return counts


async def measure(settings: Settings, engine_pid: int, expected_running: int, repeats: int, log_repeats: int,
                  page: int) -> dict[str, Any]:
    client = await Client.connect(settings.bootstrap_servers, topic_prefix=settings.topic_prefix, settings=settings)
    try:
        running = ListRequest.of("ExecutionStatus = 'Running' AND WorkflowType = 'Type0'")
        t0 = time.perf_counter()
        while True:  # the engine restores the rows and builds its index
            n = await client._visibility.count(running, 60.0)
            if n == expected_running:
                break
            if time.perf_counter() - t0 > 900:
                raise RuntimeError(f"the engine's index has {n} RUNNING Type0 rows, not {expected_running}")
            await asyncio.sleep(1.0)
        ready_s = time.perf_counter() - t0
        out: dict[str, Any] = {"ready_s": ready_s, "engine_rss": rss_bytes(engine_pid)}

        async def timed(fn: Any, times: int) -> tuple[float, Any]:
            took, value = [], None
            for _ in range(times):
                t = time.perf_counter()
                value = await fn()
                took.append(time.perf_counter() - t)
            return statistics.median(took) * 1000, value

        out["page_ms"], rows = await timed(lambda: client._visibility.list(running, page, 60.0), repeats)
        assert rows is not None and len(rows) == min(page, expected_running), "no engine answered the list"
        assert all(r.status == "RUNNING" and r.workflow_type == "Type0" for r in rows)
        out["count_ms"], n = await timed(lambda: client._visibility.count(running, 60.0), repeats)
        assert n == expected_running
        scan = ListRequest.of("Customer = 'c-42'")
        out["scan_count_ms"], out["scan_count"] = await timed(lambda: client._visibility.count(scan, 600.0),
                                                              max(1, repeats // 2))
        if log_repeats:
            async def from_log() -> list[Any]:
                rows = await asyncio.get_running_loop().run_in_executor(None, read_workflow_rows, settings, 600.0)
                return running.select(rows)[:page]
            out["log_ms"], log_rows = await timed(from_log, log_repeats)
            assert [r.workflow_id for r in log_rows] == [r.workflow_id for r in rows], "the log and the engine differ"
        return out
    finally:
        await client.close()


def in_process(n: int, types: int, page: int, repeats: int) -> dict[str, Any]:
    """The engine's side of each answer (CPU ms, median of ``repeats``) over ``n`` rows in RocksDB."""
    import tracemalloc

    from faust.stores.rocksdb import RocksDBOptions

    from ..engine._store import scan_items
    from ..engine._visibility_index import VisibilityIndex
    from ..model import Payload

    folder = Path(tempfile.mkdtemp(prefix="aion-bench-visibility-"))
    db = RocksDBOptions(use_rocksdict=True).open(folder / "workflows")
    for row in rows_of(n, types):
        db.put(row["workflow_id"].encode(), json.dumps(row).encode())
    table = SimpleNamespace(data=SimpleNamespace(_db_for_partition=lambda partition: db))  # what scan_items reads

    def scan() -> Iterator[tuple[bytes, bytes]]:
        return scan_items(table, 0)

    tracemalloc.start()  # the memory of an index (built once under tracing: slower)
    traced = VisibilityIndex(lambda p: db, lambda p: scan())
    asyncio.run(traced.build(0))
    index_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del traced
    index = VisibilityIndex(lambda p: db, lambda p: scan())
    t0 = time.process_time()
    asyncio.run(index.build(0))
    build_s = time.process_time() - t0

    def cpu_ms(body: dict[str, Any], times: int = repeats) -> tuple[float, dict[str, Any]]:
        took, out = [], {}
        for _ in range(times):
            t = time.process_time()
            out = json.loads(index.answer(0, [Payload("application/json", json.dumps(body).encode())]).data)
            took.append(time.process_time() - t)
        return statistics.median(took) * 1000, out

    running = ListRequest.of("ExecutionStatus = 'Running' AND WorkflowType = 'Type0'").to_json()
    page_ms, first = cpu_ms({**running, "limit": page})
    newest_ms, _ = cpu_ms({**running, "limit": page, "reverse": True})
    count_ms, counted = cpu_ms({**running, "limit": 1, "count": True})
    scan_req = ListRequest.of("Customer = 'c-42'").to_json()
    t = time.process_time()
    total, after, answers = 0, None, 0
    while True:  # as the client follows the pages of a count the index cannot narrow
        _, out = cpu_ms({**scan_req, "limit": 1, "count": True, "after": after}, 1)
        total, after, answers = total + out["count"], out["next"], answers + 1
        if after is None:
            break
    return {"build_s": build_s, "index_bytes": index_bytes, "page_ms": page_ms, "page_rows": len(first["rows"]),
            "newest_ms": newest_ms, "count_ms": count_ms, "count": counted["count"],
            "scan_s": time.process_time() - t, "scan_count": total, "scan_answers": answers}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--workflows", type=int, default=1_000_000, help="visibility rows (workflows) in all")
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--types", type=int, default=10, help="workflow types")
    ap.add_argument("--page", type=int, default=100, help="rows of the first page")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--log-repeats", type=int, default=1)
    ap.add_argument("--no-broker", action="store_true", help="the engine's side alone, in this process (module docs)")
    a = ap.parse_args()
    if a.no_broker:
        r = in_process(a.workflows, a.types, a.page, a.repeats)
        print(f"{a.workflows:,} workflows in one RocksDB partition, {r['count']:,} RUNNING of type Type0; "
              f"engine CPU time (median of {a.repeats}):")
        print(f"  index built in {r['build_s']:.1f} s ({r['build_s'] / a.workflows * 1e6:.1f} us/row); "
              f"{r['index_bytes'] / a.workflows:.0f} bytes per workflow")
        print(f"  first page ({r['page_rows']} rows) of RUNNING Type0 : {r['page_ms']:8.2f} ms   newest first: {r['newest_ms']:.2f} ms")
        print(f"  count of RUNNING Type0 (index only)      : {r['count_ms']:8.2f} ms")
        print(f"  count by a search attribute (every row)  : {r['scan_s'] * 1000:8.0f} ms   "
              f"({r['scan_count']} rows, {r['scan_answers']} answers of at most 1,000 rows read)")
        return
    settings = Settings.from_env(topic_prefix=f"aion.bench-vis-{uuid.uuid4().hex[:6]}", partitions=a.partitions)
    changelog = workflows_changelog(settings.topic_prefix)
    ensure_topics(settings, extra={changelog: {**settings.topic_config, "cleanup.policy": "compact"}})
    procs = Procs(settings, Path(tempfile.mkdtemp(prefix="aion-bench-visibility-")))
    try:
        t0 = time.perf_counter()
        counts = fill(settings, a.workflows, a.types)
        print(f"wrote {a.workflows:,} visibility rows over {a.partitions} partitions in {time.perf_counter() - t0:.1f}s")
        engine = procs.engine()
        r = asyncio.run(measure(settings, engine.pid, counts.get("RUNNING/Type0", 0), a.repeats, a.log_repeats, a.page))
    finally:
        procs.stop()
        _delete_topics(settings)
    running = counts.get("RUNNING/Type0", 0)
    print(f"{a.workflows:,} workflows, {running:,} of them RUNNING of type Type0 (median of {a.repeats}):")
    print(f"  engine restored the rows and built its index in {r['ready_s']:.1f}s; engine RSS {r['engine_rss'] / 2**20:.0f} MiB")
    print(f"  first page ({a.page} rows), served by the engines : {r['page_ms']:9.1f} ms")
    print(f"  count, served (index only)                   : {r['count_ms']:9.1f} ms")
    scanned = f"{r['scan_count']} rows" if r["scan_count"] is not None else "no answer in time: the client read the log"
    print(f"  count by a search attribute (every row read) : {r['scan_count_ms']:9.1f} ms   ({scanned})")
    if "log_ms" in r:
        print(f"  first page, read from the changelog          : {r['log_ms']:9.1f} ms   "
              f"({r['log_ms'] / r['page_ms']:.0f}x the engines')")


if __name__ == "__main__":
    main()
