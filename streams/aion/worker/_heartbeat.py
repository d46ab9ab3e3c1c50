"""Heartbeat throttling: an activity may call ``heartbeat()`` in a tight loop; the worker sends
at most one ActivityHeartbeat per interval per attempt, and always the latest details.

The interval is 80% of the attempt's heartbeat timeout (so a heartbeat sent at the end of an
interval still beats the timeout), capped by ``max_interval`` and floored by ``min_interval``.
Without a heartbeat timeout the engine only uses heartbeats to keep details for the next attempt,
so ``default_interval`` applies.
"""

from __future__ import annotations

from typing import Any


def throttle_interval(
    heartbeat_timeout_ms: int | None,
    *,
    default_interval: float = 5.0,
    max_interval: float = 30.0,
    min_interval: float = 0.05,
) -> float:
    if not heartbeat_timeout_ms:
        return min(default_interval, max_interval)
    return max(min_interval, min(max_interval, 0.8 * heartbeat_timeout_ms / 1000.0))


class HeartbeatThrottle:
    """Pure state machine, driven with explicit times (seconds, any monotonic clock)."""

    __slots__ = ("interval", "_last_sent", "_pending", "_has_pending")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last_sent: float | None = None
        self._pending: Any = None
        self._has_pending = False

    def offer(self, now: float, details: Any) -> tuple[bool, float | None]:
        """Record a heartbeat. Returns ``(send_now, flush_at)``: send these details now, or
        keep them and flush at ``flush_at`` (None when a flush is already due to be scheduled)."""
        if self._last_sent is None or now - self._last_sent >= self.interval:
            self._last_sent = now
            self._pending, self._has_pending = None, False
            return True, None
        first_pending = not self._has_pending
        self._pending, self._has_pending = details, True
        return False, (self._last_sent + self.interval) if first_pending else None

    def flush(self, now: float) -> tuple[bool, Any]:
        """At a scheduled flush: ``(True, details)`` when pending details are to be sent now."""
        if not self._has_pending:
            return False, None
        details = self._pending
        self._pending, self._has_pending = None, False
        self._last_sent = now
        return True, details

    def discard(self) -> None:
        """The attempt finished: its result supersedes any pending heartbeat."""
        self._pending, self._has_pending = None, False
