"""Work-around for the embedded broker's wrong end offsets (Tansu, BROKER-NOTES.md), for Faust recovery.

Tansu answers ListOffsets(latest) with the first offset of a partition's *last record batch* + 1, not
the offset after its last record. Faust reads table changelogs up to that "highwater" on recovery, so it
would stop before the tail of the last batch (losing state) or crash (persisted offset above highwater).
The documented workaround — one record per producer batch — makes the answer right but costs one
produce request per record (measured: the worker spends most of its time waiting on them).

Instead (the default; ``TIERSTREAM_EMBEDDED_OFFSET_CORRECTION=0`` turns it off; streams/app.py has its
record), :func:`install` wraps Faust's consumer ``highwaters()`` to find the true end: read the
partition from the reported end − 1 (the last batch's first record) onwards and take the last offset
seen + 1. Real Kafka never gets this code path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger("tierstream.tansu")

_installed: list[str] = []


def true_ends(bootstrap: str, reported: Mapping[TP, int]) -> dict[TP, int]:
    """The real end offset of each partition, given the broker's (possibly short) answer."""
    from kafka import KafkaConsumer, TopicPartition

    ends = dict(reported)
    todo = {tp: end for tp, end in reported.items() if end and end > 0}
    if not todo:
        return ends
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=300)
    try:
        parts = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
        consumer.assign(list(parts))
        for kp, tp in parts.items():
            consumer.seek(kp, todo[tp] - 1)
        # A record exists at reported end - 1 of every partition (reported <= true end), so we wait until
        # each partition returned at least one (the first fetch after assign can take a while: stopping at
        # the first empty poll would hand Faust the short end and lose the changelog's tail), then read
        # on until two polls in a row bring nothing.
        unseen = set(parts)
        idle = 0
        deadline = time.monotonic() + 30.0
        while unseen or idle < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read the end of {sorted(map(str, unseen))} to correct offsets")
            batch = consumer.poll(timeout_ms=200)
            if not batch:
                idle += 1
                continue
            idle = 0
            for kp, records in batch.items():
                unseen.discard(kp)
                tp = parts[kp]
                ends[tp] = max(ends[tp], records[-1].offset + 1)
    finally:
        consumer.close()
    return ends


def install(bootstrap: str) -> None:
    """Wrap Faust's aiokafka consumer ``highwaters`` (process-wide, idempotent)."""
    if _installed:
        return
    original = faust_aiokafka.Consumer.highwaters

    async def highwaters(self: faust_aiokafka.Consumer, *partitions: TP) -> Mapping[TP, int]:
        reported = await original(self, *partitions)
        fixed = await asyncio.to_thread(true_ends, bootstrap, reported)
        if fixed != dict(reported):
            log.info("corrected end offsets of the embedded broker",
                     extra={"corrected": {f"{tp.topic}:{tp.partition}": (reported[tp], fixed[tp])
                                          for tp in fixed if fixed[tp] != reported[tp]}})
        return fixed

    faust_aiokafka.Consumer.highwaters = highwaters  # type: ignore[method-assign]
    _installed.append(bootstrap)
