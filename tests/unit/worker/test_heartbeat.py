"""Heartbeats are throttled per attempt and the latest details always get out."""

from aion.worker._heartbeat import HeartbeatThrottle, throttle_interval


def test_interval_is_80_percent_of_the_heartbeat_timeout_within_bounds() -> None:
    assert throttle_interval(10_000) == 8.0
    assert throttle_interval(100_000, max_interval=30.0) == 30.0
    assert throttle_interval(10, min_interval=0.05) == 0.05
    assert throttle_interval(None, default_interval=5.0) == 5.0


def test_first_heartbeat_goes_out_at_once_then_the_latest_is_flushed_later() -> None:
    h = HeartbeatThrottle(1.0)
    assert h.offer(0.0, "a") == (True, None)
    send, flush_at = h.offer(0.2, "b")
    assert (send, flush_at) == (False, 1.0)
    # more heartbeats in the same interval: no new flush is scheduled, the details are replaced
    assert h.offer(0.5, "c") == (False, None)
    assert h.flush(1.0) == (True, "c")
    assert h.flush(1.1) == (False, None)


def test_after_an_interval_without_heartbeats_the_next_one_goes_out_at_once() -> None:
    h = HeartbeatThrottle(1.0)
    h.offer(0.0, 1)
    assert h.offer(1.5, 2) == (True, None)


def test_discard_drops_pending_details() -> None:
    h = HeartbeatThrottle(1.0)
    h.offer(0.0, 1)
    h.offer(0.1, 2)
    h.discard()
    assert h.flush(1.0) == (False, None)
