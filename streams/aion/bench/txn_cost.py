"""``python -m aion.bench.txn_cost``: what one Kafka transaction costs against how many
partitions it writes, with bare confluent-kafka on the configured broker.

Why: an engine batch is one transaction of its partition's producer, and its commit is most of
a command's time at moderate load (README, Performance). librdkafka sends one produce request
per partition (never several partitions in one request), and the broker serves one
connection's requests one after another, so every partition a transaction touches adds a round
trip before the commit can end. This measures that alone: ``--producers`` transactional
producers side by side (each as one engine partition's writer), each running ``--txns``
transactions one after another of ``--records`` small records spread over ``--partitions``
partitions (of as many topics, as an engine batch writes its events, table rows and tasks),
with a pause of ``--gap-ms`` between them. Prints the median, p90 and p99 of the transaction
time (``begin_transaction`` to ``commit_transaction`` returning) per partition count.

    python -m aion.bench.txn_cost --bootstrap 127.0.0.1:9092 --partitions 1,3,6 --producers 1,12
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ._stats import median, percentile


def _topics(bootstrap: str, prefix: str, n: int, partitions: int) -> list[str]:
    names = [f"{prefix}.t{i}" for i in range(n)]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(t, partitions, 1) for t in names]).values():
        fut.result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every partition served by its leader
        md = admin.list_topics(timeout=10)
        if all(t in md.topics and len(md.topics[t].partitions) == partitions for t in names):
            break
        time.sleep(0.1)
    return names


def _delete(bootstrap: str, topics: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_topics(topics, operation_timeout=10).values():
        try:
            fut.result(30)
        except Exception:  # best effort
            pass


def _run(bootstrap: str, topics: list[str], producers: int, txns: int, records: int, gap_s: float) -> list[float]:
    times: list[list[float]] = [[] for _ in range(producers)]
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"txn-cost-{uuid.uuid4().hex}",
                          "linger.ms": 0, "acks": "all", "enable.idempotence": True,
                          "retry.backoff.ms": 2, "retry.backoff.max.ms": 100})  # as the engine's writers
            p.list_topics(timeout=10)
            p.init_transactions(30)
            value = b"x" * 200
            for _ in range(txns):
                t0 = time.perf_counter()
                p.begin_transaction()
                for r in range(records):
                    p.produce(topics[r % len(topics)], value, b"k", partition=i)
                p.commit_transaction(30)
                times[i].append((time.perf_counter() - t0) * 1000)
                time.sleep(gap_s)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    skip = max(1, txns // 10)  # the first transactions find connections and coordinators cold
    return sorted(x for ts in times for x in ts[skip:])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m aion.bench.txn_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--partitions", default="1,3,6", help="partitions per transaction (comma-separated)")
    ap.add_argument("--producers", default="1,12", help="producers side by side (comma-separated)")
    ap.add_argument("--txns", type=int, default=200, help="transactions per producer")
    ap.add_argument("--records", type=int, default=6, help="records per transaction")
    ap.add_argument("--gap-ms", type=float, default=5.0, help="pause between a producer's transactions")
    a = ap.parse_args(argv)
    counts = [int(x) for x in a.partitions.split(",")]
    writers = [int(x) for x in a.producers.split(",")]
    topics = _topics(a.bootstrap, f"txn-cost-{uuid.uuid4().hex[:6]}", max(counts), max(writers))
    try:
        print(f"{'producers':>9} {'partitions/txn':>14} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}")
        for n in writers:
            for k in counts:
                xs = _run(a.bootstrap, topics[:k], n, a.txns, max(a.records, k), a.gap_ms / 1000)
                p50, p90, p99 = median(xs), percentile(xs, 90), percentile(xs, 99)
                print(f"{n:>9} {k:>14} {p50:>7.1f} {p90:>7.1f} {p99:>7.1f}", flush=True)
    finally:
        _delete(a.bootstrap, topics)


if __name__ == "__main__":
    main()
