"""Which offset of each task partition is safe to commit.

The worker runs up to N tasks of a partition at the same time and they finish in any order.
An offset may only be committed once every record before it is done (its result produced), or a
crash would lose the unfinished ones. Per partition this keeps the records still outstanding and
the next offset after the highest one seen; the committable position is the lowest outstanding
offset, or that next offset when nothing is outstanding.

Copies. The same attempt can be delivered again while its first delivery is still waiting,
running or reporting here: a rebalance that hands a partition back re-delivers from the last
committed offset, and the engine may write a task twice after a crash. The copy must not run a
second time, and its offset must not be committed before the first delivery's outcome is durable
(a crash in between would lose the outcome: nothing uncommitted would be left to re-deliver). So
:meth:`received` takes the attempt's key: the first outstanding delivery of a key is its
*primary*; later deliveries are copies, stay outstanding, and are done together with the primary
(when the worker calls :meth:`done` for it, i.e. once its report is acknowledged). A primary that
is forgotten (its partition revoked) leaves its copies in other partitions outstanding — they are
then committed by nobody here, so they are re-delivered after the next rebalance: a stall, never
a loss. (The engine keys every record of an attempt alike, so copies share the primary's
partition and this does not happen with its topics.)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Hashable

TP = tuple[str, int]
Record = tuple[TP, int]


@dataclass(slots=True)
class _PartitionState:
    outstanding: set[int] = field(default_factory=set)
    next_offset: int = -1
    committed: int = -1

    def position(self) -> int:
        if self.outstanding:
            return min(self.outstanding)
        return self.next_offset


class OffsetTracker:
    """Thread-safe: rebalance callbacks run on the consumer's thread, completions on the loop."""

    def __init__(self) -> None:
        self._parts: dict[TP, _PartitionState] = {}
        #: attempt key -> its primary record; primary record -> key; primary record -> copies.
        self._primary: dict[Hashable, Record] = {}
        self._key_of: dict[Record, Hashable] = {}
        self._copies: dict[Record, list[Record]] = {}
        self._lock = threading.Lock()

    def received(self, topic: str, partition: int, offset: int, key: Hashable | None = None) -> bool:
        """A record was handed to the worker; it is outstanding until :meth:`done`.

        With ``key`` (the attempt the record carries): returns False when a delivery of that
        attempt is already outstanding here. The record is then a copy: do not run it; it stays
        outstanding until the first delivery is :meth:`done` and is done with it."""
        with self._lock:
            tp = (topic, partition)
            st = self._parts.setdefault(tp, _PartitionState())
            st.outstanding.add(offset)
            if offset + 1 > st.next_offset:
                st.next_offset = offset + 1
            if key is None:
                return True
            rec = (tp, offset)
            primary = self._primary.get(key)
            if primary is None:
                self._primary[key] = rec
                self._key_of[rec] = key
                return True
            if primary != rec:  # the very same record again needs no link: done() clears it
                self._copies.setdefault(primary, []).append(rec)
            return False

    def done(self, topic: str, partition: int, offset: int) -> None:
        """The record's outcome is durable (or it needs none); copies of the attempt it carries
        are done with it. Unknown partitions are ignored: they were revoked meanwhile and their
        new owner will see the record again."""
        with self._lock:
            rec = ((topic, partition), offset)
            st = self._parts.get(rec[0])
            if st is not None:
                st.outstanding.discard(offset)
            key = self._key_of.pop(rec, None)
            if key is not None and self._primary.get(key) == rec:
                del self._primary[key]
            for ctp, coffset in self._copies.pop(rec, ()):
                cst = self._parts.get(ctp)
                if cst is not None:
                    cst.outstanding.discard(coffset)

    def outstanding(self) -> int:
        with self._lock:
            return sum(len(st.outstanding) for st in self._parts.values())

    def to_commit(self, partitions: list[TP] | None = None) -> dict[TP, int]:
        """Positions that moved since the last :meth:`committed` call (all partitions or some)."""
        with self._lock:
            out: dict[TP, int] = {}
            keys = self._parts.keys() if partitions is None else [p for p in partitions if p in self._parts]
            for key in keys:
                st = self._parts[key]
                pos = st.position()
                if pos >= 0 and pos > st.committed:
                    out[key] = pos
            return out

    def committed(self, positions: dict[TP, int]) -> None:
        with self._lock:
            for key, pos in positions.items():
                st = self._parts.get(key)
                if st is not None and pos > st.committed:
                    st.committed = pos

    def forget(self, partitions: list[TP]) -> None:
        """The partitions were revoked: stop tracking them (and the attempts first delivered on
        them: a later delivery of such an attempt is a primary again)."""
        with self._lock:
            gone = set(partitions)
            for tp in gone:
                self._parts.pop(tp, None)
            for rec in [r for r in self._key_of if r[0] in gone]:
                key = self._key_of.pop(rec)
                if self._primary.get(key) == rec:
                    del self._primary[key]
                self._copies.pop(rec, None)
