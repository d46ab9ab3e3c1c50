"""Offsets are committed only past records whose outcome is durable."""

from aion.worker._offsets import OffsetTracker

T = "aion.activity-tasks.default"


def test_nothing_to_commit_until_records_are_done() -> None:
    t = OffsetTracker()
    for o in (10, 11, 12):
        t.received(T, 0, o)
    assert t.to_commit() == {(T, 0): 10}
    t.committed({(T, 0): 10})
    assert t.to_commit() == {}


def test_out_of_order_completion_commits_only_the_contiguous_prefix() -> None:
    t = OffsetTracker()
    for o in (10, 11, 12):
        t.received(T, 0, o)
    t.done(T, 0, 12)
    t.done(T, 0, 11)
    assert t.to_commit() == {(T, 0): 10}  # 10 still runs: a crash must re-deliver it
    t.done(T, 0, 10)
    assert t.to_commit() == {(T, 0): 13}
    assert t.outstanding() == 0


def test_partitions_are_independent_and_forget_drops_revoked_ones() -> None:
    t = OffsetTracker()
    t.received(T, 0, 5)
    t.received(T, 1, 7)
    t.done(T, 1, 7)
    assert t.to_commit() == {(T, 0): 5, (T, 1): 8}
    t.forget([(T, 1)])
    t.done(T, 1, 7)  # a late completion of a revoked partition is ignored
    assert t.to_commit() == {(T, 0): 5}
    assert t.to_commit([(T, 1)]) == {}


def test_committed_positions_are_not_repeated() -> None:
    t = OffsetTracker()
    t.received(T, 0, 0)
    t.done(T, 0, 0)
    pos = t.to_commit()
    t.committed(pos)
    assert t.to_commit() == {}
    t.received(T, 0, 1)
    t.done(T, 0, 1)
    assert t.to_commit() == {(T, 0): 2}
