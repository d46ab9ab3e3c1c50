"""Kafka's default key partitioner: murmur2 as in the Java client (and aiokafka, and librdkafka's
``murmur2_random``), so every producer puts a workflow id on the same partition."""

from __future__ import annotations

import struct

_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF
_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """32-bit MurmurHash2 with Kafka's seed, as an unsigned int (the Java int's bit pattern)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    n4 = length >> 2
    if n4:
        for k in struct.unpack_from(f"<{n4}I", data):
            k = (k * _M) & _MASK32
            k ^= k >> 24
            k = (k * _M) & _MASK32
            h = ((h * _M) & _MASK32) ^ k
    tail = length & 3
    if tail:
        base = n4 << 2
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h


def partition_for(workflow_id: str, num_partitions: int) -> int:
    """The partition Kafka's default partitioner picks for the key ``workflow_id`` (UTF-8).

    ``(murmur2(key) & 0x7fffffff) % num_partitions`` — the same number on the commands and the
    co-partitioned events topic.
    """
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, got {num_partitions}")
    return (murmur2(workflow_id.encode("utf-8")) & 0x7FFFFFFF) % num_partitions
