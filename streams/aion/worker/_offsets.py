"""Which offset of each task partition is safe to commit.

The worker runs up to N tasks of a partition at the same time and they finish in any order.
An offset may only be committed once every record before it is done (its result produced), or a
crash would lose the unfinished ones. Per partition this keeps the records still outstanding and
the next offset after the highest one seen; the committable position is the lowest outstanding
offset, or that next offset when nothing is outstanding.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


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
        self._parts: dict[tuple[str, int], _PartitionState] = {}
        self._lock = threading.Lock()

    def received(self, topic: str, partition: int, offset: int) -> None:
        """A record was handed to the worker; it is outstanding until :meth:`done`."""
        with self._lock:
            st = self._parts.setdefault((topic, partition), _PartitionState())
            st.outstanding.add(offset)
            if offset + 1 > st.next_offset:
                st.next_offset = offset + 1

    def done(self, topic: str, partition: int, offset: int) -> None:
        """The record's outcome is durable (or it needs none). Unknown partitions are ignored:
        they were revoked meanwhile and their new owner will see the record again."""
        with self._lock:
            st = self._parts.get((topic, partition))
            if st is not None:
                st.outstanding.discard(offset)

    def outstanding(self) -> int:
        with self._lock:
            return sum(len(st.outstanding) for st in self._parts.values())

    def to_commit(self, partitions: list[tuple[str, int]] | None = None) -> dict[tuple[str, int], int]:
        """Positions that moved since the last :meth:`committed` call (all partitions or some)."""
        with self._lock:
            out: dict[tuple[str, int], int] = {}
            keys = self._parts.keys() if partitions is None else [p for p in partitions if p in self._parts]
            for key in keys:
                st = self._parts[key]
                pos = st.position()
                if pos >= 0 and pos > st.committed:
                    out[key] = pos
            return out

    def committed(self, positions: dict[tuple[str, int], int]) -> None:
        with self._lock:
            for key, pos in positions.items():
                st = self._parts.get(key)
                if st is not None and pos > st.committed:
                    st.committed = pos

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        """The partitions were revoked: stop tracking them."""
        with self._lock:
            for key in partitions:
                self._parts.pop(key, None)
