"""The ``progress`` table: what a partition's next owner needs that its events do not say.

Two kinds of rows, each written in the partition's transaction (``_txn.py``) with the batch
that changed it, so the table never disagrees with the events topic:

- **the intake position** ``\\x00position`` -> the next commands offset to read (ASCII
  digits). Every batch's transaction carries it. A worker taking the partition over restores
  the table (``_store.CaughtUpTable``: committed records up to the last stable offset) and
  reads commands from there.

  Why not the consumer group's committed offsets (``send_offsets_to_transaction``, as Kafka
  Streams does)? They tie every commit to the group coordinator: two more round trips per
  transaction, and librdkafka's ``send_offsets_to_transaction`` can block past its timeout,
  forever, when the coordinator goes away mid-transaction (librdkafka issue 5456, open in
  2.16; seen here on every broker restart under load: the partitions' pipelines never came
  back). A row in the partition's own transaction needs no coordinator, costs one small
  record, and is exact (no re-read after a crash). The group's offsets on the commands topic
  are read once, as a fallback, for a partition that has no row yet (written by an older
  engine version).

- **activity progress** ``h\\x00<workflow_id>\\x00<activity_id>`` -> the activity's last
  heartbeat, encoded as the ``ActivityHeartbeat`` command that carried it (run, attempt,
  details, and its time in ``sent_at_ms``). Written when a heartbeat with details arrives,
  deleted when the activity closes. A worker that loads the workflow (after a takeover, or
  an eviction from the cache) gives these details to the next attempt, as Temporal keeps
  heartbeat details in its mutable state rather than in the history.
"""

from __future__ import annotations

from typing import Any

from ..codec import Codec
from ..model import ActivityHeartbeat, Command

POSITION_KEY = b"\x00position"
_HB = b"h\x00"


def position_value(next_offset: int) -> bytes:
    return str(next_offset).encode()


def read_position(db: Any) -> int | None:
    """The partition's stored intake position, or ``None`` when no row was written yet."""
    raw = db.get(POSITION_KEY)
    return None if raw is None else int(raw)


def heartbeat_key(workflow_id: str, activity_id: str) -> bytes:
    return _HB + workflow_id.encode() + b"\x00" + activity_id.encode()


def heartbeat_value(codec: Codec, workflow_id: str, at_ms: int, body: ActivityHeartbeat) -> bytes:
    return codec.encode_command(Command(
        command_id=f"heartbeat:{body.run_id}:{body.activity_id}:{body.attempt}",
        workflow_id=workflow_id, sent_at_ms=at_ms, body=body))


def read_heartbeat(codec: Codec, db: Any, workflow_id: str, activity_id: str) -> tuple[int, ActivityHeartbeat] | None:
    """``(recorded at, heartbeat)`` of the activity's stored progress, if any."""
    raw = db.get(heartbeat_key(workflow_id, activity_id))
    if raw is None:
        return None
    cmd = codec.decode_command(raw)
    return cmd.sent_at_ms, cmd.body  # type: ignore[return-value]
