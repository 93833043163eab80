"""The decoded-state cache (streams/state_cache.py): a kept object is used only for exactly the bytes it was
encoded to, it is lent (a batch that is not written leaves nothing behind), it is bounded, and deciding
through it is deciding from the store (session 10, issue 8)."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from scoring.policy import load_policies, preset_names
from scoring.state import CustomerState
from scoring.timers import continuous_thresholds
from streams.batch import BatchProcessor, InRecord, Outbox
from streams.state_cache import StateCache
from tests.unit.streams.stream_driver import NOW, TOPICS, run_like_worker, synthetic_records


def _processor(policies: list, states: StateCache | None = None) -> BatchProcessor:
    kwargs = {} if states is None else {"decode": states.decode}
    return BatchProcessor(policies, TOPICS, 4, timedelta(minutes=5), timedelta(days=1100),
                          thresholds=continuous_thresholds(p.source for p in policies), **kwargs)


def _written(processor: BatchProcessor, records: list[InRecord], states: StateCache) -> tuple[Outbox, dict]:
    """One batch against an empty store; its states stored and kept, as the worker does."""
    out = processor.process(records, lambda c, p: None, NOW)
    states.keep(out.state_writes, out.states)
    return out, {c: data for c, (_, data) in out.state_writes.items()}


def test_the_kept_object_is_used_only_for_the_bytes_it_was_encoded_to():
    states = StateCache(10)
    records = synthetic_records(3, 30)
    _, store = _written(_processor(load_policies(["five_tier"]), states), records, states)
    customer_id, data = next(iter(store.items()))
    kept = states._states[customer_id][1]

    assert states.decode(customer_id, data) is kept  # the same bytes: no decoding
    assert (states.hits, states.misses) == (1, 0)
    states.keep({customer_id: (0, data)}, {customer_id: kept})
    other = CustomerState.from_bytes(data)
    other.version += 1  # someone else wrote another state (a rebalance, a rollout, a recovery)
    changed = other.to_bytes()
    decoded = states.decode(customer_id, changed)
    assert decoded is not kept and decoded.to_bytes() == changed
    assert (states.hits, states.misses) == (1, 1)
    assert states.decode("new-customer", None).version == 0


def test_an_object_is_lent_so_a_batch_not_written_leaves_nothing_behind():
    states = StateCache(10)
    _, store = _written(_processor(load_policies(["five_tier"]), states), synthetic_records(3, 30), states)
    customer_id, data = next(iter(store.items()))
    lent = states.decode(customer_id, data)
    lent.version += 5  # decided in a batch a rebalance then dropped unwritten (or a decay that stored nothing)
    again = states.decode(customer_id, data)  # not kept back: decoded from the store
    assert again is not lent and again.to_bytes() == data


def test_bounded_least_recently_written_first():
    states = StateCache(2)
    a, b, c = (CustomerState.new(x) for x in "abc")
    states.keep({"a": (0, b"A"), "b": (0, b"B")}, {"a": a, "b": b})
    states.keep({"a": (0, b"A2")}, {"a": a})  # written again: now the most recent
    states.keep({"c": (0, b"C")}, {"c": c})
    assert set(states._states) == {"a", "c"}
    none = StateCache(0)
    none.keep({"a": (0, b"A")}, {"a": a})
    assert len(none) == 0


def _outputs(processor: BatchProcessor, records: list[InRecord], states: StateCache | None) -> tuple[list, dict]:
    seen: list[bytes] = []

    def keep(out: Outbox) -> None:
        seen.extend(orjson.dumps(c.model_dump(mode="json", by_alias=True)) for c in out.tier_changes)
        seen.extend(orjson.dumps(n.model_dump(mode="json")) for n in out.notices)
        seen.extend(orjson.dumps(r.model_dump(mode="json")) for r in out.read_model)
        seen.extend(f"{d.reason}|{d.record.offset}".encode() for d in out.dead_letters)

    store, _ = run_like_worker(processor, records, keep, 50, states)
    return seen, store


@pytest.mark.parametrize("specs", [["five_tier"], preset_names()], ids=["five_tier", "all_presets"])
def test_deciding_through_the_cache_is_deciding_from_the_store(specs):
    """Small batches (most customers come back batch after batch) with decay rounds in between: every tier
    change, notice, read-model record, dead letter and stored state is the same with and without it."""
    policies = load_policies(specs)
    records = synthetic_records(30, 200)
    states = StateCache(1000)
    cached, cached_store = _outputs(_processor(policies, states), records, states)
    plain, plain_store = _outputs(_processor(policies), records, None)
    assert states.hits > len(records) // 4  # the cache was really used
    assert cached == plain
    assert cached_store == plain_store
