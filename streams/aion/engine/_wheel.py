"""The timer wheel: durable timer rows, armed in memory, fired as ``FireTimer`` commands.

- ``timers`` table (RocksDB, partition-local, own changelog): one row per armed timer,
  keyed by ``(fire_at_ms, workflow_id, run_id, timer_id)`` so a scan reads them in due order.
  Written (and its changelog record acknowledged) in the same batch as the event that armed it.
- In memory: per-partition heaps of the armed timers of the partitions this worker owns,
  loaded from the table once Faust's recovery has caught up after an assignment, dropped on
  revocation.
- The tick sends ``FireTimer`` for due timers to the commands topic of the workflow's own
  partition, waits for Kafka's acknowledgement, then deletes the rows. A crash between the
  two fires the timer again; the runtime records only the first fire of a live timer, so a
  duplicate fire records nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Iterable

from faust.types import TP

from ..model import Command, Event, FireTimer
from ..runtime import effects as fx
from ._store import scan_items
from ._timers import TimerHeaps, TimerRow, parse_timer_key

if TYPE_CHECKING:
    from ._engine import Engine

log = logging.getLogger("aion.engine.timers")


def now_ms() -> int:
    return int(time.time() * 1000)


class TimerWheel:
    """The engine's timer service (one per engine worker)."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.app = engine.app
        n = engine.settings.partitions
        self.timers = self.app.Table("timers", key_type=bytes, value_type=bytes, partitions=n)
        self._heaps = TimerHeaps()
        self._loaded: set[int] = set()
        self._wakeup = asyncio.Event()
        self.stats = {"timers_fired": 0}
        self.app.task(self._loop)

    # ------------------------------------------------------------------ engine hooks

    def on_revoked(self, partitions: set[int]) -> None:
        for p in partitions:
            self._heaps.drop_partition(p)
            self._loaded.discard(p)

    def on_assigned(self) -> None:
        # Rows are (re)loaded by the loop once recovery has caught up.
        self._loaded.clear()
        for p in list(self._heaps.partitions()):
            self._heaps.drop_partition(p)
        self._wakeup.set()

    def on_recorded(self, events: list[tuple[int, Event]]) -> None:
        """Events of a batch are durable (hook for terminal-state bookkeeping)."""

    async def apply(self, effects: list[tuple[int, Any]]) -> list[Any]:
        """Arm/disarm timers for a batch; returns the changelog sends to wait for."""
        rows: list[tuple[int, bytes, bytes | None]] = []
        for partition, eff in effects:
            if isinstance(eff, fx.ScheduleTimer):
                row = TimerRow(partition, eff.fire_at_ms, eff.workflow_id, eff.run_id, eff.timer_id)
                old = self._heaps.disarm(eff.workflow_id, eff.run_id, eff.timer_id)
                if old is not None and old.key != row.key:
                    rows.append((partition, old.key, None))
                self._heaps.arm(row)
                rows.append((partition, row.key, b"1"))
                self._wakeup.set()
            elif isinstance(eff, fx.DropTimer):
                row = self._heaps.disarm(eff.workflow_id, eff.run_id, eff.timer_id)
                if row is not None:
                    rows.append((partition, row.key, None))
        return await self._write_rows(rows)

    def pending(self, partition: int | None = None) -> int:
        return self._heaps.pending(partition)

    # ------------------------------------------------------------------ rows

    async def _write_rows(self, rows: Iterable[tuple[int, bytes, bytes | None]]) -> list[Any]:
        topic = self.timers.changelog_topic.get_topic_name()
        futs = []
        for partition, key, value in rows:
            db = self.timers.data._db_for_partition(partition)
            if value is None:
                db.delete(key)
            else:
                db.put(key, value)
            futs.append(await self.app.producer.send(topic, key, value, partition, None, None))
        return futs

    # ------------------------------------------------------------------ the tick

    async def _loop(self) -> None:
        """Fire due timers of the partitions this worker owns, as FireTimer commands."""
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer tick failed; retrying")
                await asyncio.sleep(0.5)
                continue
            nxt = self._heaps.next_due_ms()
            delay = 0.05 if nxt is None else min(0.05, max(0.0, (nxt - now_ms()) / 1000))
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    def _active_partitions(self) -> set[int]:
        topic = self.engine.names.commands
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    async def _tick(self) -> None:
        if self.app.rebalancing or getattr(self.app, "in_recovery", False):
            return
        for p in self._active_partitions() - self._loaded:
            for key, _ in scan_items(self.timers, p):
                self._heaps.arm(parse_timer_key(p, key))
            self._loaded.add(p)
        due = self._heaps.pop_due(now_ms(), self.engine.settings.timer_batch)
        if not due:
            return
        codec = self.engine.codec
        commands = self.engine.names.commands
        futs = []
        for row in due:
            cmd = Command(
                command_id=f"timer:{row.workflow_id}:{row.run_id}:{row.timer_id}:{row.fire_at_ms}",
                workflow_id=row.workflow_id, sent_at_ms=now_ms(),
                body=FireTimer(run_id=row.run_id, timer_id=row.timer_id, fire_at_ms=row.fire_at_ms))
            futs.append(await self.app.producer.send(
                commands, row.workflow_id.encode(), codec.encode_command(cmd), row.partition, None, None))
        await asyncio.gather(*futs)
        # The fire is on the log; the runtime drops duplicates, so the rows can go.
        for row in due:
            self._heaps.forget(row)
        await asyncio.gather(*await self._write_rows([(r.partition, r.key, None) for r in due]))
        self.stats["timers_fired"] += len(due)
