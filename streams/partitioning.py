"""Kafka's default partitioner (murmur2 of the key bytes), as the Java client and aiokafka use it.

The worker checks every input record against it: a record whose partition is not
``partition_for(customer_id)`` was produced by a different partitioner (or unkeyed) and is
re-keyed through the repartition topic, so that table writes (changelog partition chosen by this same
partitioner) always land on the partition whose owner processes that customer's events.
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    """Partition of ``key`` among ``partitions`` (identical to Kafka's DefaultPartitioner for keyed records)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
