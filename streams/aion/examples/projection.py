"""A read model kept by a plain consumer of the events topic: order status counts in SQLite.

The events topic is a public stream: any service can follow it in its own consumer group and
keep whatever view it needs. This one keeps, for every ``OrderSaga`` workflow, its current
status (``RUNNING``, ``COMPLETED``, ``FAILED``, ``CANCELLED``, ...) and answers "how many
orders are in each status":

```console
$ python -m aion.examples.projection --db orders.sqlite            # follow, print counts
$ python -m aion.examples.projection --db orders.sqlite --rebuild  # from scratch, then follow
```

- **Idempotent**: each row remembers the highest ``seq`` applied; a re-delivered event (at
  least once) or an event the engine re-wrote after a crash changes nothing.
- **Resumable**: Kafka offsets are committed after the SQLite transaction of a batch, so a
  restart resumes after the last committed batch (and at worst re-applies one batch).
- **Rebuilt by resetting offsets**: :meth:`OrderStatusProjection.rebuild` empties the tables,
  moves the group's committed offsets back to the start of the events topic
  (``EventConsumer.reset_offsets``: Kafka's ``AlterConsumerGroupOffsets``) and reads the whole
  topic again. Changing the projection's logic is deploying new code plus a rebuild.

A workflow retired by retention (tombstones on the events topic) keeps its row here: a read
model decides for itself how long to remember.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path
from typing import Any

from aion.client import EventConsumer, EventRecord
from aion.common.settings import Settings
from aion.model import RUN_CLOSING_EVENTS, WorkflowContinuedAsNew, WorkflowStarted

#: Closing event type -> the status it leaves the order in.
_CLOSED = {
    "WorkflowCompleted": "COMPLETED",
    "WorkflowFailed": "FAILED",
    "WorkflowCancelled": "CANCELLED",
    "WorkflowTerminated": "TERMINATED",
    "WorkflowTimedOut": "TIMED_OUT",
}
assert set(_CLOSED) == {t.__name__ for t in RUN_CLOSING_EVENTS} - {WorkflowContinuedAsNew.__name__}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    workflow_id   TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    last_seq      INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status);
"""


class OrderStatusProjection:
    """Order status counts in SQLite, fed by the consumer group ``group_id``."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        settings: Settings | None = None,
        group_id: str = "order-status-projection",
        workflow_type: str = "OrderSaga",
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.group_id = group_id
        self.workflow_type = workflow_type
        self.db = sqlite3.connect(str(db_path))
        self.db.executescript(_SCHEMA)
        self._consumer: EventConsumer | None = None
        #: Records read by this instance (for logs and tests).
        self.records_read = 0

    # ------------------------------------------------------------------ the model

    def apply(self, rec: EventRecord) -> bool:
        """Apply one event to the read model (inside the caller's transaction); True if it changed."""
        ev = rec.event
        if ev is None:
            return False
        if isinstance(ev.body, WorkflowStarted):
            if ev.body.workflow_type != self.workflow_type:
                return False
            status = "RUNNING"
        else:
            status = _CLOSED.get(ev.type, "")
        row = self.db.execute("SELECT last_seq FROM orders WHERE workflow_id = ?", (ev.workflow_id,)).fetchone()
        if row is None and not isinstance(ev.body, WorkflowStarted):
            return False  # not an order (or its start was never seen)
        if row is not None and ev.seq <= row[0]:
            return False  # already applied: a re-delivery or a re-written seq
        if row is None:
            self.db.execute("INSERT INTO orders VALUES (?, ?, ?, ?)",
                            (ev.workflow_id, status, ev.seq, ev.recorded_at_ms))
        elif status:
            self.db.execute("UPDATE orders SET status = ?, last_seq = ?, updated_at_ms = ? WHERE workflow_id = ?",
                            (status, ev.seq, ev.recorded_at_ms, ev.workflow_id))
        else:
            self.db.execute("UPDATE orders SET last_seq = ? WHERE workflow_id = ?", (ev.seq, ev.workflow_id))
        return True

    def counts(self) -> dict[str, int]:
        """Orders per status."""
        return dict(self.db.execute("SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status"))

    def status_of(self, workflow_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM orders WHERE workflow_id = ?", (workflow_id,)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ feeding it

    def _events(self) -> EventConsumer:
        if self._consumer is None:
            self._consumer = EventConsumer(
                self.group_id, settings=self.settings, from_beginning=True,
                event_types=["WorkflowStarted", *_CLOSED],
                # Committed records only (also EventConsumer's default): the engine writes in
                # transactions, and an aborted one's records stay in the log.
                config={"isolation.level": "read_committed"})
        return self._consumer

    def step(self, timeout: float = 0.5) -> int:
        """Poll one batch, apply it in one SQLite transaction, then commit its Kafka offsets."""
        consumer = self._events()
        batch = consumer.poll(timeout)
        with self.db:
            for rec in batch:
                self.apply(rec)
        consumer.commit()
        self.records_read = consumer.stats["read"]
        return len(batch)

    def catch_up(self, timeout: float = 60.0) -> None:
        """Apply everything on the topic up to its end as of this call."""
        consumer = self._events()
        ends = consumer.watermarks()
        deadline = time.monotonic() + timeout
        while not consumer.caught_up(ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"projection {self.group_id!r} did not catch up with {consumer.topic} "
                                   f"within {timeout:.0f}s (at {consumer.positions()}, end {ends})")
            self.step()

    def follow(self, report_every: float = 5.0) -> None:
        """Apply events as they come, printing the counts now and then (until Ctrl-C)."""
        last = 0.0
        while True:
            self.step()
            if time.monotonic() - last >= report_every:
                last = time.monotonic()
                print(self.counts(), flush=True)

    def rebuild(self, timeout: float = 60.0) -> None:
        """Throw the read model away and rebuild it from the first event on the topic."""
        self.close_consumer()
        with self.db:
            self.db.execute("DELETE FROM orders")
        EventConsumer.reset_offsets(self.group_id, settings=self.settings, to="beginning")
        self.catch_up(timeout)

    def close_consumer(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def close(self) -> None:
        self.close_consumer()
        self.db.close()

    def __enter__(self) -> "OrderStatusProjection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="orders.sqlite", help="SQLite file of the read model")
    parser.add_argument("--group", default="order-status-projection", help="consumer group id")
    parser.add_argument("--workflow-type", default="OrderSaga")
    parser.add_argument("--rebuild", action="store_true", help="rebuild from the start of the events topic first")
    args = parser.parse_args(argv)
    with OrderStatusProjection(args.db, group_id=args.group, workflow_type=args.workflow_type) as proj:
        if args.rebuild:
            proj.rebuild()
            print("rebuilt:", proj.counts(), flush=True)
        try:
            proj.follow()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
