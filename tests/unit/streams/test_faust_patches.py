"""streams.faust_patches.track_end_offsets_per_fetch: the same records, in the same order, as Faust's own
``Consumer.getmany``, with each partition's end offset tracked once per fetch instead of once per record."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP

from streams.faust_patches import track_end_offsets_per_fetch

A, B, C = TP("t.order", 0), TP("t.order", 1), TP("t.login", 0)


def fake_consumer(records: dict[TP, list[int]], active: set[TP] | None, buffered: set[TP] = frozenset()
                  ) -> tuple[Any, list[tuple[TP, int]]]:
    """The parts of a Faust consumer ``getmany`` reads; returns it and the list its monitor tracks into."""
    tracked: list[tuple[TP, int]] = []

    async def wait_next_records(timeout: float) -> tuple[dict[TP, list[int]], set[TP] | None]:
        return records, active

    consumer = SimpleNamespace(
        _wait_next_records=wait_next_records,
        app=SimpleNamespace(consumer_generation_id=7,
                            monitor=SimpleNamespace(track_tp_end_offset=lambda tp, o: tracked.append((tp, o)))),
        should_stop=False,
        flow_active=True,
        _buffered_partitions=buffered,
        highwater=lambda tp: 100 + tp.partition,
        scheduler=DefaultSchedulingStrategy(),
        _to_message=lambda tp, record: (tp.topic, tp.partition, record),
        log=SimpleNamespace(dev=logging.getLogger("test").debug, warning=logging.getLogger("test").warning),
    )
    return consumer, tracked


async def collect(getmany: Any, consumer: Any) -> list[Any]:
    return [item async for item in getmany(consumer, 1.0)]


def test_the_same_records_in_the_same_order_tracked_once_per_partition():
    track_end_offsets_per_fetch()
    cls = faust_consumer.Consumer
    original, patched = cls._tierstream_original_getmany, cls.getmany
    assert original is not patched
    records = {A: [1, 2, 3], B: [10, 11], C: [5]}
    for active, buffered in ((None, frozenset()), ({A, C}, frozenset()), ({A}, {B})):
        theirs, their_tracks = fake_consumer(records, active, buffered)
        ours, our_tracks = fake_consumer(records, active, buffered)
        expected = asyncio.run(collect(original, theirs))
        assert asyncio.run(collect(patched, ours)) == expected
        assert expected, "records are delivered"
        # once per delivered partition, with the value Faust tracks for each of its records
        assert sorted(set(their_tracks)) == sorted(our_tracks)
        assert len(our_tracks) == len({tp for tp, _ in expected})
        assert len(their_tracks) == len(expected)


def test_nothing_is_delivered_while_flow_is_stopped_or_the_generation_changes():
    track_end_offsets_per_fetch()
    patched = faust_consumer.Consumer.getmany
    consumer, tracked = fake_consumer({A: [1, 2]}, None)
    consumer.flow_active = False

    async def no_seek() -> None:
        return None

    consumer.perform_seek = no_seek
    assert asyncio.run(collect(patched, consumer)) == [] and tracked == []

    consumer, _ = fake_consumer({A: [1, 2, 3]}, None)
    original_to_message = consumer._to_message

    def to_message(tp: TP, record: int) -> Any:
        consumer.app.consumer_generation_id = 8  # a rebalance completes after the first record
        return original_to_message(tp, record)

    consumer._to_message = to_message
    assert asyncio.run(collect(patched, consumer)) == [(A, ("t.order", 0, 1))]
