"""The batch core decides exactly the same with the hot-path optimizations (issue 8).

The optimization that changes *when* work happens: the next due time considers only the sources of the
features the loaded policies read (``Decider.sources``), so customers are no longer woken for windows no
policy uses. Driving the same synthetic stream (batches, each followed by the decay rounds the worker
runs) through a processor with every source (the previous schedule) and one with the filtered sources
must give the same tier changes (ids, sequences, causes, times), notices, read-model records and stored
states (apart from the stored next due time, which is the point), with fewer decays.
"""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from scoring.features import ALL_SOURCES
from scoring.policy import load_policies, preset_names
from scoring.state import CustomerState
from scoring.timers import continuous_thresholds
from streams.batch import BOOKKEEPING, BatchProcessor, InRecord, Outbox
from tests.unit.streams.stream_driver import TOPICS, run_like_worker, synthetic_records


def _drain(processor: BatchProcessor, records: list[InRecord], batch: int = 200) -> tuple[dict, dict, int]:
    """Run the stream as the worker does; returns every customer's outputs in order, the stored states, and
    the number of decays run. (Across customers the order may differ: a customer woken fewer times reaches
    a due time in an earlier decay round; it is decided at that due time all the same.)"""
    by_customer: dict[str, list[bytes]] = {}

    def keep(out: Outbox) -> None:
        for c in out.tier_changes:
            by_customer.setdefault(c.customer_id, []).append(orjson.dumps(c.model_dump(mode="json", by_alias=True)))
        for n in out.notices:
            by_customer.setdefault(n.customer_id, []).append(orjson.dumps(n.model_dump(mode="json")))
        for r in out.read_model:
            by_customer.setdefault(r.customer_id, []).append(orjson.dumps(r.model_dump(mode="json")))

    store, decays = run_like_worker(processor, records, keep, batch)
    return by_customer, store, decays


def _without_due(data: bytes) -> bytes:
    state = CustomerState.from_bytes(data)
    state.tiers.get(BOOKKEEPING, {})["due"] = None
    return state.to_bytes()


@pytest.mark.parametrize("specs", [["five_tier"], preset_names()], ids=["five_tier", "all_presets"])
def test_filtered_schedule_decides_exactly_as_the_full_one(specs):
    policies = load_policies(specs)
    records = synthetic_records(40, 400)  # long enough for windows to empty and review dates to pass

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
