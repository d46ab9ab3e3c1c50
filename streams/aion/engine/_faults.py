"""Fault injection for tests: ``AION_FAULT`` (comma-separated points) makes an engine worker
misbehave at an exact point, so that a test can pin a narrow window instead of waiting for a
random kill to hit it.

Points:

- ``after_fire_emit`` (timer wheel): fires acknowledged by Kafka, their rows not yet deleted — exit 137;
- ``after_fire_recorded`` (timer wheel): a batch holding a ``TimerFired`` is durable, its
  effects not performed — exit 137;
- ``mid_step_append`` (engine): only the first part of a step's events reached Kafka — exit 137;
- ``drop_command`` (engine): the command records at offsets 1 and 3 are thrown away the first
  time they reach the worker, before the engine sees them, as Faust's stream buffer can lose one around a rebalance (see
  ``_feed.CommandIntake``) — the worker goes on.
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
