"""The engine intake's offset guard: every command offset of a partition is admitted once, in
order; a hole (a record Faust's stream lost) makes it seek back instead of going on."""

from __future__ import annotations

from aion.engine._feed import ADMIT, SEEK, STALE, WAIT, OffsetGuard


def test_contiguous_offsets_are_admitted_from_the_baseline() -> None:
    g = OffsetGuard()
    g.set_baseline(3, 10)
    assert [g.admit(3, o, 0.0) for o in (10, 11, 12)] == [ADMIT, ADMIT, ADMIT]
    assert g.expected(3) == 13


def test_a_hole_seeks_back_to_the_missing_offset_and_drops_what_is_past_it() -> None:
    g = OffsetGuard(reseek_after_s=0.5)
    g.set_baseline(0, 0)
    assert [g.admit(0, o, 0.0) for o in (0, 1, 2, 3)] == [ADMIT] * 4
    # offset 4 was lost in Faust's buffer: 5 shows the hole
    assert g.admit(0, 5, 1.0) == SEEK
    assert g.expected(0) == 4
    # records already on their way before the seek took effect are dropped, not re-sought
    assert g.admit(0, 6, 1.1) == WAIT
    # the re-read starts at the missing record, and what was dropped comes again
    assert [g.admit(0, o, 1.2) for o in (4, 5, 6, 7)] == [ADMIT] * 4


def test_a_seek_back_that_brings_nothing_is_tried_again() -> None:
    g = OffsetGuard(reseek_after_s=0.5)
    g.set_baseline(0, 4)
    assert g.admit(0, 9, 0.0) == SEEK
    assert g.admit(0, 10, 0.4) == WAIT
    assert g.admit(0, 11, 0.6) == SEEK


def test_records_below_the_expected_offset_are_stale_and_do_not_move_it() -> None:
    g = OffsetGuard()
    g.set_baseline(1, 100)  # committed: everything before it was handled
    assert g.admit(1, 97, 0.0) == STALE
    assert g.admit(1, 100, 0.0) == ADMIT
    assert g.admit(1, 100, 0.0) == STALE  # a re-delivery
    assert g.expected(1) == 101


def test_partitions_are_independent_and_reset_forgets_them() -> None:
    g = OffsetGuard()
    g.set_baseline(0, 0)
    g.set_baseline(1, 50)
    assert g.admit(0, 0, 0.0) == ADMIT
    assert g.admit(1, 52, 0.0) == SEEK
    assert g.admit(0, 1, 0.0) == ADMIT
    g.reset()
    assert not g.has_baseline(0) and not g.has_baseline(1)
    # without a baseline nothing can be called a hole
    assert g.admit(1, 70, 0.0) == ADMIT


def test_a_lost_tail_is_found_from_the_high_watermark() -> None:
    g = OffsetGuard(reseek_after_s=0.5)
    g.set_baseline(0, 0)
    g.set_baseline(1, 0)
    g.set_baseline(2, 0)
    for o in range(5):
        g.admit(0, o, 0.0)
        g.admit(1, o, 0.0)
    # partition 0 caught up (high watermark 5), 1 lost its last record, 2's high is unknown
    assert g.behind({0: 5, 1: 6, 2: None}, 1.0) == [(1, 5)]
    assert g.behind({0: 5, 1: 6}, 1.2) == []  # sought 0.2 s ago: give it time
    assert g.behind({0: 5, 1: 6}, 1.6) == [(1, 5)]
    assert g.admit(1, 5, 1.7) == ADMIT
    assert g.behind({0: 5, 1: 6}, 3.0) == []
