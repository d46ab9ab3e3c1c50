"""The engine worker's resident workflows: one LRU bound for the whole worker (AION_CACHE_SIZE),
whatever the number of partitions it owns."""

from __future__ import annotations

from aion.engine._resident import Resident


def test_the_bound_is_per_worker_not_per_partition() -> None:
    r: Resident[str] = Resident(4)
    for p in range(12):  # twelve partitions, one workflow each
        r.put(p, f"w{p}", f"ex{p}")
    assert r.count() == 4
    assert r.partitions() == {8, 9, 10, 11}  # the least recently used went first
    assert r.get(0, "w0") is None and r.get(11, "w11") == "ex11"


def test_a_hit_makes_a_workflow_the_most_recent() -> None:
    r: Resident[str] = Resident(3)
    r.put(0, "a", "A")
    r.put(1, "b", "B")
    r.put(0, "c", "C")
    assert r.get(0, "a") == "A"  # now b is the oldest
    r.put(2, "d", "D")
    assert r.get(1, "b") is None
    assert {r.get(0, "a"), r.get(0, "c"), r.get(2, "d")} == {"A", "C", "D"}
    assert (r.count(0), r.count(1), r.count(2)) == (2, 0, 1)


def test_partitions_and_workflows_leave_with_their_counts() -> None:
    r: Resident[str] = Resident(10)
    for p, w in [(0, "a"), (0, "b"), (1, "c"), (2, "d")]:
        r.put(p, w, w.upper())
    r.put(0, "a", "A2")  # a replacement is no second entry
    assert r.count() == 4 and r.count(0) == 2
    r.drop([0, 5])
    assert r.partitions() == {1, 2} and r.get(0, "a") is None
    r.discard(1, ["c", "nope"])
    assert r.partitions() == {2} and r.count() == 1
    r.clear()
    assert r.count() == 0 and r.partitions() == set()


def test_a_closed_workflow_goes_before_any_running_one_but_stays_while_there_is_room() -> None:
    r: Resident[str] = Resident(3)
    r.put(0, "sleeper", "S")  # the least recently used: the first to go under plain LRU
    r.put(0, "done", "D")
    r.put(1, "busy", "B")
    r.demote(0, ["done", "not-resident"])
    assert r.count() == 3  # nothing leaves while there is room
    r.put(2, "new", "N")
    assert (r.get(0, "done"), r.get(0, "sleeper"), r.get(1, "busy"), r.get(2, "new")) == (None, "S", "B", "N")
    assert (r.count(0), r.count(1), r.count(2)) == (1, 1, 1)
