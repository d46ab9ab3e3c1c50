"""Partition-local access to the engine's RocksDB tables.

Faust keeps one rocksdict database per table partition. The engine writes its rows there
itself, right after Kafka confirmed the matching changelog record (so the local cache never
holds what the log does not), and reads a workflow's history with one prefix scan: every
history key is the Avro-encoded ``EventKey {workflow_id, seq}``, whose bytes start with the
schema header and the length-prefixed workflow id, so all keys of one workflow share a prefix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Iterator

import faust
from faust.types import TP

from ..codec import Codec
from ..model import Event, EventKey

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger("aion.engine")


def _db(table: Any, partition: int) -> Any:
    """The rocksdict database of ``table`` for ``partition`` (opened on first use)."""
    return table.data._db_for_partition(partition)


def workflow_key_prefix(codec: Codec, workflow_id: str) -> bytes:
    """The byte prefix shared by every history key of ``workflow_id``.

    Avro encodes the key as ``header + string(workflow_id) + long(seq)``; the header and the
    length-prefixed string do not depend on ``seq``, so cutting off the ``seq`` varint of a
    key with seq=0 (one byte, ``0x00``) leaves the prefix.
    """
    return codec.encode_event_key(EventKey(workflow_id, 0))[:-1]


class HistoryStore:
    """Reads and writes of the ``history`` table (its changelog is the events topic)."""

    def __init__(self, table: Any, codec: Codec) -> None:
        self.table = table
        self.codec = codec

    def load(self, partition: int, workflow_id: str) -> list[Event]:
        """Every recorded event of ``workflow_id``, ordered by seq."""
        db = _db(self.table, partition)
        prefix = workflow_key_prefix(self.codec, workflow_id)
        events: list[Event] = []
        for key, value in _prefix_items(db, prefix):
            if value is None:
                continue
            ev = self.codec.decode_event(value)
            if ev.workflow_id == workflow_id:
                events.append(ev)
        events.sort(key=lambda e: e.seq)
        return events

    def write_local(self, partition: int, rows: list[tuple[bytes, bytes | None]]) -> None:
        db = _db(self.table, partition)
        for key, value in rows:
            if value is None:
                db.delete(key)
            else:
                db.put(key, value)


def _prefix_items(db: Any, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    it = db.iter()
    it.seek(prefix)
    while it.valid():
        key = it.key()
        if not key.startswith(prefix):
            break
        yield key, it.value()
        it.next()


def scan_items(table: Any, partition: int, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
    """Rows of ``table`` in ``partition`` in key order from ``start``."""
    db = _db(table, partition)
    it = db.iter()
    if start:
        it.seek(start)
    else:
        it.seek_to_first()
    while it.valid():
        key = it.key()
        if not key.startswith(b"__faust"):
            yield key, it.value()
        it.next()


class CaughtUpTable(faust.Table):  # type: ignore[misc]
    """An engine table (raw bytes rows, RocksDB) caught up from its changelog before Faust's
    recovery reads it.

    A worker that takes over a partition restores its tables from their changelogs: for
    ``history`` the events topic, every event recorded there (minus retired workflows); for
    ``workflows``, ``timers`` and ``timer_terminal`` their own changelogs, which grow with the
    load too. Faust's recovery reads a changelog record by record (~10,000 records/s on the
    development machine: seconds per takeover after a few minutes of load, growing with
    age). Right after Faust opened the newly assigned partitions' databases and before its
    recovery starts, this table reads the partitions it has no copy of with librdkafka straight into
    RocksDB (the rebuild's reader, hundreds of thousands of records/s) and records the offset
    reached; Faust's recovery then reads only what was appended since. Standby partitions are
    left to Faust.
    """

    #: Set by the engine: the settings the catch-up reads the changelog with.
    aion_settings: "Settings | None" = None

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        settings = self.aion_settings
        topic = self.changelog_topic.get_topic_name()
        standbys = self.app.assignor.assigned_standbys()
        # Only partitions this worker holds no copy of (no stored offset): a copy left by an
        # earlier assignment or a reused data folder is brought up to date by Faust, as before
        # (a chaos run once ended with a closed-run marker missing from a reused folder's
        # timer_terminal table; not shown to come from here, but kept out of that path).
        partitions = sorted(tp.partition for tp in newly_assigned if tp.topic == topic and tp not in standbys
                            and self.data.persisted_offset(tp) is None)
        if settings is None or not partitions:
            return
        t0 = time.monotonic()
        try:
            n = await asyncio.get_running_loop().run_in_executor(None, catch_up, self.data, settings,
                                                                 topic, partitions)
        except Exception as exc:  # Faust's recovery reads it all instead: slower, not wrong
            log.warning("%s: catch-up of partitions %s failed (%s: %s); Faust's recovery reads them",
                        self.name, partitions, type(exc).__name__, exc)
            return
        if n:
            log.info("%s: caught up %d records of partitions %s in %.2fs before recovery", self.name, n,
                     partitions, time.monotonic() - t0)


#: A catch-up that reads nothing for this long gives up (Faust's recovery then reads it all):
#: it runs inside the rebalance callback, which must not hang on a broker that is restarting.
STALL_S = 15.0
#: Longest a catch-up runs (it holds up the rebalance callback); the rest is left to Faust.
BUDGET_S = 30.0


def catch_up(store: Any, settings: "Settings", topic: str, partitions: list[int],
             flush_bytes: int = 32 * 1024 * 1024, budget_s: float = BUDGET_S) -> int:
    """Read each partition of the changelog ``topic`` — partitions ``store`` (the table's Faust
    rocksdict store) holds no copy of — from its first offset to the end, into the partition's
    database, moving the stored offset along (as Faust's ``apply_changelog_batch`` does: the
    offset goes in the same write batch as the rows). Stops after ``budget_s`` (Faust's
    recovery reads the rest). Returns the records read."""
    import rocksdict

    from ._rebuild import scan_events

    # The handles Faust opened for this assignment (not re-opened if a new rebalance revokes a
    # partition meanwhile: what is written is valid history either way).
    dbs = {p: store._db_for_partition(p) for p in partitions}
    batches: dict[int, Any] = {}
    last: dict[int, int] = {}
    count = pending = 0
    deadline = time.monotonic() + budget_s

    def flush() -> None:
        for p, batch in batches.items():
            batch.put(store.offset_key, str(last[p]).encode())  # as Store.set_persisted_offset
            dbs[p].write(batch)
        batches.clear()

    for p, offset, key, value in scan_events(settings, partitions, topic=topic,
                                               timeout_s=STALL_S):
        batch = batches.get(p)
        if batch is None:
            batch = batches[p] = rocksdict.WriteBatch(raw_mode=True)
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
        last[p] = offset
        count += 1
        pending += len(key or b"") + len(value or b"")
        if pending >= flush_bytes:
            flush()
            pending = 0
            if time.monotonic() > deadline:
                break  # the rebalance callback must not run long: Faust reads the rest
    flush()
    return count
