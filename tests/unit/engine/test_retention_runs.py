"""The retention retires a continue-as-new chain's closed runs while the chain goes on
(``engine/_retention.py``), on real RocksDB databases: what is left — the chain's first start and
the runs from the step that began a later one — rebuilds the same workflow, its rows are the
rows a rebuild from the log (tombstones folded) makes, history reads skip the retired seqs, and
the log checker accepts the gap while still catching a real one."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import pytest
from faust.stores.rocksdb import RocksDBOptions, Store

from aion.bench.chain import WID, Chain, build
from aion.codec import Codec
from aion.common.settings import Settings
from aion.common.topics import TopicNames
from aion.engine._rebuild import DerivedTables
from aion.engine._retention import Retention, run_bound
from aion.engine._store import HistoryStore, visibility_row
from aion.model import Event, EventKey, WorkflowStarted
from aion.runtime import Registry, WorkflowExecution
from aion.runtime._history_pages import history_page, page_request, read_page
from aion.testing import EventLog, check_event_log

RETENTION_MS = 1_000
CODEC = Codec()


class _Table:
    """A Faust table as the retention uses it: one partition's database (and the key of the row
    that holds its changelog offset), its changelog's name."""

    def __init__(self, db: Any, topic: str) -> None:
        self.data = SimpleNamespace(_db_for_partition=lambda p: db, offset_key=Store.offset_key)
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: topic)


class _Output:
    """The engine's transactions as the retention writes through them: what was written, in order."""

    def __init__(self) -> None:
        self.written: list[tuple[str, bytes, bytes | None, int]] = []
        self.forgotten: list[str] = []

    def lock_for(self, partition: int) -> Any:
        import asyncio

        return asyncio.Lock()

    def owned(self) -> set[int]:
        return {0}

    async def write(self, partition: int, records: Sequence[Any]) -> list[int]:
        start = len(self.written)
        self.written.extend(records)
        return list(range(start, start + len(records)))

    def lost(self, partition: int) -> None:
        raise AssertionError("not fenced here")

    def forget(self, partition: int, workflow_ids: Any) -> None:
        self.forgotten.extend(workflow_ids)


class _App:
    rebalancing = False

    def task(self, fn: object) -> None:
        pass


def _derive(tmp: Path, name: str, events: list[Event]) -> dict[str, Any]:
    """The ``workflows`` and ``timer_terminal`` rows a rebuild derives from ``events``."""
    opts = RocksDBOptions(use_rocksdict=True)
    dbs = {t: opts.open(tmp / f"{name}-{t}") for t in ("workflows", "timers", "timer_terminal")}
    DerivedTables(0, dbs, now_ms=0).add(WID, events)
    return dbs


def _rows(db: Any) -> dict[bytes, bytes]:
    return {k: v for k, v in db.items() if not k.startswith(b"__faust")}


@pytest.fixture
def chain(tmp_path: Path) -> Any:
    ex = build(run=6, timers=4)  # halfway through the 6th run of the chain
    assert ex.run is not None and ex.step_start_seq > 30
    derived = _derive(tmp_path, "engine", ex.history)  # the engine's rows, as a rebuild of the whole log
    opts = RocksDBOptions(use_rocksdict=True)
    history = opts.open(tmp_path / "history")
    for ev in ex.history:
        history.put(CODEC.encode_event_key(EventKey(WID, ev.seq)), CODEC.encode_event(ev))
    tables = SimpleNamespace(history=_Table(history, "x.events"),
                             workflows=_Table(derived["workflows"], "x-workflows-changelog"),
                             terminal=_Table(derived["timer_terminal"], "x-timer_terminal-changelog"))
    out = _Output()
    r = Retention(_App(), Settings(retention_ms=RETENTION_MS), CODEC, TopicNames("x"), tables, out)  # type: ignore[arg-type]
    yield SimpleNamespace(ex=ex, r=r, out=out, history=history, derived=derived, store=HistoryStore(tables.history, CODEC))
    for db in (history, *derived.values()):
        db.close()


async def test_a_chains_closed_runs_retire_and_what_is_left_is_the_same_workflow(chain: Any, tmp_path: Path) -> None:
    ex, r, out = chain.ex, chain.r, chain.out
    row = chain.derived["workflows"].get(WID.encode())
    started, load_from, first = run_bound(row)  # type: ignore[misc]
    assert (load_from, first) == (ex.step_start_seq, 1)
    terminal_before = _rows(chain.derived["timer_terminal"])
    assert len([k for k in terminal_before if k.endswith(b"\0")]) == 5  # each closed run's marker

    # Not yet: the run before the current one closed less than the retention ago.
    assert await r.sweep(now_ms=started + RETENTION_MS - 1) == 0 and out.written == []
    await r.sweep(now_ms=started + RETENTION_MS)

    # One transaction: a tombstone for every event before the step that began the current run,
    # except the chain's first start; and the closed-run markers of the runs wholly retired.
    tombstoned = sorted(CODEC.decode_event_key(k).seq for t, k, v, _ in out.written if t == "x.events")
    assert tombstoned == list(range(2, load_from))
    assert all(v is None for _, _, v, _ in out.written)
    # the local rows left with the changelog offset they reach (the stub's offsets: record indexes)
    last = max(i for i, (t, *_) in enumerate(out.written) if t == "x.events")
    assert chain.history.get(Store.offset_key) == str(last).encode()
    assert out.forgotten == [WID]  # the resident instance goes: the next command loads the current run
    kept = [e for e in ex.history if e.seq == 1 or e.seq >= load_from]
    assert chain.store.load(0, WID) == kept

    # What is kept rebuilds the same workflow (from_history takes the gap as a chain start) ...
    again = WorkflowExecution.from_history(Registry(workflows=[Chain]), WID, kept)
    assert again.first_seq == load_from and again.chain_start_seq == 1
    assert (again.run_id, again.status, again.next_seq, again.run.timers if again.run else None) == \
        (ex.run_id, ex.status, ex.next_seq, ex.run.timers)
    # ... and the worker's rows are those a rebuild from the log (tombstones folded) derives.
    rebuilt = _derive(tmp_path, "rebuilt", kept)
    assert visibility_row(again) == row == rebuilt["workflows"].get(WID.encode())
    assert _rows(chain.derived["timer_terminal"]) == _rows(rebuilt["timer_terminal"])
    assert len(_rows(rebuilt["timer_terminal"])) < len(terminal_before)
    for db in rebuilt.values():
        db.close()

    # History pages skip the retired seqs, at any page size.
    again.earlier = lambda a, b: chain.store.between(0, WID, a, b)
    for budget in (200, 1_000_000):
        got: list[Event] = []
        nxt: int | None = 1
        while nxt is not None:
            page, nxt = read_page(history_page(again.history, page_request(nxt, budget), again.earlier))
            got.extend(page)
        assert got == kept
    assert list(chain.store.between(0, WID, 2, load_from + 2)) == kept[1:3]

    # Nothing more to retire until the current run closes (a second sweep writes nothing).
    n = len(out.written)
    await r.sweep(now_ms=started + 10 * RETENTION_MS)
    assert len(out.written) == n


async def test_a_sweep_retires_up_to_the_boundary_it_knew(chain: Any) -> None:
    """An entry of an older boundary (a run closed longer ago) retires the runs before it only."""
    ex, r, out = chain.ex, chain.r, chain.out
    starts = [e for e in ex.history if isinstance(e.body, WorkflowStarted)]
    third = starts[2]
    upto = next(e.seq for e in ex.history if e.command_id == third.command_id)  # the step that began run 3
    index = await r._index(0)
    index.runs.clear(), index.bounds.clear()
    index.runs.append((third.recorded_at_ms, WID, upto))
    await r.sweep(now_ms=third.recorded_at_ms + RETENTION_MS)
    tombstoned = sorted(CODEC.decode_event_key(k).seq for t, k, _, _ in out.written if t == "x.events")
    assert tombstoned == list(range(2, upto))
    kept = [e for e in ex.history if e.seq == 1 or e.seq >= upto]
    again = WorkflowExecution.from_history(Registry(workflows=[Chain]), WID, chain.store.load(0, WID))
    assert (again.run_id, again.status, again.next_seq) == (ex.run_id, ex.status, ex.next_seq)
    assert chain.store.load(0, WID) == kept


def test_the_checker_accepts_retired_runs_and_still_finds_a_real_gap() -> None:
    ex = build(run=4, timers=2)
    load_from = ex.step_start_seq
    kept = [e for e in ex.history if e.seq == 1 or e.seq >= load_from]
    rep = check_event_log(EventLog.from_events(kept), require_closed=False)
    assert rep.ok, rep.summary()
    assert rep.retired_chains == 1 and rep.runs == 1
    # a gap anywhere else is a violation, as before
    holed = [e for e in kept if e.seq != load_from + 2]
    assert [v.invariant for v in check_event_log(EventLog.from_events(holed), require_closed=False).violations] == ["gapless"]
    no_start = [e for e in ex.history if e.seq >= load_from]  # the chain's first start gone too
    assert "gapless" in [v.invariant for v in check_event_log(EventLog.from_events(no_start), require_closed=False).violations]
    assert json.loads(visibility_row(ex))["load_from_seq"] == load_from


async def test_the_index_takes_one_entry_per_run_boundary(chain: Any) -> None:
    """Every committed ``workflows`` row passes through the index: a chain's row joins it once
    per new run (not once per step), a first run's never."""
    r = chain.r
    row = chain.derived["workflows"].get(WID.encode())
    index = await r._index(0)
    assert [(w, upto) for _, w, upto in index.runs] == [(WID, chain.ex.step_start_seq)]
    for _ in range(3):  # later steps of the same run
        r.rows_committed(0, [("t", WID.encode(), row, 0)])
    assert len(index.runs) == 1
    moved = json.loads(row)
    moved["load_from_seq"] += 9  # the chain continued as new again
    r.rows_committed(0, [("t", WID.encode(), json.dumps(moved).encode(), 0),
                         ("t", b"first-run", json.dumps(dict(moved, load_from_seq=1, chain_start_seq=1)).encode(), 0)])
    assert sorted(upto for _, _, upto in index.runs) == [chain.ex.step_start_seq, chain.ex.step_start_seq + 9]
