"""Partition-local access to the engine's RocksDB tables.

Faust keeps one rocksdict database per table partition. The engine writes its rows there
itself, right after Kafka confirmed the matching changelog record (so the local cache never
holds what the log does not), and reads a workflow's history with one prefix scan: every
history key is the Avro-encoded ``EventKey {workflow_id, seq}``, whose bytes start with the
schema header and the length-prefixed workflow id, so all keys of one workflow share a prefix.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..codec import Codec
from ..model import Event, EventKey


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
