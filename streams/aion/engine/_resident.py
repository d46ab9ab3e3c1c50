"""The workflows an engine worker keeps in memory: one least-recently-used set per worker.

``AION_CACHE_SIZE`` bounds the resident workflow executions of the whole worker (not of each
partition: a worker that owns 12 partitions holds at most ``cache_size``, not 12 times that). A
miss rebuilds the execution from its history (``history`` table), so eviction costs a replay
and never correctness. A workflow whose run closed goes first (:meth:`Resident.demote`): the
running ones — long sleepers above all, the least recently used — stay. Partitions leave as a whole (revoked, fenced, a transaction aborted)
with :meth:`Resident.drop`; one workflow leaves with :meth:`Resident.discard`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Iterable, TypeVar

__all__ = ["Resident"]

T = TypeVar("T")


class Resident(Generic[T]):
    """(partition, workflow id) -> execution, least recently used first, at most ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lru: OrderedDict[tuple[int, str], T] = OrderedDict()
        self._count: dict[int, int] = {}

    def get(self, partition: int, workflow_id: str) -> T | None:
        key = (partition, workflow_id)
        value = self._lru.get(key)
        if value is not None:
            self._lru.move_to_end(key)
        return value

    def put(self, partition: int, workflow_id: str, value: T) -> None:
        key = (partition, workflow_id)
        if key not in self._lru:
            self._count[partition] = self._count.get(partition, 0) + 1
        self._lru[key] = value
        self._lru.move_to_end(key)
        while len(self._lru) > self.capacity:
            (p, _), _ = self._lru.popitem(last=False)
            self._less(p)

    def demote(self, partition: int, workflow_ids: Iterable[str]) -> None:
        """``workflow_ids`` closed: they go first when room is needed (before every running
        workflow, however long it has slept), and stay while there is room — a query or a
        late result request right after the close still finds them. Temporal's workers drop a
        closed workflow from their cache at once."""
        lru = self._lru
        for wid in workflow_ids:
            key = (partition, wid)
            if key in lru:
                lru.move_to_end(key, last=False)

    def discard(self, partition: int, workflow_ids: Iterable[str]) -> None:
        for wid in workflow_ids:
            if self._lru.pop((partition, wid), None) is not None:
                self._less(partition)

    def drop(self, partitions: Iterable[int]) -> None:
        gone = set(partitions) & set(self._count)
        if not gone:
            return
        for key in [k for k in self._lru if k[0] in gone]:
            del self._lru[key]
        for p in gone:
            del self._count[p]

    def clear(self) -> None:
        self._lru.clear()
        self._count.clear()

    def count(self, partition: int | None = None) -> int:
        """Resident workflows of ``partition``, or of the worker."""
        return len(self._lru) if partition is None else self._count.get(partition, 0)

    def partitions(self) -> set[int]:
        return set(self._count)

    def _less(self, partition: int) -> None:
        n = self._count[partition] - 1
        if n:
            self._count[partition] = n
        else:
            del self._count[partition]
