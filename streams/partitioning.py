"""Kafka's default partitioner (murmur2 of the key bytes), as the Java client and aiokafka use it.

The worker checks every input record against it: a record whose partition is not
``partition_for(customer_id)`` was produced by a different partitioner (or unkeyed) and is
re-keyed through the repartition topic, so that table writes (changelog partition chosen by this same
partitioner) always land on the partition whose owner processes that customer's events. Its outputs
(tier changes, snapshot records) are partitioned by it too, one call per record.

Why our own murmur2 rather than kafka-python's: this module is compiled (scoring.accel.COMPILED), and
kafka-python's runs interpreted at ~1.9 µs a key, ~5 % of the worker's own process with eleven presets
(py-spy, session 18). Its arithmetic is on 64-bit machine integers (``i64``), every value below 2^48.
Identical to kafka-python's ``murmur2`` for every input (tests/unit/streams/test_partitioning.py).
"""

from __future__ import annotations

from typing import Final

from mypy_extensions import i64

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995  # mixing constant
_MASK: Final = 0xFFFFFFFF


def partition_for(key: bytes | bytearray | memoryview, partitions: int) -> int:
    """Partition of ``key`` among ``partitions`` (identical to Kafka's DefaultPartitioner for keyed records).

    Any bytes-like key, as kafka-python's partitioner took (compiled code checks argument types: a
    ``bytearray`` passed where ``bytes`` is declared would raise)."""
    return (murmur2(key if isinstance(key, bytes) else bytes(key)) & 0x7FFFFFFF) % partitions


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as Kafka computes it (seed 0x9747b28c), as an unsigned 32-bit int."""
    length: i64 = len(data)
    h: i64 = (_SEED ^ length) & _MASK
    whole: i64 = length - length % 4
    i: i64 = 0
    while i < whole:
        k: i64 = i64(data[i]) | (i64(data[i + 1]) << 8) | (i64(data[i + 2]) << 16) | (i64(data[i + 3]) << 24)
        k = _times_m(k)
        k ^= k >> 24
        k = _times_m(k)
        h = _times_m(h) ^ k
        i += 4
    extra: i64 = length - whole
    if extra >= 3:
        h ^= i64(data[whole + 2]) << 16
    if extra >= 2:
        h ^= i64(data[whole + 1]) << 8
    if extra >= 1:
        h ^= i64(data[whole])
        h = _times_m(h)
    h ^= h >> 13
    h = _times_m(h)
    h ^= h >> 15
    return int(h)


def _times_m(x: i64) -> i64:
    """``x * _M mod 2^32`` for ``0 <= x < 2^32``, by 16-bit halves: every product stays below 2^48, so a
    64-bit machine integer (``i64``, native under mypyc) never overflows."""
    return ((x & 0xFFFF) * _M + ((((x >> 16) * _M) & 0xFFFF) << 16)) & _MASK
