"""The engine's cache-miss read (``HistoryStore.load_run``) on a real RocksDB database: the
current run of a continue-as-new chain, found through the workflow's ``workflows`` row and read
by key — the earlier runs' events are neither read nor decoded — and the whole history when no
row says where the run starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faust.stores.rocksdb import RocksDBOptions

from aion.bench.chain import WID, Chain, _Table, build
from aion.codec import Codec
from aion.engine._store import HistoryStore, event_keys, visibility_row
from aion.model import Event, EventKey, MarkerRecorded, WorkflowStarted
from aion.runtime import Registry, WorkflowExecution


class CountingCodec(Codec):
    """Counts the events decoded."""

    decoded = 0

    def decode_event(self, data: bytes) -> Event:
        self.decoded += 1
        return super().decode_event(data)


def test_event_keys_are_the_codecs() -> None:
    codec = Codec()
    for wid in ("w", "chain-1", "x" * 300):
        key = event_keys(codec, wid)
        for seq in (0, 1, 2, 63, 64, 65, 127, 128, 8191, 8192, 10**6, 2**40):
            assert key(seq) == codec.encode_event_key(EventKey(wid, seq)), (wid, seq)


def _store(tmp_path: Path, ex: WorkflowExecution) -> tuple[HistoryStore, CountingCodec, Any]:
    codec = CountingCodec()
    db = RocksDBOptions(use_rocksdict=True).open(tmp_path / "history")
    for ev in ex.history:
        db.put(codec.encode_event_key(EventKey(ev.workflow_id, ev.seq)), codec.encode_event(ev))
    for wid in (WID + "0", WID[:-1], "other"):  # neighbours in key order
        for seq in range(1, 30):
            db.put(codec.encode_event_key(EventKey(wid, seq)),
                   codec.encode_event(Event(wid, seq, "r", 1, MarkerRecorded("m", str(seq), None))))
    return HistoryStore(_Table(db), codec), codec, db


def test_a_miss_reads_the_current_run_only(tmp_path: Path) -> None:
    ex = build(run=40, timers=6)  # halfway through the run after 39 continue-as-new
    assert ex.run is not None and ex.run.start_seq > 300
    store, codec, db = _store(tmp_path, ex)
    row = visibility_row(ex)
    assert json.loads(row)["load_from_seq"] == ex.step_start_seq < ex.run.start_seq
    assert json.loads(row)["chain_start_seq"] == 1
    got = store.load_run(0, WID, row)
    assert got is not None and got.chain_start is not None
    assert got.events == ex.history[ex.step_start_seq - 1:]
    assert got.chain_start == ex.history[0] and isinstance(got.chain_start.body, WorkflowStarted)
    assert codec.decoded == len(got.events) + 1  # nothing of the 39 runs before was decoded
    again = WorkflowExecution.from_history(Registry(workflows=[Chain]), WID, got.events, chain_start=got.chain_start)
    assert (again.run_id, again.status, again.next_seq, again.run.timers if again.run else None) == \
        (ex.run_id, ex.status, ex.next_seq, ex.run.timers)
    # the engine's row of it is the row a rebuild from the whole history writes (aion rebuild)
    assert visibility_row(again) == row
    # the earlier events, for a history page, in seq order and as far as asked
    assert list(store.between(0, WID, 3, 9)) == ex.history[2:8]
    assert list(store.between(0, WID, ex.next_seq - 2, ex.next_seq + 5)) == ex.history[-2:]
    # the whole history (what a miss read before) decodes every event
    codec.decoded = 0
    assert store.load(0, WID) == ex.history and codec.decoded == len(ex.history)
    db.close()


def test_without_a_row_that_says_where_the_run_starts_the_miss_reads_the_whole_history(tmp_path: Path) -> None:
    ex = build(run=3, timers=2)
    store, _codec, db = _store(tmp_path, ex)
    old = json.loads(visibility_row(ex))
    del old["load_from_seq"], old["chain_start_seq"]  # a row of an engine before them
    assert store.load_run(0, WID, None) is None
    assert store.load_run(0, WID, json.dumps(old).encode()) is None
    assert store.load_run(0, "never-started", visibility_row(WorkflowExecution.new(None, "never-started"))) is None  # type: ignore[arg-type]
    # a row ahead of the local history (not possible with transactions, but never trusted): no guess
    ahead = dict(json.loads(visibility_row(ex)), load_from_seq=ex.next_seq + 3)
    assert store.load_run(0, WID, json.dumps(ahead).encode()) is None
    wrong_chain = dict(json.loads(visibility_row(ex)), chain_start_seq=2)  # not a WorkflowStarted
    assert store.load_run(0, WID, json.dumps(wrong_chain).encode()) is None
    db.close()
