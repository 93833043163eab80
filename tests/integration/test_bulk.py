"""``streams.bulk.BulkProducer`` on the real broker: every record arrives, in order per partition, on the
partition Kafka's default partitioner gives its key, and ``send`` reports each partition's last offset
(what the worker records as the changelog's persisted offset, so it must be exact)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict

import pytest
from aiokafka import AIOKafkaProducer

from streams.bulk import BulkProducer
from streams.partitioning import partition_for
from tierstream.kafka_io import bootstrap, ensure_topics, read_records

pytestmark = pytest.mark.integration

PARTITIONS = 4


def _read_all(broker_url: str, topic: str, expected: int) -> dict[int, list[tuple[int, bytes, bytes]]]:
    """Per partition, (offset, key, value) of every record of ``topic``, in offset order."""
    got: dict[int, list[tuple[int, bytes, bytes]]] = defaultdict(list)
    for r in read_records(broker_url, topic, timeout=0.5, min_records=expected, max_seconds=30):
        got[r.partition].append((r.offset, r.key, r.value))
    return got


def test_bulk_records_arrive_in_order_with_exact_last_offsets(stack) -> None:
    topic = f"bulk-{uuid.uuid4().hex[:8]}"
    ensure_topics(stack.broker_url, [topic], PARTITIONS)
    servers = bootstrap(stack.broker_url)

    async def run() -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        producer = AIOKafkaProducer(bootstrap_servers=servers, max_batch_size=64 * 1024)
        await producer.start()
        try:
            bulk = BulkProducer(producer)
            assert await bulk.partitions(topic) == PARTITIONS
            # 3,000 records of 1 kB, ~750 kB per partition: each partition's records need two batches of
            # BATCH_BYTES (not the producer's 64 kB: ~12 per partition), so batches are split
            for i in range(3000):
                key = f"c{i % 500}".encode()
                bulk.add_keyed(topic, key, f"{i:06d}".encode() + b"x" * 994)
            submitted = await bulk.submit()
            assert len(bulk) == 0
            per_partition = Counter(p for _, p, _, _ in submitted.batches)
            assert per_partition == dict.fromkeys(range(PARTITIONS), 2), per_partition
            first = await submitted.wait()
            # a second round continues the partitions' offsets
            for i in range(3000, 3100):
                bulk.add(topic, 2, b"k", f"{i:06d}".encode())
            second = await bulk.send()
            return first, second
        finally:
            await producer.stop()

    first, second = asyncio.run(run())
    got = _read_all(stack.broker_url, topic, 3100)
    assert sum(len(v) for v in got.values()) == 3100
    for p, records in got.items():
        values = [int(v[:6]) for _, _, v in records]
        assert values == sorted(values), f"partition {p} out of order"
        for _, key, value in records:
            if int(value[:6]) < 3000:
                assert partition_for(key, PARTITIONS) == p
    for p in range(PARTITIONS):
        first_round = [o for o, _, v in got[p] if int(v[:6]) < 3000]
        assert first[(topic, p)] == max(first_round)
    assert second == {(topic, 2): max(o for o, _, _ in got[2])}
    assert not asyncio.run(_empty_send())


async def _empty_send() -> dict[tuple[str, int], int]:
    """Sending with nothing collected does nothing (no producer needed)."""
    return await BulkProducer(None).send()
