"""What a healthy engine worker logs: no false alarms.

Faust's livelock check (``Consumer.verify_all_partitions_active``, every
``2.5 * broker_commit_interval``) looks at each assigned partition of an *acking* topic, one
whose stream Faust expects to consume and commit, and logs a multi-line ERROR when that stream
has taken no record for ``stream_processing_timeout`` (default 5 minutes) while the log has
records past the consumer's position. The engine had declared its commands topic (read by its
own consumer, never by Faust) and its events topic (history's changelog) as acking topics, so a
healthy engine logged ~570 of these ERRORs a minute ("Stream has not started processing
TP(topic='<prefix>.events', ...)") from five minutes after start. Faust reads
``STREAM_PROCESSING_TIMEOUT`` from the environment: the engine here gets a two-second timeout,
and the check has had its chance many times over before the end (this test fails with ~80 such
ERRORs when the topics are acking).
"""


from __future__ import annotations

import asyncio
import re
import time

# Every message of Faust's event-path verification (faust/transport/drivers/aiokafka.py).
FAUST_LIVELOCK = re.compile(
    r"Stream has not started processing|Stream stopped processing, or is slow|"
    r"Has not committed .* at all since worker start|Has not committed .* \(last commit|"
    r"Aiokafka has not sent fetch request|Aiokafka stopped fetching|"
    r"Broker stopped responding to fetch requests|Highwater not yet available|"
    r"No active partitions for"
)


async def test_a_serving_engine_logs_no_faust_livelock_errors(cluster, client):  # type: ignore[no-untyped-def]
    cluster.env["STREAM_PROCESSING_TIMEOUT"] = "2"
    engine = cluster.engine()
    cluster.activities()
    # Serve workflows on every partition for well past the timeout: history is appended to
    # every events partition, so each one has records past what Faust's recovery read.
    deadline = time.monotonic() + 15
    n = 0
    while time.monotonic() < deadline:
        handles = [await client.start_workflow("Hello", f"w{n}-{i}", id=f"hello-{n}-{i}") for i in range(8)]
        assert [await h.result(timeout=60) for h in handles] == [f"Hello, w{n}-{i}!" for i in range(8)]
        n += 1
        await asyncio.sleep(0.5)
    await asyncio.sleep(4)  # two timeouts with no traffic at all
    assert engine.alive(), cluster.logs()
    log = engine.log.read_text(errors="replace")
    hits = [line for line in log.splitlines() if FAUST_LIVELOCK.search(line)]
    assert not hits, f"{len(hits)} false alarms, e.g.:\n" + "\n".join(hits[:5])
