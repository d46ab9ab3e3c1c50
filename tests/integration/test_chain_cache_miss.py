"""A cache miss of a long continue-as-new chain reads its current run, not the chain (real
engine process, real Kafka, real RocksDB).

An engine worker that keeps one workflow resident (``AION_CACHE_SIZE=1``) runs a workflow
through 40 continue-as-new; other workflows' commands evict it between each of the next
steps: a query, a signal that completes it. After each miss the workflow answers as it would
have resident, and the engine's ``aion_workflow_cache_miss_events`` counter says the miss read
the last run's few events, not the chain's; the history, served by the engine page by page
(the earlier runs read from its RocksDB), is the whole chain. And a cache smaller than a batch
never makes a workflow's second step in a batch build on a reload that misses its first.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from test_metrics import free_port, get, scrape, until

from aion.model import WorkflowStarted

RUNS = 40
MISS_EVENTS = ("aion_workflow_cache_miss_events_total", ())


async def test_a_cache_miss_of_a_long_chain_reads_only_its_current_run(cluster, client):  # type: ignore[no-untyped-def]
    port = free_port()
    cluster.env["AION_CACHE_SIZE"] = "1"
    cluster.engine(metrics_port=port)
    await until(lambda: get(port, "/readyz")[0] == 200, 90, "engine /readyz", cluster)
    tag = uuid.uuid4().hex[:8]
    h = await client.start_workflow("LongChain", 0, RUNS, id=f"chain-{tag}")
    deadline = time.monotonic() + 90
    while await h.query("run_number", timeout=30) != RUNS:
        assert time.monotonic() < deadline, f"the chain did not reach run {RUNS}\n{cluster.logs()}"
        await asyncio.sleep(0.2)

    async def evict() -> None:
        other = await client.start_workflow("LongChain", 0, 0, id=f"other-{tag}-{uuid.uuid4().hex[:6]}")
        await other.signal("finish", "x")
        assert await other.result(timeout=60) == "0:x"

    await evict()
    before = scrape(port)[MISS_EVENTS]
    assert await h.query("run_number", timeout=30) == RUNS  # a miss: rebuilt from its current run
    read = scrape(port)[MISS_EVENTS] - before
    # the fire step that continued run 39 (fire, continue-as-new, start) and the chain's start
    assert 0 < read <= 6, read

    await evict()
    before = scrape(port)[MISS_EVENTS]
    await h.signal("finish", "done")  # a miss again
    assert await h.result(timeout=60) == f"{RUNS}:done"
    assert 0 < scrape(port)[MISS_EVENTS] - before <= 8

    history = await h.history()  # served by the engine: the earlier runs come from its RocksDB
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert sum(isinstance(e.body, WorkflowStarted) for e in history) == RUNS + 1
    assert len(history) > 4 * RUNS
    desc = await h.describe()
    assert desc.status == "COMPLETED"


async def test_a_batch_with_more_workflows_than_the_cache_steps_each_from_where_the_batch_left_it(cluster, client):  # type: ignore[no-untyped-def]
    """Two signals to each of 30 workflows at once, on an engine that keeps one resident: a
    batch holds both signals of a workflow and others' between them, so the workflow leaves
    the cache between its two steps — its second step must build on its first (not yet in
    RocksDB: the batch has not committed), not on a reload that misses it."""
    cluster.env["AION_CACHE_SIZE"] = "1"
    cluster.engine()
    tag = uuid.uuid4().hex[:8]
    handles = [await client.start_workflow("Approval", 2, id=f"batch-{tag}-{i}") for i in range(30)]
    for h in handles:  # each waiting for its signals (a query answers once its start is stepped)
        assert await h.query("status", timeout=60) == "waiting:0"
    await asyncio.gather(*(h.signal("decide", f"{v}{i}") for v in "ab" for i, h in enumerate(handles)))
    results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
    assert [sorted(r) for r in results] == [[f"a{i}", f"b{i}"] for i in range(30)]
    for h in handles[:5]:
        history = await h.history()
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
