"""The workers' log filters (aion/ops/_logs.py): repeated errors rate-limited, libraries' INFO hidden."""

from __future__ import annotations

import logging

from aion.ops._logs import LibraryInternals, RepeatFilter


def _record(msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka",
            pathname: str = "/x.py") -> logging.LogRecord:
    return logging.LogRecord(name, level, pathname, 1, msg, args or None, None)


def test_a_repeated_error_passes_burst_times_per_window_then_says_how_many_were_held() -> None:
    now = [0.0]
    f = RepeatFilter(window=60, burst=3, clock=lambda: now[0])
    passed = []
    for i in range(1000):  # one kind: only the port's number differs (blanked)
        now[0] = i * 0.04  # 40 s of a broker outage
        rec = _record("Unable connect to node with id 1: Connect call failed ('127.0.0.1', %d)", 9000 + i)
        if f.filter(rec):
            passed.append(rec.getMessage())
    assert len(passed) == 3
    now[0] = 61.0
    rec = _record("Unable connect to node with id 1: Connect call failed ('127.0.0.1', %d)", 9092)
    assert f.filter(rec)
    assert rec.getMessage().endswith("[and 997 more like this in the previous 60 s, not shown]")


def test_kinds_are_counted_apart_and_info_is_never_held() -> None:
    f = RepeatFilter(window=60, burst=1, clock=lambda: 0.0)
    assert f.filter(_record("a failed"))
    assert not f.filter(_record("a failed"))
    assert f.filter(_record("b failed"))
    assert f.filter(_record("a failed", level=logging.WARNING))
    # librdkafka's lines share one template: the formatted text makes the kind
    assert f.filter(_record("%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connect to 127.0.0.1:1 failed"))
    assert f.filter(_record("%s [%s] %s", "FAIL", "rdkafka#producer-2", "Disconnected (after 9ms in state UP)"))
    assert all(f.filter(_record("step done", level=logging.INFO)) for _ in range(10))


def test_library_internals_drop_info_from_library_files_only() -> None:
    import mode

    f = LibraryInternals()
    lib = mode.__file__
    assert not f.filter(_record("[^---CaughtUpTable: history]: Starting...", level=logging.INFO, name="aion.x",
                                pathname=lib))
    assert f.filter(_record("Heartbeat failed", level=logging.WARNING, name="aion.x", pathname=lib))
    assert f.filter(_record("engine worker ready", level=logging.INFO, name="aion.x", pathname="/aion/_engine.py"))


def test_the_held_summary_line_formats_through_fausts_formatter() -> None:
    """The summary line passes through mode's ExtensionFormatter (what an engine worker logs
    with): it printed '--- Logging error ---' when the filter left ``args`` as None."""
    import io

    from mode.utils.logging import ExtensionFormatter

    now = [0.0]
    f = RepeatFilter(window=60, burst=1, clock=lambda: now[0])
    for _ in range(5):
        f.filter(_record("Timer livelock is overlapping (interval=%r runtime=%r)", 1.25, 74.3, name="mode.timers"))
    now[0] = 61.0
    rec = _record("Timer livelock is overlapping (interval=%r runtime=%r)", 1.25, 9.1, name="mode.timers")
    assert f.filter(rec)
    text = ExtensionFormatter(stream=io.StringIO(), fmt="%(message)s").format(rec)
    assert text == "Timer livelock is overlapping (interval=1.25 runtime=9.1) [and 4 more like this in the previous 60 s, not shown]"
