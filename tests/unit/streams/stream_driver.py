"""Drive a :class:`streams.batch.BatchProcessor` the way ``streams.worker.Worker`` does, without a broker.

Shared by the tests that compare two processors on the same synthetic stream (tests/unit/streams): each
batch is processed against a dict store, then the decay rounds of the customers due up to each partition's
event-time watermark run (up to 50 rounds of 2,000), as the worker runs them after every batch.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson

from streams.batch import BatchProcessor, InRecord, Outbox
from streams.due import DueIndex
from streams.partitioning import partition_for
from streams.topics import Topics
from tierstream.synth import generate_events

END = datetime(2026, 1, 1, tzinfo=UTC)
NOW = END + timedelta(hours=1)
TOPICS = Topics("t.")


def synthetic_records(customers: int, days: int, seed: int = 11) -> list[InRecord]:
    """``generate_events`` ending at :data:`END` as consumed records: keyed by customer on its partition (4)."""
    out, offsets = [], [0] * 4
    for e in generate_events(customers, seed=seed, start=END - timedelta(days=days), end=END):
        key = e["customer_id"].encode()
        p = partition_for(key, 4)
        out.append(InRecord(TOPICS.input(e["type"]), p, offsets[p], key, orjson.dumps(e), NOW.timestamp()))
        offsets[p] += 1
    return out


def run_like_worker(processor: BatchProcessor, records: list[InRecord], on_out: Callable[[Outbox], None],
                    batch: int) -> tuple[dict[str, bytes], int]:
    """Process ``records`` in batches of ``batch``, each followed by its decay rounds; ``on_out`` sees every
    Outbox in order. Returns the stored states and the number of decays run."""
    store: dict[str, bytes] = {}
    due, marks = DueIndex(), {}
    decays = 0

    def apply(out: Outbox) -> None:
        on_out(out)
        for partition, mark in out.watermarks.items():
            marks[partition] = max(mark, marks.get(partition, mark))
        for customer_id, (partition, at) in out.due.items():
            due.schedule(partition, customer_id, at)

    for i in range(0, len(records), batch):
        out = processor.process(records[i : i + batch], lambda c, p: store.get(c), NOW)
        store.update({c: data for c, (_, data) in out.state_writes.items()})
        apply(out)
        decided: dict[str, bytes] = {}
        for _ in range(50):
            todo = [(c, p, at) for p, mark in list(marks.items()) for c, at in due.pop_due(p, mark, 2000)]
            if not todo:
                break
            decays += len(todo)
            out = processor.decay(todo, lambda c, p, d=decided: d.get(c) or store.get(c), NOW)
            decided.update({c: data for c, (_, data) in out.state_writes.items()})
            apply(out)
        store.update(decided)
    return store, decays
