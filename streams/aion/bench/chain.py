"""``python -m aion.bench.chain``: what a cache miss costs a workflow on its first run and on its
100th continue-as-new run — the engine's read of the workflow from its RocksDB ``history`` table
and the replay that rebuilds it (``Engine._execution``).

No broker: the history is made by the engine's step (``WorkflowExecution``) in this process and
written to a RocksDB database opened as Faust opens the engine's tables, with the workflow's
``workflows`` row beside it (as the engine commits them). The workflow (``aion.bench.Chain``)
sleeps ``--timers`` one-second timers per run and then continues as new; the miss is measured
halfway through a run (median of ``--repeats``; wall time, and the process's CPU time, which a
busy machine disturbs less), both ways where the code has both:

- whole history: every event of the workflow id read (one prefix scan) and decoded, and the
  whole chain replayed — the only way before the workflow's row said where its current run
  starts, and still the way for a row written by an older engine;
- current run: the events from the start of the step that began the current run, read by key,
  and the chain's first ``WorkflowStarted`` (``HistoryStore.load_run``).

``--others`` events of other workflows share the database (a partition holds many workflows).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from faust.stores.rocksdb import RocksDBOptions

from .. import workflow
from ..codec import Codec
from ..converter import default_converter
from ..engine import _store
from ..model import Command, Event, EventKey, FireTimer, MarkerRecorded, StartWorkflow
from ..runtime import Registry, WorkflowExecution
from ..runtime.effects import ScheduleTimer

WID = "chain-1"


@workflow.defn(name="aion.bench.Chain")
class Chain:
    """``timers`` one-second timers, then the next run (up to run ``limit``)."""

    @workflow.run
    async def run(self, n: int, limit: int, timers: int) -> int:
        for _ in range(timers):
            await workflow.sleep(timedelta(seconds=1))
        if n < limit:
            workflow.continue_as_new(n + 1, limit, timers)
        return n


def build(run: int, timers: int) -> WorkflowExecution:
    """The workflow stepped to the middle of its run number ``run`` (1: the first; 101: after 100
    continue-as-new), every timer fired in turn."""
    registry = Registry(workflows=[Chain])
    conv = default_converter()
    ex = WorkflowExecution.new(registry, WID)
    now = 1_000
    step = ex.handle(Command("start", WID, now, StartWorkflow("aion.bench.Chain", conv.to_payloads([1, 10**9, timers]))),
                     now)
    i = 0
    while True:
        assert ex.run is not None
        n = conv.from_payload(ex.run.started.input[0], int)
        if n == run and sum(1 for e in ex.history[ex.run.start_index:] if type(e.body).__name__ == "TimerFired") \
                >= timers // 2:
            return ex
        timer = next(e for e in step.effects if isinstance(e, ScheduleTimer) and e.timer_id in ex.run.timers)
        now = timer.fire_at_ms
        i += 1
        step = ex.handle(Command(f"fire-{i}", WID, now, FireTimer(run_id=timer.run_id, timer_id=timer.timer_id,
                                                                  fire_at_ms=timer.fire_at_ms)), now)


class _Table:
    """What the store reads of a Faust table: its database of a partition."""

    def __init__(self, db: Any) -> None:
        self.data = SimpleNamespace(_db_for_partition=lambda partition: db)


def measure(run: int, timers: int, others: int, repeats: int, folder: Path) -> dict[str, Any]:
    """Milliseconds (median of ``repeats``) of a cache miss of the workflow on run ``run``."""
    ex = build(run, timers)
    codec = Codec()
    history_db = RocksDBOptions(use_rocksdict=True).open(folder / f"history-{run}")
    rows_db = RocksDBOptions(use_rocksdict=True).open(folder / f"workflows-{run}")
    for i in range(others):  # other workflows' events, interleaved in key order with this one's
        wid, seq = f"other-{i // 20}", i % 20 + 1
        history_db.put(codec.encode_event_key(EventKey(wid, seq)),
                       codec.encode_event(Event(wid, seq, "run-0", 1_000, MarkerRecorded("filler", str(i), None))))
    for ev in ex.history:
        history_db.put(codec.encode_event_key(EventKey(ev.workflow_id, ev.seq)), codec.encode_event(ev))
    rows_db.put(WID.encode(), _store.visibility_row(ex))
    history_db.flush()
    rows_db.flush()
    store = _store.HistoryStore(_Table(history_db), codec)
    registry = Registry(workflows=[Chain])

    def whole() -> int:
        events = store.load(0, WID)
        again = WorkflowExecution.from_history(registry, WID, events)
        assert again.run_id == ex.run_id and again.next_seq == ex.next_seq
        return len(events)

    def current() -> int:
        got = store.load_run(0, WID, rows_db.get(WID.encode()))
        assert got is not None, "the workflow's row says nothing of its current run"
        again = WorkflowExecution.from_history(registry, WID, got.events, chain_start=got.chain_start)
        assert again.run_id == ex.run_id and again.next_seq == ex.next_seq
        return len(got.events) + (got.chain_start is not None)

    out: dict[str, Any] = {"events": len(ex.history)}
    ways: list[tuple[str, Callable[[], int]]] = [("whole", whole)]
    if hasattr(store, "load_run"):  # (this code; the engine before it read the whole history)
        ways.append(("current", current))
    for name, fn in ways:
        times, cpu, read = [], [], 0
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            read = fn()
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        out[name] = (statistics.median(times), read, statistics.median(cpu))
    history_db.close()
    rows_db.close()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m aion.bench.chain", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100, help="continue-as-new before the run measured")
    ap.add_argument("--timers", type=int, default=10, help="timers per run (2 events each)")
    ap.add_argument("--others", type=int, default=20_000, help="other workflows' events in the database")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args(argv)
    print(f"cache miss (RocksDB read + replay) of a workflow halfway through a run of {a.timers} timers, "
          f"{a.others} other events in the database; ms, median of {a.repeats}:")
    with tempfile.TemporaryDirectory(prefix="aion-bench-chain-") as tmp:
        for run in (1, a.runs + 1):
            m = measure(run, a.timers, a.others, a.repeats, Path(tmp))
            label = "first run" if run == 1 else f"after {run - 1} continue-as-new"
            figures = [f"{what} {m[way][0]:.2f} ms, CPU {m[way][2]:.2f} ms ({m[way][1]} events read)"
                       for way, what in (("whole", "whole history"), ("current", "current run")) if way in m]
            print(f"  {label:>28} ({m['events']} events in the history): " + "; ".join(figures))


if __name__ == "__main__":
    main()
