"""streams.partitioning: its murmur2 is kafka-python's, byte for byte, and so is the partition it gives."""

from __future__ import annotations

import random

from kafka.partitioner.default import murmur2 as kafka_murmur2

from streams.partitioning import murmur2, partition_for


def _keys() -> list[bytes]:
    rng = random.Random(18)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(0, 40) for _ in range(50)]  # every tail
    keys += [b"\xff" * n for n in range(0, 12)] + [b"\x80\x00\x00\x80" * 3]  # high bits in every byte position
    keys += [f"cust-{i:06d}".encode() for i in range(2000)] + [b'["cust-1","five_tier"]', "clié".encode()]
    return keys


def test_murmur2_is_kafka_pythons_for_every_length_and_byte() -> None:
    keys = _keys()
    assert [murmur2(k) for k in keys] == [kafka_murmur2(k) for k in keys]


def test_partition_is_kafkas_default_partitioner() -> None:
    keys = _keys()
    for partitions in (1, 3, 4, 12, 64):
        assert [partition_for(k, partitions) for k in keys] == [
            (kafka_murmur2(k) & 0x7FFFFFFF) % partitions for k in keys]


def test_a_known_value() -> None:
    # Kafka's own test vector (clients/src/test/.../UtilsTest.java: murmur2 of "21" is -973932308 as a signed int)
    assert murmur2(b"21") - (1 << 32) == -973932308


def test_any_bytes_like_key_is_partitioned_like_its_bytes() -> None:
    for key in (bytearray(b"cust-9"), memoryview(b"cust-9")):
        assert partition_for(key, 12) == (kafka_murmur2(b"cust-9") & 0x7FFFFFFF) % 12
