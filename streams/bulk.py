"""Bulk production beneath Faust's per-record producer buffer: one record batch per topic partition.

Faust's ``send_soon`` (and a table's ``__setitem__``, which sends its changelog record that way) puts each
record in a buffer that a background task drains one ``await producer.send()`` at a time, and
``producer.flush()`` wakes the event loop once per record. Measured with bench/bench_throughput.py (one
policy, embedded broker with producer batching): the worker spent ~180 µs per changelog record flushing,
more than on scoring it. :class:`BulkProducer` appends records to aiokafka ``BatchBuilder``\\s (a few µs per
record) and submits them, in batches of up to :data:`BATCH_BYTES` per partition, with ``send_batch``;
:meth:`BulkProducer.send` returns when the broker has acknowledged all of them.

Only valid where producers may batch: on Kafka, and on the embedded broker with its end-offset correction
(:mod:`streams.tansu`). With the broker notes' work-around (one record per producer batch) the worker keeps
Faust's per-record path (:class:`streams.worker.Worker` decides).

Invariants: records of one topic partition are sent in the order they were added (one builder at a time
per partition, submitted in order, and aiokafka keeps one in-flight batch per partition); ``send`` raises
if any batch failed, so a caller that awaits it before acknowledging its input loses nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder

from streams.partitioning import partition_for

#: Bytes per record batch this producer builds. Why not the producer's own ``max_batch_size`` (Faust's
#: ``producer_max_batch_size``, 16 KiB): aiokafka sends one batch per partition per request and one
#: request at a time per broker, so a backlog batch's ~9 MB of changelog records in 16 KiB batches took
#: ~150 round trips before its tier changes could follow, and under load each round trip is milliseconds
#: (session 14: ``submit`` alone grew from 0.02 to 0.39 s a batch as a latency run fell behind). 512 KiB
#: stays under Kafka's default per-batch limit (``message.max.bytes``, 1 MiB) with room for overhead.
BATCH_BYTES = 512 * 1024


class BulkProducer:
    """Collects records per (topic, partition) and sends them as few record batches as fit."""

    def __init__(self, producer: Any) -> None:
        """``producer``: a started ``aiokafka.AIOKafkaProducer`` whose serializers pass bytes through (Faust's)."""
        self._producer = producer
        self._open: dict[tuple[str, int], Any] = {}  # (topic, partition) -> BatchBuilder being filled
        self._full: list[tuple[str, int, Any]] = []  # filled builders, in the order they filled
        self._partitions: dict[str, int] = {}  # topic -> partition count (metadata, cached)

    def fork(self) -> BulkProducer:
        """A collector of its own on the same producer, sharing the partition counts: a batch whose outputs
        are in flight keeps its records apart from the next batch's (streams.worker pipelines the two)."""
        other = BulkProducer(self._producer)
        other._partitions = self._partitions
        return other

    def __len__(self) -> int:
        """Builders collected and not yet submitted."""
        return len(self._open) + len(self._full)

    async def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has (from the producer's metadata, fetched once)."""
        n = self._partitions.get(topic)
        if n is None:
            parts = await self._producer.client._wait_on_metadata(topic)
            n = self._partitions[topic] = len(parts)
        return n

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        """Append one record for ``topic``/``partition`` (not sent before :meth:`send`)."""
        tp = (topic, partition)
        builder = self._open.get(tp)
        if builder is None:
            builder = self._open[tp] = self._builder()
        if builder.append(timestamp=None, key=key, value=value) is None:
            # full: close it (sent before any later one of this partition) and start the next
            self._full.append((topic, partition, builder))
            builder = self._open[tp] = self._builder()
            if builder.append(timestamp=None, key=key, value=value) is None:
                raise ValueError(f"a record of {len(value or b'')} bytes does not fit a producer batch of {topic}")

    def _builder(self) -> BatchBuilder:
        """An empty record batch of :data:`BATCH_BYTES`, as the producer's ``create_batch`` makes one
        (its compression and serializers; never transactional: the worker runs at-least-once)."""
        producer = self._producer
        return BatchBuilder(BATCH_BYTES, producer._message_accumulator._compression_type, is_transactional=False,
                            key_serializer=producer._key_serializer, value_serializer=producer._value_serializer)

    def add_keyed(self, topic: str, key: bytes, value: bytes) -> None:
        """Append a record to the partition Kafka's default partitioner gives ``key`` (the topic's partition
        count must be known: :meth:`partitions`)."""
        self.add(topic, partition_for(key, self._partitions[topic]), key, value)

    async def send(self) -> dict[tuple[str, int], int]:
        """Submit every collected batch and wait until the broker acknowledged all of them.

        Returns, per (topic, partition), the offset of the last record written there. Raises the first
        failure (the records may then be partly written: the caller must not acknowledge its input)."""
        return await (await self.submit()).wait()

    async def submit(self) -> Submitted:
        """Hand every collected batch to the producer (it sends them at once) without waiting for the
        broker; :meth:`Submitted.wait` waits. Later records of a partition are sent after these."""
        batches = [*self._full, *((t, p, b) for (t, p), b in self._open.items())]
        self._full = []
        self._open = {}
        submitted = Submitted()
        for topic, partition, builder in batches:
            # closed, so the accumulator never appends records of other senders to it: our count (and so
            # the offset of our last record) stays exact
            builder.close()
            future = await self._producer.send_batch(builder, topic, partition=partition)
            submitted.batches.append((topic, partition, builder._relative_offset, future))
        return submitted


class Submitted:
    """Batches handed to the producer: (topic, partition, records, delivery future) each."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, int, int, Any]] = []

    async def wait(self) -> dict[tuple[str, int], int]:
        """Wait for the broker's acknowledgements; per (topic, partition) the offset of the last record
        written. Raises the first failure."""
        if not self.batches:
            return {}
        results = await asyncio.gather(*(future for *_, future in self.batches))
        last: dict[tuple[str, int], int] = {}
        for (topic, partition, n, _), meta in zip(self.batches, results, strict=True):
            if meta is not None and n:
                end = meta.offset + n - 1
                if end > last.get((topic, partition), -1):
                    last[(topic, partition)] = end
        return last
