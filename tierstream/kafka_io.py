"""Small synchronous Kafka helpers (kafka-python) for tools, the demo and tests: create topics, produce
JSON events keyed by customer, read a topic from the beginning without a consumer group.

Reading without a group is deliberate: the embedded broker's group protocol works with kafka-python
only with tiny poll intervals (BROKER-NOTES.md), and tools that inspect a topic should not move any
group's offsets.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import TopicAlreadyExistsError


def bootstrap(broker_url: str) -> str:
    """``kafka://host:port[;...]`` (Faust style) -> ``host:port,...`` (kafka-python style)."""
    return ",".join(part.removeprefix("kafka://") for part in broker_url.replace(";", ",").split(","))


def ensure_topics(broker_url: str, names: Iterable[str], partitions: int, replication: int = 1) -> None:
    """Create the topics that do not exist yet, all with ``partitions`` partitions."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap(broker_url), client_id="tierstream-admin")
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(n, partitions, replication) for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created it meanwhile
                admin.create_topics(missing)
    finally:
        admin.close()


def producer(broker_url: str, **kwargs: object) -> KafkaProducer:
    """A producer with bytes keys and values; acks=all, keyed records use Kafka's murmur2 partitioner."""
    options: dict[str, object] = {"acks": "all", "linger_ms": 5, **kwargs}
    return KafkaProducer(bootstrap_servers=bootstrap(broker_url), **options)


def committed_offsets(broker_url: str, group: str) -> dict[tuple[str, int], int]:
    """The offsets consumer group ``group`` has committed, as ``{(topic, partition): next offset}``
    (empty when it has committed nothing). Read with the admin API: no group is joined."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap(broker_url), client_id="tierstream-admin")
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def latest_per_key(
    records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
) -> dict[bytes, bytes]:
    """Compaction done by the reader: the last value of every key; a tombstone (empty value) removes the
    key, keyless records are skipped. The embedded broker never compacts, so tools that read a compacted
    topic (a table changelog, the customer-tiers snapshot) apply this themselves."""
    latest: dict[bytes, bytes] = {}
    for key, value, _headers in records:
        if key is None:
            continue
        if value:
            latest[key] = value
        else:
            latest.pop(key, None)
    return latest


def read_topic(
    broker_url: str, topic: str, timeout: float = 5.0, min_records: int = 0, max_seconds: float = 300.0
) -> Iterator[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """Every record of ``topic`` from the beginning as (key, value, headers); stops as
    :func:`read_records` does."""
    for msg in read_records(broker_url, topic, timeout, min_records, max_seconds):
        yield msg.key, msg.value, list(msg.headers or [])


def read_records(
    broker_url: str, topic: str, timeout: float = 5.0, min_records: int = 0, max_seconds: float = 300.0
) -> Iterator[ConsumerRecord]:
    """Every record of ``topic`` from the beginning, whole (partition, offset, timestamp, key, value,
    headers), in offset order within each partition.

    Stops when no record has arrived for ``timeout`` seconds and at least ``min_records`` were read, or
    after ``max_seconds`` in all (a guard for tools, not a normal exit).
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap(broker_url), enable_auto_commit=False, consumer_timeout_ms=200,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        seen = 0
        started = last = time.monotonic()
        while True:
            for msg in consumer:
                seen += 1
                last = time.monotonic()
                yield msg
            now = time.monotonic()
            if (seen >= min_records and now - last > timeout) or now - started > max_seconds:
                return
    finally:
        consumer.close()
