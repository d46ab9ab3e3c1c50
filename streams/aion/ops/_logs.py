"""What a worker's log says: its own lines, not its libraries' chatter, and a failure that repeats
said a few times, not thousands.

* :func:`quiet_libraries` keeps the internals of Faust, mode and aiokafka (service start-up,
  subscriptions, rebalances, timer drift) at DEBUG: below ``--loglevel debug`` only their
  warnings and errors show. Aion's own lines keep the chosen level.
* :class:`RepeatFilter` (on the root logger's handlers, :func:`limit_repeats`) passes the first
  ``burst`` records of a kind (logger, level, message template with its numbers blanked) per
  ``window`` seconds at WARNING and above and counts the rest; the next record of that kind to
  pass says how many were not shown. A broker outage made an engine worker log 5,533 ERROR lines
  in 40 s; with the filter it logs a few per kind and minute.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Callable

#: The logger of librdkafka's lines (the ``logger`` of Aion's confluent-kafka clients).
KAFKA_LOGGER = "aion.kafka"

#: Loggers whose INFO lines are a library's internals (kept at DEBUG unless --loglevel debug).
LIBRARY_LOGGERS = ("faust", "mode", "aiokafka", "kafka", "rocksdict", "venusian")

_NUMBERS = re.compile(r"\d+")


def quiet_libraries(level: int, logger: logging.Logger | None = None) -> None:
    """Show the libraries' own lines only from WARNING, unless ``level`` is DEBUG: their loggers'
    levels, and on the handlers of ``logger`` (the root logger by default) a
    :class:`LibraryInternals` filter for the lines mode logs on Aion's loggers (an Aion service's
    ``[^---CaughtUpTable: history]: Starting...``)."""
    quiet = level > logging.DEBUG
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.DEBUG)
    # librdkafka's own lines (the workers' confluent-kafka clients log to aion.kafka, which a
    # CLI command keeps silent unless -v): a worker shows their warnings and errors.
    kafka = logging.getLogger(KAFKA_LOGGER)
    kafka.propagate = True
    kafka.setLevel(logging.WARNING if quiet else logging.DEBUG)
    if quiet:
        for handler in (logger or logging.getLogger()).handlers:
            if not any(isinstance(f, LibraryInternals) for f in handler.filters):
                handler.addFilter(LibraryInternals())


class LibraryInternals(logging.Filter):
    """Drops the INFO (and lower) records logged from a library's own source files, whatever
    logger they use (mode's services log on the logger of the module that defines them)."""

    def __init__(self) -> None:
        super().__init__()
        import os

        dirs: list[str] = []
        for name in ("mode", "faust", "aiokafka"):
            try:
                file = getattr(__import__(name), "__file__", None)
            except ImportError:
                continue
            if file:
                dirs.append(os.path.dirname(file) + os.sep)
        self._dirs = tuple(dirs)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.pathname.startswith(self._dirs):
            return True
        if record.levelno >= logging.ERROR and "not found in cluster metadata" in record.getMessage():
            # aiokafka on a first start, before Faust has created its changelog topics: expected,
            # and Faust goes on ("Ignoring missing topic"); a warning, not an error.
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return record.levelno >= logging.WARNING


class RepeatFilter(logging.Filter):
    """Rate-limits repeated WARNING/ERROR/CRITICAL records of one kind (see the module)."""

    MAX_KINDS = 2048

    def __init__(self, window: float = 60.0, burst: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window, self.burst, self.clock = window, burst, clock
        # kind -> [window start, passed in this window, held back in this window]
        self._seen: dict[tuple[str, int, str], list[float]] = {}

    @staticmethod
    def kind(record: logging.LogRecord) -> tuple[str, int, str]:
        # The formatted message, numbers blanked: librdkafka's lines all share one template
        # ("%s [%s] %s"); a retry count or an offset does not make a new kind.
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        return record.name, record.levelno, _NUMBERS.sub("#", text)[:300]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key, now = self.kind(record), self.clock()
        seen = self._seen.get(key)
        if seen is None or now - seen[0] >= self.window:
            held = int(seen[2]) if seen else 0
            if seen is None and len(self._seen) >= self.MAX_KINDS:
                self._seen.clear()
            self._seen[key] = [now, 1, 0]
            if held:
                self._say_held(record, held)
            return True
        if seen[1] < self.burst:
            seen[1] += 1
            return True
        seen[2] += 1
        return False

    def _say_held(self, record: logging.LogRecord, held: int) -> None:
        record.msg = (f"{record.getMessage()} [and {held} more like this in the previous {self.window:g} s, "
                      "not shown]")
        # No arguments left: an empty tuple, not None — Faust's formatter (mode's
        # ExtensionFormatter) wraps a non-tuple as (None,) and formatting then failed with
        # "--- Logging error --- not all arguments converted" instead of printing the line.
        record.args = ()


def limit_repeats(logger: logging.Logger | None = None, window: float = 60.0, burst: int = 3) -> None:
    """Put a :class:`RepeatFilter` on each handler of ``logger`` (the root logger by default)."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter(window=window, burst=burst))
