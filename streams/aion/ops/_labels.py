"""Bounded label values: a metric label never takes more than ``limit`` distinct values.

The labels (``workflow_type``, ``activity_type``, ``task_queue``, ...) come from code and
configuration, so they are few; but a command record is untrusted input, and a producer that
invents a new workflow type or task queue per record must not grow the scrape without bound.
Past ``limit`` values of one label, new ones are reported as :data:`OTHER` (logged once).
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("aion.ops")

#: The label value that stands for every value past a label's limit.
OTHER = "_other"


class LabelGuard:
    """Maps label values to themselves until ``limit`` distinct ones were seen, then to OTHER."""

    def __init__(self, name: str, limit: int = 200) -> None:
        self.name = name
        self.limit = limit
        self._seen: set[str] = set()
        self._warned = False
        self._lock = threading.Lock()

    def __call__(self, value: object) -> str:
        v = value if isinstance(value, str) else ("" if value is None else str(value))
        if v in self._seen:
            return v
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(v)
                return v
            if not self._warned:
                self._warned = True
                log.warning("metrics: label %s has %d values already; further ones are counted as %r",
                            self.name, self.limit, OTHER)
        return OTHER


def never_raises(fn):  # type: ignore[no-untyped-def]
    """A metrics or tracing hook must never fail the work it observes (a step, a transaction, an
    activity attempt): an exception is logged (the first few times) and the hook returns None."""
    import functools

    failures = [0]

    @functools.wraps(fn)
    def hook(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except Exception:
            failures[0] += 1
            if failures[0] <= 5:
                log.exception("%s failed (observability only: the work goes on)", fn.__qualname__)
            return None

    return hook
