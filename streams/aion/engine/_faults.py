"""Fault injection for tests: ``AION_FAULT`` (comma-separated points) makes an engine worker
misbehave at an exact point, so that a test can pin a narrow window instead of waiting for a
random kill to hit it.

Points:

- ``after_fire_emit`` (timer wheel, ``AION_TIMER_FIRE=topic``): a transaction with fires (and their rows' deletion)
  committed, the local bookkeeping not done — exit 137;
- ``after_fire_recorded`` (engine): a batch's transaction holding a ``TimerFired`` committed,
  its events not yet in the local tables — exit 137;
- ``mid_step_append`` (engine): a batch's records (two or more events) handed to Kafka inside
  its transaction, the commit not done — exit 137 (the next owner's fencing aborts it);
- ``inline_fire_append`` (engine, ``AION_TIMER_FIRE=inline``): a batch that took due timers
  (its events and the deletion of their rows) handed to Kafka inside its transaction, the
  commit not done — exit 137;
- ``refuse_inline_fire`` (engine, once): the first transaction holding inline timer fires gets
  a record larger than Kafka accepts: it aborts — the worker goes on, the partition's fires
  through the commands topic for a while;
- ``refuse_record`` (engine, once): record 1 of the first transaction with two or more
  records is made larger than Kafka accepts: the transaction aborts — the worker goes on;
- ``effects_error`` (engine, once): an exception while a batch's effects are prepared — the
  worker goes on.
"""

from __future__ import annotations

import os
import sys


def faults() -> frozenset[str]:
    """The fault points named in ``AION_FAULT``."""
    return frozenset(f.strip() for f in os.environ.get("AION_FAULT", "").split(",") if f.strip())


def crash(point: str) -> None:
    """Die like ``kill -9`` would (no cleanup, no flush of Python buffers)."""
    sys.stderr.write(f"aion: AION_FAULT={point}: exiting with 137\n")
    sys.stderr.flush()
    os._exit(137)
