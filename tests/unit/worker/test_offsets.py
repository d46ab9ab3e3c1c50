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


# ---------------------------------------------------------------- copies of one attempt

K = ("wf-1", "run-1", "1", 1)  # an attempt key


def test_a_copy_of_an_attempt_is_not_run_and_not_committed_before_the_original_is_done() -> None:
    """The same attempt delivered again (the engine wrote it twice, or the partition's
    position went back) while the first delivery still runs: the copy must not make the
    position pass the first one, and stays outstanding until the first one's report is acked."""
    t = OffsetTracker()
    assert t.received(T, 0, 10, K) is True  # the original: run it
    t.received(T, 0, 11)
    t.done(T, 0, 11)
    assert t.received(T, 0, 12, K) is False  # a copy: do not run it
    assert t.to_commit() == {(T, 0): 10}
    t.done(T, 0, 10)  # the original's report is acknowledged
    assert t.to_commit() == {(T, 0): 13}
    assert t.outstanding() == 0


def test_the_same_record_delivered_again_while_its_attempt_runs_is_a_copy() -> None:
    t = OffsetTracker()
    assert t.received(T, 0, 10, K) is True
    assert t.received(T, 0, 10, K) is False  # same record again (a rebalance gave it back)
    assert t.to_commit() == {(T, 0): 10}
    t.done(T, 0, 10)
    assert t.to_commit() == {(T, 0): 11}
    # once reported, a new delivery of the attempt is an original again (the engine drops it)
    assert t.received(T, 0, 11, K) is True


def test_a_copy_waits_for_the_original_even_after_it_is_committed_up_to() -> None:
    """A copy behind other records: committing the records before it does not commit it."""
    t = OffsetTracker()
    t.received(T, 0, 1, K)
    t.received(T, 0, 2)
    t.received(T, 0, 3, K)
    t.done(T, 0, 2)
    assert t.to_commit() == {(T, 0): 1}
    t.done(T, 0, 1)
    assert t.to_commit() == {(T, 0): 4}


def test_a_forgotten_original_leaves_its_key_free() -> None:
    t = OffsetTracker()
    t.received(T, 0, 10, K)
    t.forget([(T, 0)])  # revoked: the running original is abandoned
    assert t.received(T, 0, 10, K) is True  # the partition came back: run it afresh
    t.done(T, 0, 10)
    assert t.to_commit() == {(T, 0): 11}


def test_copies_in_another_partition_stall_rather_than_commit_when_the_original_is_forgotten() -> None:
    t = OffsetTracker()
    t.received(T, 0, 10, K)
    assert t.received(T, 1, 4, K) is False
    t.forget([(T, 0)])
    assert t.to_commit() == {(T, 1): 4}  # never past the copy: nobody reported the attempt
