"""The engine writes a committed batch's rows into its local tables in one RocksDB write batch
(``_store.write_rows``): the same table as one ``set_row`` per row, in order — a later row of a
key wins, a row without a value deletes."""

from __future__ import annotations

import random
from pathlib import Path

from faust.stores.rocksdb import RocksDBOptions

from aion.engine._store import set_row, write_rows


def _items(db) -> list[tuple[bytes, bytes]]:  # type: ignore[no-untyped-def]
    it = db.iter()
    it.seek_to_first()
    out = []
    while it.valid():
        out.append((it.key(), it.value()))
        it.next()
    return out


def test_a_write_batch_leaves_the_table_one_write_per_row_leaves(tmp_path: Path) -> None:
    one = RocksDBOptions(use_rocksdict=True).open(tmp_path / "one")
    batched = RocksDBOptions(use_rocksdict=True).open(tmp_path / "batched")
    rng = random.Random(19)
    keys = [f"k{i}".encode() for i in range(12)]
    for db in (one, batched):  # rows already there, some of which the batches delete or replace
        for key in keys[::2]:
            db.put(key, b"old")
    for _batch in range(30):
        rows = [(rng.choice(keys), None if rng.random() < 0.3 else rng.randbytes(rng.randint(0, 40)))
                for _ in range(rng.randint(1, 15))]
        for key, value in rows:
            set_row(one, key, value)
        write_rows(batched, rows)
        assert _items(batched) == _items(one)
    assert _items(one)  # some rows stayed
    one.close()
    batched.close()


async def test_committed_rows_carry_the_offset_faust_recovers_from(tmp_path: Path) -> None:
    """The engine writes a batch's rows and the table's persisted changelog offset in one
    write batch (``_faust.offset_row``): Faust's store reads back the offset of the last record
    of each table that the partition's transactions committed."""
    from aion.bench.step import PARTITIONS, _engine, _round
    from aion.codec import Codec
    from aion.engine._faust import db_for, offset_row, stored_offset

    engine = _engine(tmp_path)
    writers = engine.writers
    last: dict[tuple[str, int], int] = {}
    run = writers.run

    async def recording(partition: int, records):  # type: ignore[no-untyped-def]
        offsets = await run(partition, records)
        for rec, offset in zip(records, offsets):
            last[(rec[0], partition)] = offset
        return offsets

    writers.run = recording
    await _round(engine, Codec(), 40, 4, "offsets")
    for table in (engine.history, engine.workflows, engine.progress):
        topic = table.changelog_topic.get_topic_name()
        seen = [p for p in range(PARTITIONS) if (topic, p) in last]
        assert seen
        for p in seen:
            assert stored_offset(table, p) == last[(topic, p)], (topic, p)
    write_rows(db_for(engine.history, 0), [offset_row(engine.history, 12_345)])
    assert stored_offset(engine.history, 0) == 12_345  # what Faust's set_persisted_offset writes, read back
