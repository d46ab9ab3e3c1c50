"""``aion status`` prints partition lists as ranges."""

from aion.cli._status import _ranges


def test_partition_lists_print_as_ranges() -> None:
    assert _ranges([]) == "-"
    assert _ranges([3]) == "3"
    assert _ranges([0, 1, 2, 5]) == "0-2,5"
    assert _ranges([0, 2, 3, 4, 7, 8, 11]) == "0,2-4,7-8,11"
