"""The wait of a start in a hand-over of ``aion bench rolling``: from its send until the engine
stepped it (its ``WorkflowStarted``'s ``recorded_at_ms``), apart for moved and stayed partitions."""

from __future__ import annotations

from aion.bench._load import LoadResult
from aion.bench._rolling import _start_waits
from aion.codec import partition_for


def test_the_longest_wait_of_the_starts_sent_in_the_window() -> None:
    parts = 4
    ids = list(range(40))
    moved = {partition_for("roll-0", parts)}
    live = LoadResult(done=[(10.0 + i * 0.1, 20.0 + i * 0.1, i) for i in ids])  # sent at 10.0, 10.1, ...
    wall_ms = 1_000_000.0  # monotonic 10.0 is epoch ms 1,010,000
    # Every start was stepped 50 ms after its send, but those on the moved partition sent from
    # 11.0 on waited 1.5 s; one start is missing from the log (left out).
    started = {f"roll-{i}": int(wall_ms + 1000 * (10.0 + i * 0.1)) + 50 for i in ids}
    for i in ids:
        if i >= 10 and partition_for(f"roll-{i}", parts) in moved:
            started[f"roll-{i}"] += 1_450
    del started["roll-39"]
    got = _start_waits(live, started, wall_ms, 11.0, 13.0, moved, parts)
    assert got == {"moved_start_wait_s": 1.5, "stayed_start_wait_s": 0.05}
    # Before the window only the ordinary wait.
    assert _start_waits(live, started, wall_ms, 10.0, 10.95, moved, parts) == {
        "moved_start_wait_s": 0.05, "stayed_start_wait_s": 0.05}
    # A start sent before the window and still waiting in it counts (sent at 11.0, stepped at 12.5).
    assert _start_waits(live, started, wall_ms, 12.45, 13.0, moved, parts)["moved_start_wait_s"] == 1.5
    assert _start_waits(live, started, wall_ms, 50.0, 60.0, moved, parts) == {
        "moved_start_wait_s": None, "stayed_start_wait_s": None}
