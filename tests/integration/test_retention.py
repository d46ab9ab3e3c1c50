"""Retention: a closed workflow's history is retired with tombstones, and compaction removes it.

The events topic is created with an eager log cleaner (as in test_compaction.py); the engine
runs with ``AION_RETENTION_MS`` of a few seconds. A workflow that closed longer ago than that
is retired (tombstones on the topic, rows gone from the tables); a running workflow and a
recently closed one are untouched; the log cleaner then drops the retired records and, later,
the tombstones themselves.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from faust.stores.rocksdb import RocksDBOptions

from aion.client import QueryTimeoutError
from aion.codec import Codec, partition_for
from aion.engine.topics import TopicNames, ensure_topics
from aion.model import EventKey, WorkflowStarted
from aion.testing import check_event_log, read_event_log

from _procs import Cluster
from test_compaction import FAST_COMPACTION

RETENTION_MS = 4000
CODEC = Codec()


@pytest.fixture
def cluster(settings, tmp_path):  # type: ignore[no-untyped-def]
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    events = TopicNames(settings.topic_prefix).events
    config = {**FAST_COMPACTION, "max.message.bytes": str(settings.max_record_bytes)}
    for fut in admin.create_topics([NewTopic(events, settings.partitions, 1, config=config)]).values():
        fut.result(timeout=30)
    ensure_topics(settings)  # the other topics; the events topic is left as created above
    c = Cluster(settings, tmp_path)
    c.env["AION_RETENTION_MS"] = str(RETENTION_MS)
    yield c
    c.stop()


def raw_records(bootstrap: str, topic: str, partition: int) -> list[tuple[str, int, bool]]:
    """(workflow_id, seq, is_tombstone) of every record left in the partition's log."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "retention-reader", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high <= low:
            return []
        c.assign([TopicPartition(topic, partition, low)])
        out = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(m.error())
            k = CODEC.decode_event_key(m.key())
            out.append((k.workflow_id, k.seq, m.value() is None))
        raise AssertionError(f"could not read {topic}[{partition}] to its end")
    finally:
        c.close()


async def query(handle, name: str, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await handle.query(name)
        except QueryTimeoutError:
            if asyncio.get_running_loop().time() > deadline:
                raise


async def test_closed_workflow_is_retired_and_compacted_away_running_ones_are_kept(cluster, client, settings, tmp_path):  # type: ignore[no-untyped-def]
    topic = TopicNames(settings.topic_prefix).events
    engine = cluster.engine("engine")
    done = await client.start_workflow("Approval", 1, id="ret-done")
    running = await client.start_workflow("Approval", 1, id="ret-running")
    sleeper = await client.start_workflow("Sleeper", 3600, id="ret-sleeper")
    await done.signal("decide", "yes")
    assert await done.result(timeout=60) == ["yes"]
    done_events = len(await done.history())
    assert done_events >= 3

    # Retired after the retention: tombstones for every (workflow_id, seq) of it.
    p = partition_for("ret-done", settings.partitions)
    deadline = time.monotonic() + 60
    while True:
        recs = raw_records(settings.bootstrap_servers, topic, p)
        tombstones = {seq for wid, seq, dead in recs if wid == "ret-done" and dead}
        if tombstones == set(range(1, done_events + 1)):
            break
        assert time.monotonic() < deadline, f"no tombstones for ret-done after 60s: {recs}"
        await asyncio.sleep(0.5)
    assert await done.history() == []  # readers fold the tombstones

    # A workflow that closed just now is kept (retention counts from its close).
    fresh = await client.start_workflow("Approval", 1, id="ret-fresh")
    await fresh.signal("decide", "later")
    assert await fresh.result(timeout=60) == ["later"]
    assert len(await fresh.history()) >= 3

    # The log cleaner removes the retired records, then the tombstones; the running workflows'
    # events stay. New starts keep the log rolling into new segments meanwhile.
    deadline = time.monotonic() + 90
    i = 0
    while True:
        i += 1
        await client.start_workflow("Sleeper", 3600, id=f"ret-roll-{i}")
        recs = raw_records(settings.bootstrap_servers, topic, p)
        if not any(wid == "ret-done" for wid, _, _ in recs):
            break
        assert time.monotonic() < deadline, f"ret-done still in the log after 90s: {[r for r in recs if r[0] == 'ret-done']}"
        await asyncio.sleep(0.3)

    for h, n in ((running, 1), (sleeper, 2)):
        hist = await h.history()
        assert [e.seq for e in hist] == list(range(1, len(hist) + 1)) and len(hist) >= n
    assert await query(running, "status") == "waiting:0"
    await running.signal("decide", "still here")
    assert await running.result(timeout=60) == ["still here"]

    # The retired workflow is gone from the worker's tables too; the others are there.
    engine.stop()
    tables = tmp_path / "engine" / "v1" / "tables"
    opts = RocksDBOptions()
    prefix = CODEC.encode_event_key(EventKey("ret-done", 0))[:-1]
    db = opts.open(tables / f"history-{p}.db")
    assert not [k for k, _ in db.items() if k.startswith(prefix)]
    db.close()
    db = opts.open(tables / f"workflows-{p}.db")
    assert db.get(b"ret-done") is None
    db.close()
    if (tables / f"timer_terminal-{p}.db").exists():  # the closed-run marker went with it
        db = opts.open(tables / f"timer_terminal-{p}.db")
        assert not [k for k, _ in db.items() if k.startswith(b"ret-done\0")]
        db.close()
    sp = partition_for("ret-sleeper", settings.partitions)
    db = opts.open(tables / f"workflows-{sp}.db")
    assert json.loads(db.get(b"ret-sleeper"))["status"] == "RUNNING"
    db.close()


async def test_a_chains_closed_runs_retire_while_it_goes_on(cluster, client, settings):  # type: ignore[no-untyped-def]
    """A workflow that continued as new keeps its current run and its chain's first start; the
    runs before retire once they closed longer ago than the retention, and the workflow goes on
    — across an engine restart, which rebuilds it from what is left."""
    runs = 5
    engine = cluster.engine("engine")
    h = await client.start_workflow("LongChain", 0, runs, id="ret-chain")
    deadline = time.monotonic() + 90
    while await query(h, "run_number") != runs:
        assert time.monotonic() < deadline, f"the chain did not reach run {runs}\n{cluster.logs()}"
        await asyncio.sleep(0.2)
    whole = await h.history()
    assert [e.seq for e in whole] == list(range(1, len(whole) + 1))
    last_start = [e for e in whole if isinstance(e.body, WorkflowStarted)][-1]
    load_from = min(e.seq for e in whole if e.command_id == last_start.command_id)  # the step that began it
    assert load_from > 10
    kept = [e for e in whole if e.seq == 1 or e.seq >= load_from]

    deadline = time.monotonic() + 60
    while (got := await h.history()) != kept:
        assert time.monotonic() < deadline, f"the earlier runs were not retired: {[e.seq for e in got]}\n{cluster.logs()}"
        await asyncio.sleep(0.5)
    # On the log: the retired seqs are tombstones (or already compacted away), nothing else of them.
    p = partition_for("ret-chain", settings.partitions)
    live: dict[int, bool] = {}
    for wid, seq, dead in raw_records(settings.bootstrap_servers, TopicNames(settings.topic_prefix).events, p):
        if wid == "ret-chain":
            live[seq] = not dead
    assert sorted(s for s, alive in live.items() if alive) == [e.seq for e in kept]
    # The log checker sees one chain with retired runs and nothing wrong.
    rep = check_event_log(read_event_log(settings), require_closed=False)
    assert rep.ok and rep.retired_chains == 1, rep.summary()
    # The log cleaner removes the retired records and their tombstones (new starts roll the log
    # into new segments); a reader of the log then skips the gap instead of waiting for seq 2.
    retired = set(range(2, load_from))
    deadline = time.monotonic() + 90
    i = 0
    while True:
        i += 1
        await client.start_workflow("Sleeper", 3600, id=f"ret-chain-roll-{i}")
        left = {seq for wid, seq, _ in raw_records(settings.bootstrap_servers, TopicNames(settings.topic_prefix).events, p)
                if wid == "ret-chain"}
        if not left & retired:
            break
        assert time.monotonic() < deadline, f"retired seqs still in the log after 90s: {sorted(left & retired)}"
        await asyncio.sleep(0.3)
    assert [e.seq async for e in h.events(follow=False)] == [e.seq for e in kept]

    # A restarted engine rebuilds the workflow from what is left; it still works.
    engine.stop()
    cluster.engine("engine")
    assert await query(h, "run_number") == runs
    await h.signal("finish", "done")
    assert await h.result(timeout=90) == f"{runs}:done"
    hist = await h.history()
    assert hist[:len(kept)] == kept and len(hist) > len(kept)
