"""The test environment's clock: wall time plus the time skipped so far.

Between skips the clock runs at wall-clock speed (an activity that really takes a second takes a
second, and a heartbeat timeout of a hung activity really passes). When every workflow is
waiting, the environment *skips*: it moves the clock straight to the next due timer, so a
one-year ``workflow.sleep`` takes milliseconds. The clock never goes backwards.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone


class SkippingClock:
    """Milliseconds since the epoch: ``start_ms`` + wall time lived + time skipped.

    The environment *pauses* the clock while it processes a burst of commands, so every event
    of a burst carries the same time and a skip lands exactly on the timer's due time: a
    timer's ``TimerFired`` is recorded at its ``fire_at_ms``, not a millisecond later.
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self._start_ms = int(time.time() * 1000) if start_ms is None else int(start_ms)
        self._mono0 = time.monotonic()
        self._skipped_ms = 0
        self._paused_s = 0.0
        self._paused_at: float | None = None

    def now_ms(self) -> int:
        mono = self._paused_at if self._paused_at is not None else time.monotonic()
        return self._start_ms + int((mono - self._mono0 - self._paused_s) * 1000) + self._skipped_ms

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ms() / 1000, tz=timezone.utc)

    @property
    def skipped_ms(self) -> int:
        """How much time was skipped in total (not lived through)."""
        return self._skipped_ms

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def pause(self) -> None:
        """Stop the clock (wall time passing meanwhile is not counted)."""
        if self._paused_at is None:
            self._paused_at = time.monotonic()

    def resume(self) -> None:
        """Let the clock run with wall time again, from where it stopped."""
        if self._paused_at is not None:
            self._paused_s += time.monotonic() - self._paused_at
            self._paused_at = None

    def skip_to(self, at_ms: int) -> int:
        """Jump forward to ``at_ms`` (no-op if that is not in the future); returns the skip in ms."""
        delta = at_ms - self.now_ms()
        if delta <= 0:
            return 0
        self._skipped_ms += delta
        return delta

    def wall_seconds_until(self, at_ms: int) -> float:
        """How long to wait in wall time for the running clock to reach ``at_ms``."""
        return max(0.0, (at_ms - self.now_ms()) / 1000.0)
