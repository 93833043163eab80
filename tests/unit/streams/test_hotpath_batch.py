"""The batch core decides exactly the same with the hot-path optimizations (issue 8).

The optimization that changes *when* work happens: the next due time considers only the sources of the
features the loaded policies read (``Decider.sources``), so customers are no longer woken for windows no
policy uses. Driving the same synthetic stream (batches, each followed by the decay rounds the worker
runs) through a processor with every source (the previous schedule) and one with the filtered sources
must give the same tier changes (ids, sequences, causes, times), notices, read-model records and stored
states (apart from the stored next due time, which is the point), with fewer decays.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from scoring.features import ALL_SOURCES
from scoring.policy import load_policies, preset_names
from scoring.state import CustomerState
from scoring.timers import continuous_thresholds
from streams.batch import BOOKKEEPING, BatchProcessor, InRecord, Outbox
from streams.due import DueIndex
from streams.partitioning import partition_for
from streams.topics import Topics
from tierstream.synth import generate_events

END = datetime(2026, 1, 1, tzinfo=UTC)
NOW = END + timedelta(hours=1)
TOPICS = Topics("t.")


def _records(customers: int, days: int) -> list[InRecord]:
    out, offsets = [], [0] * 4
    for e in generate_events(customers, seed=11, start=END - timedelta(days=days), end=END):
        key = e["customer_id"].encode()
        p = partition_for(key, 4)
        out.append(InRecord(TOPICS.input(e["type"]), p, offsets[p], key, orjson.dumps(e), NOW.timestamp()))
        offsets[p] += 1
    return out


def _drain(processor: BatchProcessor, records: list[InRecord], batch: int = 200) -> tuple[dict, dict, int]:
    """Run the stream as the worker does; returns every customer's outputs in order, the stored states, and
    the number of decays run. (Across customers the order may differ: a customer woken fewer times reaches
    a due time in an earlier decay round; it is decided at that due time all the same.)"""
    store: dict[str, bytes] = {}
    due, marks = DueIndex(), {}
    outputs: list = []
    decays = 0

    def keep(out: Outbox) -> None:
        outputs.extend((c.customer_id, orjson.dumps(c.model_dump(mode="json", by_alias=True)))
                       for c in out.tier_changes)
        outputs.extend((n.customer_id, orjson.dumps(n.model_dump(mode="json"))) for n in out.notices)
        outputs.extend((r.customer_id, orjson.dumps(r.model_dump(mode="json"))) for r in out.read_model)
        for partition, mark in out.watermarks.items():
            marks[partition] = max(mark, marks.get(partition, mark))
        for customer_id, (partition, at) in out.due.items():
            due.schedule(partition, customer_id, at)

    for i in range(0, len(records), batch):
        out = processor.process(records[i : i + batch], lambda c, p: store.get(c), NOW)
        store.update({c: data for c, (_, data) in out.state_writes.items()})
        keep(out)
        decided: dict[str, bytes] = {}
        for _ in range(50):
            todo = [(c, p, at) for p, mark in list(marks.items()) for c, at in due.pop_due(p, mark, 2000)]
            if not todo:
                break
            decays += len(todo)
            out = processor.decay(todo, lambda c, p, d=decided: d.get(c) or store.get(c), NOW)
            decided.update({c: data for c, (_, data) in out.state_writes.items()})
            keep(out)
        store.update(decided)
    by_customer: dict[str, list[bytes]] = {}
    for customer_id, data in outputs:
        by_customer.setdefault(customer_id, []).append(data)
    return by_customer, store, decays


def _without_due(data: bytes) -> bytes:
    state = CustomerState.from_bytes(data)
    state.tiers.get(BOOKKEEPING, {})["due"] = None
    return state.to_bytes()


@pytest.mark.parametrize("specs", [["five_tier"], preset_names()], ids=["five_tier", "all_presets"])
def test_filtered_schedule_decides_exactly_as_the_full_one(specs):
    policies = load_policies(specs)
    records = _records(40, 400)  # long enough for windows to empty and review dates to pass

    def processor(every_source: bool) -> BatchProcessor:
        p = BatchProcessor(policies, TOPICS, 4, timedelta(minutes=5), timedelta(days=1100),
                           thresholds=continuous_thresholds(x.source for x in policies))
        if every_source:
            p.decider.sources = ALL_SOURCES  # the schedule before issue 8: every window of every feature
        return p

    full_out, full_store, full_decays = _drain(processor(True), records)
    out, store, decays = _drain(processor(False), records)
    # decay is exercised: changes caused by time alone
    assert any(b'"cause":"decay"' in o or b'"cause":"review"' in o for outs in full_out.values() for o in outs)
    assert out == full_out
    assert store.keys() == full_store.keys()
    assert all(_without_due(store[c]) == _without_due(full_store[c]) for c in store)
    assert decays < full_decays


def test_same_stable_is_the_filtered_dict_comparison():
    from streams.decide import _VOLATILE, _same_stable

    def stable(d):
        return None if d is None else {k: v for k, v in d.items() if k not in _VOLATILE}

    base = {"c": "c1", "q": 1, "ff": 0, "np": 0, "t": "gold", "sv": 1.5, "at": "x", "k": [1.0, True, 2.0]}
    variants = [None, dict(base), {**base, "sv": 2.0, "at": "y"}, {k: v for k, v in base.items() if k != "k"},
                {**base, "t": "silver"}, {**base, "p": {"d": "down"}}, {k: v for k, v in base.items() if k != "t"},
                {**base, "k": None}, {"c": "c1"}]
    for a in variants:
        for b in variants:
            assert _same_stable(a, b) == (stable(a) == stable(b)), (a, b)
