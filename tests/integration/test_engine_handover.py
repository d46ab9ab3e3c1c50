"""What a partition's next owner gets besides the history: the ``progress`` table
(``aion/engine/_progress.py``) — activity heartbeat details and the intake position."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aion.engine._changelog import scan_events


def _progress_rows(settings, workflow_id: str) -> dict[bytes, bytes | None]:  # type: ignore[no-untyped-def]
    """The committed rows of the engine's ``progress`` changelog that name ``workflow_id``
    (read with the engine's own committed-records reader)."""
    topic = f"{settings.topic_prefix}-engine-progress-changelog"  # Faust's name for the table's changelog
    return {key: value for _p, _o, key, value in scan_events(settings, topic=topic, timeout_s=30)
            if workflow_id.encode() in (key or b"")}


async def _until(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_heartbeat_details_survive_an_engine_kill(cluster, client, settings, tmp_path):  # type: ignore[no-untyped-def]
    """Attempt 1 heartbeats ``{"page": 3}``; the engine that received it is killed (kill -9)
    and a new one with an empty data folder takes over; then attempt 1 fails. Attempt 2 must
    start from the details: the new engine found them in the progress table, not in memory."""
    state = Path(cluster.env["AION_TEST_STATE"])
    first = cluster.engine()
    cluster.activities()
    h = await client.start_workflow("ResumeFromHeartbeat", "k1", id="resume-hb-1")
    await _until(lambda: (state / "beat-k1").exists(), 60, "attempt 1's heartbeat")
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 30
    while True:  # the heartbeat's row is committed on the progress changelog
        rows = await loop.run_in_executor(None, _progress_rows, settings, "resume-hb-1")
        if any(v is not None for v in rows.values()):
            break
        assert time.monotonic() < deadline, "no progress row for the heartbeat"
        await asyncio.sleep(0.3)
    first.kill9()
    second = cluster.engine()  # a fresh data folder: everything comes from Kafka
    (state / "fail-k1").write_text("now")
    result = await h.result(timeout=120)
    assert result == {"attempt": 2, "resumed_from": [{"page": 3}]}
    assert second.alive()
    # The activity closed: its row was deleted (a tombstone is the last word on its key).
    rows = await loop.run_in_executor(None, _progress_rows, settings, "resume-hb-1")
    assert rows and all(v is None for v in rows.values())
