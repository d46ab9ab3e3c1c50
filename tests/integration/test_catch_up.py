"""The takeover catch-up (``aion/engine/_store.py``: ``catch_up``) and the engine's command
reader (``aion/engine/_feed.py``) against the real broker and real RocksDB.

The catch-up reads every table's changelog partitions with one librdkafka reader: committed
records only, from each partition's first offset to its end, into the partition's database,
with the stored offset moved past the trailing commit marker."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from faust.stores.rocksdb import RocksDBOptions
import pytest

from aion.engine._changelog import LATEST, OffsetLookupError, RebuildError, _consumer, _end_offsets, _offsets_at
from aion.engine._feed import CommandReader
from aion.engine._store import catch_up

OFFSET_KEY = b"__faust\0offset__"  # where Faust's rocksdb store keeps a partition's changelog offset


class _Store:
    """The two members of Faust's rocksdb ``Store`` that the catch-up uses, on real RocksDB."""

    offset_key = OFFSET_KEY

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.dbs: dict[int, Any] = {}

    def _db_for_partition(self, partition: int) -> Any:
        if partition not in self.dbs:
            self.dbs[partition] = RocksDBOptions(use_rocksdict=True).open(self.folder / f"p{partition}")
        return self.dbs[partition]


def _topics(settings, names: list[str], partitions: int) -> None:  # type: ignore[no-untyped-def]
    admin = AdminClient(settings.confluent_config())
    for fut in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        fut.result(30)


def _txn(settings, name: str, records: list[tuple[str, int, bytes, bytes | None]], *, abort: bool = False) -> None:  # type: ignore[no-untyped-def]
    p = Producer(dict(settings.confluent_config(), **{"transactional.id": f"{settings.topic_prefix}-{name}"}))
    p.init_transactions(30)
    p.begin_transaction()
    for topic, partition, key, value in records:
        p.produce(topic, value, key, partition=partition)
    if abort:
        p.flush(30)
        p.abort_transaction(30)
    else:
        p.commit_transaction(30)


def test_one_reader_catches_every_table_up(settings, tmp_path):  # type: ignore[no-untyped-def]
    """Two tables' changelogs: rows overwritten and deleted, an aborted transaction, and a start
    offset past the first records. Each database ends with the log's rows from its start on,
    never an aborted one, and the stored offset at the last offset of its log (the commit
    marker), so Faust's recovery has nothing left to wait for."""
    a, b = f"{settings.topic_prefix}-engine-a-changelog", f"{settings.topic_prefix}-engine-b-changelog"
    _topics(settings, [a, b], 2)
    _txn(settings, "w1", [(a, 0, b"old", b"1"), (a, 0, b"k1", b"v1"), (a, 1, b"k2", b"v2"), (b, 0, b"x", b"1")])
    _txn(settings, "w2", [(a, 0, b"k1", b"v1b"), (a, 1, b"k2", None), (b, 0, b"y", b"2"), (b, 1, b"z", b"3")])
    _txn(settings, "w3", [(a, 0, b"ghost", b"aborted"), (b, 1, b"z", b"aborted")], abort=True)
    sa, sb = _Store(tmp_path / "a"), _Store(tmp_path / "b")
    # Table a's partition 0 starts past its first record ("old", offset 0): it is not read again.
    work = {"a": (sa, a, {0: 1, 1: 0}), "b": (sb, b, {0: 0, 1: 0})}

    read = catch_up(work, settings)

    assert read == {"a": 4, "b": 3}  # committed records from each start: a 0:[k1,k1] 1:[k2,k2-] ; b 0:[x,y] 1:[z]

    def rows(store: _Store, p: int) -> dict[bytes, bytes]:
        return {k: v for k, v in store._db_for_partition(p).items() if k != OFFSET_KEY}

    assert rows(sa, 0) == {b"k1": b"v1b"}  # "old" was before the start; "ghost" was aborted
    assert rows(sa, 1) == {}  # written, then deleted
    assert rows(sb, 0) == {b"x": b"1", b"y": b"2"}
    assert rows(sb, 1) == {b"z": b"3"}  # the aborted overwrite is not applied
    ends = {}
    from aion.engine._changelog import _consumer, _end_offsets

    c = _consumer(settings, "test-ends")
    try:
        for topic in (a, b):
            ends[topic] = {p: hi for p, (_lo, hi) in _end_offsets(c, topic, [0, 1]).items()}
    finally:
        c.close()
    for store, topic in ((sa, a), (sb, b)):
        for p in (0, 1):
            stored = int(store._db_for_partition(p)[OFFSET_KEY])
            assert stored == ends[topic][p] - 1, (topic, p, stored, ends[topic][p])


def test_a_catch_up_with_nothing_new_reads_nothing(settings, tmp_path):  # type: ignore[no-untyped-def]
    """Starts at the end of each log (a worker that kept up as a standby): nothing is read and
    the rows stay as they are."""
    a = f"{settings.topic_prefix}-engine-a-changelog"
    _topics(settings, [a], 1)
    _txn(settings, "w1", [(a, 0, b"k", b"v")])
    store = _Store(tmp_path / "a")
    assert catch_up({"a": (store, a, {0: 0})}, settings) == {"a": 1}
    end = int(store._db_for_partition(0)[OFFSET_KEY]) + 1
    assert catch_up({"a": (store, a, {0: end})}, settings) == {"a": 0}
    assert store._db_for_partition(0)[b"k"] == b"v"


def test_the_reader_answers_while_its_intake_polls(settings):  # type: ignore[no-untyped-def]
    """The engine's intake polls the command reader back to back in a thread. A call on the
    same librdkafka consumer from another thread waits for a poll to return, and with polls back
    to back it could wait without end (seen: a metadata request still waiting after a minute).
    The committed offsets are asked through a consumer of their own; the topic's metadata and
    the assignment come from the thread that drives the polls, between two of them. Records
    then flow from the given offsets."""
    topic = f"{settings.topic_prefix}.commands"
    _topics(settings, [topic], 2)
    p = Producer(settings.confluent_config())
    for i in range(6):
        p.produce(topic, f"v{i}".encode(), f"k{i}".encode(), partition=i % 2)
    p.flush(30)
    reader = CommandReader(settings.confluent_config(), f"{settings.topic_prefix}-engine", topic,
                           max_record_bytes=1_000_000)
    stop, hold, idle = threading.Event(), threading.Event(), threading.Event()
    got: list[tuple[int, int]] = []

    def intake() -> None:  # the engine's take loop: poll after poll, no gap
        while not stop.is_set():
            if hold.is_set():  # the event loop is busy (assigning): no poll starts
                idle.set()
                time.sleep(0.001)
                continue
            idle.clear()
            got.extend((m.partition(), m.offset()) for m in reader.take(10, 0.02))

    t = threading.Thread(target=intake, daemon=True)
    t.start()
    try:
        answer: dict[str, Any] = {}
        asker = threading.Thread(target=lambda: answer.update(offsets=reader.committed({0, 1}, timeout=20)), daemon=True)
        asker.start()
        asker.join(40)
        assert not asker.is_alive(), "committed() did not return while the reader polled"
        assert answer["offsets"] == {0: -1001, 1: -1001}  # nothing committed by the group: start at the first offset
        hold.set()
        assert idle.wait(5)
        reader.learn_topic()
        reader.assign({0: 1, 1: 0})
        hold.clear()
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(got) == [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    finally:
        stop.set()
        t.join(5)
        reader.close()


def test_the_end_offsets_of_every_partition_in_one_look_up(settings):  # type: ignore[no-untyped-def]
    """``_offsets_at`` (the catch-up's look-up of its ends, one request per broker) gives a
    read-committed consumer's last stable offsets (a transaction still open holds one back) and,
    with ``_end_offsets``, the first offsets (past deleted records); a topic that does not exist
    is an error that names it, alone or beside others."""
    a, b = f"{settings.topic_prefix}-engine-a-changelog", f"{settings.topic_prefix}-engine-b-changelog"
    nope = f"{settings.topic_prefix}-engine-nope"
    _topics(settings, [a, b], 3)
    _txn(settings, "w1", [(a, 0, b"k", b"1"), (a, 0, b"k", b"2"), (a, 2, b"k", b"3"), (b, 1, b"k", b"4")])
    c = _consumer(settings, "test-ends")
    try:
        # The commit markers are written after commit_transaction returns: wait for them.
        expected = {(a, 0): 3, (a, 1): 0, (a, 2): 2, (b, 0): 0, (b, 1): 2, (b, 2): 0}
        deadline = time.monotonic() + 30
        while {tp: c.get_watermark_offsets(TopicPartition(*tp), timeout=10)[1] for tp in expected} != expected:
            assert time.monotonic() < deadline, "the commit markers were not written within 30 s"
            time.sleep(0.05)
        admin = AdminClient(settings.confluent_config())  # kept: its futures end with it
        for fut in admin.delete_records([TopicPartition(a, 0, 1)]).values():
            fut.result(30)
        open_txn = Producer(dict(settings.confluent_config(), **{"transactional.id": f"{settings.topic_prefix}-open"}))
        open_txn.init_transactions(30)
        open_txn.begin_transaction()
        open_txn.produce(a, b"unfinished", b"k", partition=2)
        open_txn.flush(30)

        assert _offsets_at(c, list(expected), LATEST, timeout=30) == expected  # a2: the open record held back
        assert _end_offsets(c, a, range(3), timeout=30) == {0: (1, 3), 1: (0, 0), 2: (0, 2)}  # a0: record 0 deleted
        with pytest.raises(OffsetLookupError, match=nope):
            _offsets_at(c, [(nope, 0)], LATEST, timeout=5)
        with pytest.raises(OffsetLookupError, match=f"{nope} \\[0\\]"):
            _offsets_at(c, [(a, 0), (nope, 0)], LATEST, timeout=5)
        with pytest.raises(RebuildError, match=f"topic '{nope}'"):
            _end_offsets(c, nope, [0], timeout=5)
        open_txn.abort_transaction(30)
    finally:
        c.close()
