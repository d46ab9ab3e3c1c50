"""partition_for matches Kafka's default partitioner (as implemented by aiokafka)."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from aion.codec import murmur2, partition_for


def test_murmur2_matches_aiokafka_on_random_bytes() -> None:
    rnd = random.Random(42)
    for _ in range(5000):
        data = rnd.randbytes(rnd.randrange(0, 70))
        assert murmur2(data) == aiokafka_murmur2(data), data


@pytest.mark.parametrize("n", [1, 2, 3, 7, 12, 64, 1000])
def test_partition_for_matches_aiokafka_default_partitioner(n: int) -> None:
    partitioner = DefaultPartitioner()
    partitions = list(range(n))
    rnd = random.Random(n)
    keys = [f"order-{i}" for i in range(2000)] + ["", "ü", "工作流-7", "a" * 300]
    keys += ["".join(rnd.choice("abcxyz-_0123456789éλ") for _ in range(rnd.randrange(1, 40))) for _ in range(500)]
    for key in keys:
        assert partition_for(key, n) == partitioner(key.encode(), partitions, partitions), key


def test_known_java_values() -> None:
    # Values of org.apache.kafka.common.utils.Utils.murmur2 (as signed Java ints) for short keys.
    def java_int(v: int) -> int:
        return v - (1 << 32) if v >= 1 << 31 else v

    assert java_int(murmur2(b"21")) == -973932308
    assert java_int(murmur2(b"foobar")) == -790332482
    assert java_int(murmur2(b"a-little-bit-long-string")) == -985981536


def test_partition_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="num_partitions"):
        partition_for("x", 0)
