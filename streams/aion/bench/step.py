"""``python -m aion.bench.step``: the engine's own CPU per one-activity workflow on its batch
path — decode the commands, run the workflow steps, assemble the transaction's records, write
the local tables — with no broker, in this process.

Why: ``aion bench throughput`` measures the engine beside the broker, the activity worker and
the load generator on the same cores, and on a shared machine its wall-clock figures move by
2× between runs. The CPU the engine spends per command barely moves with load, and this
benchmark measures that part alone: a real :class:`~aion.engine._engine.Engine` (its Faust
app, RocksDB tables in a temporary directory, timer wheel, retention) prepares and commits
batches exactly as under load, except that the Kafka transaction is replaced by a stub that
returns offsets (what librdkafka and the broker cost is the floor's, not the engine's).

Per round: ``--workflows`` ``BenchOne`` starts (as the Kafka client sends them: ``reply_to``,
result wanted), spread over the partitions by workflow id and taken in batches of
``--batch``; then each workflow's activity result (as the activity worker sends it) for the
task its start dispatched. Prints CPU microseconds per workflow (``time.process_time``),
median and min–max of ``--rounds`` rounds (the first round, which loads the code, is not
counted). ``--profile FILE`` writes a cProfile of one more round.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

from ..codec import Codec, partition_for
from ..common.settings import Settings
from ..converter import default_converter
from ..model import ActivityTask, ActivityTaskCompleted, Command
from ..client._names import start_body

PARTITIONS = 12


class _StubWriters:
    """The engine's ``Writers`` without Kafka: every partition owned, each transaction
    "commits" at once with consecutive offsets; the activity tasks it carried are kept."""

    def __init__(self, task_topic_prefix: str) -> None:
        self._next: dict[int, int] = {}
        self._tasks = task_topic_prefix
        self.tasks: list[bytes] = []

    def owned(self) -> set[int]:
        return set(range(PARTITIONS))

    async def run(self, partition: int, records: Sequence[Any]) -> list[int]:
        n = self._next.get(partition, 0)
        self._next[partition] = n + len(records)
        self.tasks.extend(r[2] for r in records if r[0].startswith(self._tasks))
        return list(range(n, n + len(records)))

    def close(self, partitions: Any = None) -> None:
        pass


def _engine(data_dir: Path) -> Any:
    from ..engine._engine import Engine
    from ..engine._intake import Intake
    from ..engine.worker import build_engine

    settings = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="stepbench", partitions=PARTITIONS,
                        data_dir=data_dir)
    engine: Engine = build_engine(settings, ["aion.bench._workload"])
    engine.writers = _StubWriters(engine.names.activity_tasks("default"))  # type: ignore[assignment]
    engine.intake = Intake(settings, engine.names, lambda topics: {t: PARTITIONS for t in topics})
    engine.intake.load()
    engine._ready = set(range(PARTITIONS))
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done.set_result(PARTITIONS)
    engine._queues["default"] = done  # the task topic "exists" with PARTITIONS partitions: no admin call
    return engine


async def _batches(engine: Any, records: list[tuple[str, bytes]], batch: int) -> None:
    """``records`` (workflow id, command value) through the engine's batch path, by partition."""
    by_part: dict[int, list[Any]] = {}
    offsets: dict[int, int] = {}
    for wid, value in records:
        p = partition_for(wid, PARTITIONS)
        o = offsets.get(p, 0)
        offsets[p] = o + 1
        by_part.setdefault(p, []).append((p, o, value, wid.encode(), None))
    for p, recs in by_part.items():
        for i in range(0, len(recs), batch):
            await engine._process(p, recs[i:i + batch])


async def _round(engine: Any, codec: Codec, n: int, batch: int, tag: str) -> float:
    """CPU seconds (this process) of ``n`` one-activity workflows through the engine."""
    conv = default_converter()
    reply_to = f"{engine.names.replies}:0"
    starts = []
    for i in range(n):
        wid = f"{tag}-{i}"
        body, _ = start_body(conv, "BenchOne", [i], task_queue="default", id_reuse_policy="ALLOW_DUPLICATE",
                             execution_timeout=None, run_timeout=None, search_attributes=None,
                             request_id=None, wait_result=True)
        starts.append((wid, codec.encode_command(Command(str(uuid.uuid4()), wid, int(time.time() * 1000), body,
                                                         reply_to=reply_to))))
    writers = engine.writers
    writers.tasks.clear()
    t0 = time.process_time()
    await _batches(engine, starts, batch)
    t1 = time.process_time()
    results = []
    for raw in writers.tasks:
        task = codec.decode_task(raw)
        assert isinstance(task, ActivityTask)
        # bench_echo returns its input: the result payload is the input's
        body = ActivityTaskCompleted(task.run_id, task.activity_id, task.attempt, task.input[0], "bench-worker")
        results.append((task.workflow_id, codec.encode_command(Command(
            str(uuid.uuid4()), task.workflow_id, int(time.time() * 1000), body))))
    # A start whose activation overran the deadlock timeout (a machine stalled for seconds)
    # is held instead of dispatching its activity: rare, and its cost is counted all the same.
    if len(results) < n - n // 100:
        raise RuntimeError(f"{n} starts dispatched {len(results)} activity tasks")
    t2 = time.process_time()
    await _batches(engine, results, batch)
    t3 = time.process_time()
    done = sum(1 for i in range(n) if (ex := engine._cache.get(partition_for(f"{tag}-{i}", PARTITIONS),
                                                                 f"{tag}-{i}")) is not None
               and ex.status == "COMPLETED")
    if done != len(results):
        raise RuntimeError(f"{done} of {len(results)} workflows completed")
    return (t1 - t0) + (t3 - t2)


async def measure(workflows: int, batch: int, rounds: int, profile: str | None = None) -> list[float]:
    """CPU microseconds per workflow of each of ``rounds`` rounds (after one not counted)."""
    with tempfile.TemporaryDirectory(prefix="aion-stepbench-") as tmp:
        engine = _engine(Path(tmp))
        codec = Codec()
        await _round(engine, codec, workflows, batch, "warm")
        out = []
        for r in range(rounds):
            out.append(await _round(engine, codec, workflows, batch, f"r{r}") * 1e6 / workflows)
        if profile:
            prof = cProfile.Profile(time.process_time)
            prof.enable()
            await _round(engine, codec, workflows, batch, "prof")
            prof.disable()
            prof.dump_stats(profile)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m aion.bench.step", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workflows", type=int, default=2000, help="workflows per round (default 2000)")
    ap.add_argument("--batch", type=int, default=10, help="commands per batch (default 10, as under load)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds measured (default 5)")
    ap.add_argument("--profile", metavar="FILE", help="write a cProfile of one more round to FILE")
    ap.add_argument("--gc", default="worker", metavar="worker|python|A,B,C",
                    help="garbage-collector thresholds: an engine worker's (default: aion.engine.worker.tune_gc), "
                         "Python's own (700, 10, 10, nothing frozen), or these three")
    args = ap.parse_args()
    if args.gc != "python":
        from ..engine.worker import GC_THRESHOLD, tune_gc

        threshold = GC_THRESHOLD if args.gc == "worker" else tuple(int(x) for x in args.gc.split(","))
        tune_gc(threshold)  # type: ignore[arg-type]
    per = asyncio.run(measure(args.workflows, args.batch, args.rounds, args.profile))
    import gc

    print(f"engine CPU per one-activity workflow (2 commands, 5 events; batches of {args.batch}): "
          f"{statistics.median(per):.0f} µs median ({min(per):.0f}–{max(per):.0f}) of {len(per)} rounds "
          f"of {args.workflows}; gc thresholds {gc.get_threshold()}")


if __name__ == "__main__":
    main()
