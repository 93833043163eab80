"""Decision elision (streams.decide, issue 8): a policy whose inputs did not change is not evaluated again.

The claim under test: eliding changes nothing but the work done. The same stream, driven through a
processor that elides and one that evaluates every policy at every decision, gives the same tier changes,
notices and read-model records in the same order, and the same stored states apart from the elision keys.
The cases that must not be elided (an override, a command, a new policy version, a changed feature) are
checked one by one, with expectations by hand from five_tier.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.events import parse_event
from scoring.policy import PRESETS_DIR, load_policies, preset_names
from scoring.state import CustomerState
from scoring.timers import continuous_thresholds
from streams.batch import BOOKKEEPING, BatchProcessor, InRecord, Outbox
from streams.decide import Decider, _feature_key
from streams.partitioning import partition_for
from tests.conftest import rerun_from_source
from tests.unit.streams.stream_driver import END, NOW, TOPICS, run_like_worker, synthetic_records
from tierstream.synth import generate_events


def _processor(specs: list[str], elide: bool, rewrite: bool = True) -> BatchProcessor:
    policies = load_policies(specs)
    thresholds = continuous_thresholds(p.source for p in policies)
    processor = BatchProcessor(policies, TOPICS, 4, timedelta(minutes=5), timedelta(days=1100), thresholds=thresholds)
    processor.decider = Decider(policies, thresholds, elide=elide, rewrite_elided=rewrite)
    return processor


def _drain(processor: BatchProcessor, records: list[InRecord], batch: int = 100
           ) -> tuple[list[bytes], list[dict[str, Any]], dict[str, bytes], Counter[str]]:
    """The stream as the worker runs it. Returns the tier changes and notices in order, the read-model
    records in order, the stored states, and the number of elided decisions per policy."""
    outputs: list[bytes] = []
    reads: list[dict[str, Any]] = []
    elided: Counter[str] = Counter()

    def keep(out: Outbox) -> None:
        outputs.extend(orjson.dumps(c.model_dump(mode="json", by_alias=True)) for c in out.tier_changes)
        outputs.extend(orjson.dumps(n.model_dump(mode="json")) for n in out.notices)
        reads.extend(r.model_dump(mode="json") for r in out.read_model)
        elided.update(out.elided)

    store, _ = run_like_worker(processor, records, keep, batch)
    return outputs, reads, store, elided


def _without_keys(data: bytes) -> bytes:
    state = CustomerState.from_bytes(data)
    for record in state.tiers.values():
        record.pop("fk", None)
    return state.to_bytes()


@pytest.mark.parametrize("specs", [["five_tier"], preset_names()], ids=["five_tier", "all_presets"])
@pytest.mark.parametrize(("customers", "days"), [(40, 400), (150, 30)], ids=["long", "short"])
def test_eliding_decides_and_stores_exactly_as_evaluating_every_policy(specs, customers, days):
    # long: windows empty and review dates pass (decay, lifecycle timers); short: many customers' first
    # weeks (first decisions, first fast-path steps)
    records = synthetic_records(customers, days)
    full_out, full_reads, full_store, none = _drain(_processor(specs, elide=False), records)
    out, reads, store, elided = _drain(_processor(specs, elide=True), records)
    assert full_out and out == full_out
    assert reads == full_reads
    assert store.keys() == full_store.keys()
    assert all(_without_keys(store[c]) == _without_keys(full_store[c]) for c in store)
    assert not none and elided  # and elisions happened
    if len(specs) > 1 and days > 100:
        # rfm and sabcd read a days_since_* feature, which they only compare with constants: keyed by its
        # position among them (scoring.policy.compared), their decisions are elided too (none before session 6)
        assert elided["rfm"] and elided["sabcd"]


def _latest(reads: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """What Redis ends up holding per (customer, policy): the record of the highest version."""
    held: dict[tuple[str, str], dict[str, Any]] = {}
    for r in reads:
        key = (r["customer_id"], r["policy"])
        if key not in held or r["version"] > held[key]["version"]:
            held[key] = r
    return held


@pytest.mark.parametrize("specs", [["five_tier"], preset_names()], ids=["five_tier", "all_presets"])
def test_without_rewrites_redis_ends_with_the_same_content_from_fewer_writes(specs):
    # TIERSTREAM_READ_MODEL_REWRITE_UNCHANGED=false: elided decisions write no read-model record
    records = synthetic_records(40, 400)
    full_out, full_reads, full_store, _ = _drain(_processor(specs, elide=False), records)
    out, reads, store, elided = _drain(_processor(specs, elide=True, rewrite=False), records)
    assert out == full_out and store.keys() == full_store.keys()
    assert all(_without_keys(store[c]) == _without_keys(full_store[c]) for c in store)
    assert elided and len(reads) < len(full_reads)  # (elided decays of a decay that changed nothing wrote none)
    # every record written is the one the full computation wrote at that version
    full_by_version = {(r["customer_id"], r["policy"], r["version"]): r for r in full_reads}
    assert all(full_by_version[(r["customer_id"], r["policy"], r["version"])] == r for r in reads)

    def content(held: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {k: {f: v for f, v in r.items() if f not in ("version", "updated_at")} for k, r in held.items()}

    assert content(_latest(reads)) == content(_latest(full_reads))


class _Recording(Mapping[str, Any]):
    """A feature view that records every name read."""

    def __init__(self, view: Mapping[str, Any], seen: set[str]) -> None:
        self._view, self._seen = view, seen

    def __getitem__(self, name: str) -> Any:
        self._seen.add(name)
        return self._view[name]

    def get(self, name: str, default: Any = None) -> Any:
        self._seen.add(name)
        return self._view.get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._seen.add(name)
        return name in self._view

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("a policy iterated over every feature: its inputs are not features_used")

    def __len__(self) -> int:
        return len(self._view)


def test_every_preset_reads_only_the_features_it_declares():
    # Elision keys a decision by the values of features_used: a feature read but not declared could
    # change without the key changing, and a changed decision would be elided.
    policies = load_policies(preset_names())
    states: dict[str, CustomerState] = {}
    seen: dict[str, set[str]] = {p.id: set() for p in policies}
    for event in generate_events(25, seed=5, start=END - timedelta(days=500), end=END):
        parsed = parse_event(orjson.dumps(event), NOW, timedelta(minutes=5))
        state = states.setdefault(parsed.customer_id, CustomerState.new(parsed.customer_id))
        state.apply(parsed, parsed.occurred_at - timedelta(days=1100))
        at = state.last_event_at
        assert at is not None
        for policy in policies:
            policy.evaluate(_Recording(state.features(at), seen[policy.id]))
    for policy in policies:
        assert seen[policy.id] <= policy.features_used, policy.id
        assert seen[policy.id], policy.id


# ---------------------------------------------------------------- one customer, by hand (five_tier)

def _order(eid: str, amount: str, at: datetime) -> dict[str, Any]:
    return {"event_id": eid, "customer_id": "c1", "occurred_at": at.isoformat(), "type": "order",
            "order_id": f"o-{eid}", "status": "placed", "amount": amount}


def _login(eid: str, at: datetime) -> dict[str, Any]:
    return {"event_id": eid, "customer_id": "c1", "occurred_at": at.isoformat(), "type": "login", "channel": "web"}


def _rec(offset: int, value: dict[str, Any], topic: str | None = None) -> InRecord:
    key = b"c1"
    return InRecord(topic or TOPICS.input(value["type"]), partition_for(key, 4), offset, key, orjson.dumps(value),
                    NOW.timestamp())


class _Store(dict[str, bytes]):
    def load(self, customer_id: str, partition: int) -> bytes | None:
        return self.get(customer_id)

    def run(self, processor: BatchProcessor, *records: InRecord) -> Outbox:
        out = processor.process(list(records), self.load, NOW)
        self.update({c: data for c, (_, data) in out.state_writes.items()})
        return out

    def record(self) -> dict[str, Any]:
        return CustomerState.from_bytes(self["c1"]).tiers["five_tier"]


DAY1 = END - timedelta(days=3)


def test_a_login_on_a_day_already_counted_is_elided_and_only_moves_the_clock():
    store, p = _Store(), _processor(["five_tier"], elide=True)
    # an order of 100: spend 10 + 1 order 5 + 1 active day 3 + < 1 year 2 = 20 -> bronze (first decision:
    # not a fast-path step, so no key yet)
    out = store.run(p, _rec(0, _order("e1", "100", DAY1)))
    assert [c.to_tier for c in out.tier_changes] == ["bronze"] and "fk" not in store.record()
    # a login the same day: the same features, and the step confirms bronze: keyed now
    out = store.run(p, _rec(1, _login("e2", DAY1 + timedelta(hours=1))))
    assert len(out.read_model) == 1 and "fk" in store.record()
    keyed = store.record()
    # another login that day: elided; the record is kept with the clock moved, and the read model gets the
    # same record again (this revision and time)
    later = DAY1 + timedelta(hours=2)
    out = store.run(p, _rec(2, _login("e3", later)))
    assert out.elided == {"five_tier": 1} and out.tier_changes == []
    assert [(r.tier, r.score, r.version) for r in out.read_model] == [("bronze", 20.0, 3)]
    record = store.record()
    assert record["lc"]["at"] == later.isoformat()
    assert {**record, "lc": {**record["lc"], "at": None}} == {**keyed, "lc": {**keyed["lc"], "at": None}}
    # a login the next day is a second active day (same points, 3): evaluated, same tier, record written
    out = store.run(p, _rec(3, _login("e4", DAY1 + timedelta(days=1))))
    assert out.elided == {} and [r.tier for r in out.read_model] == ["bronze"] and out.tier_changes == []


def test_an_order_that_moves_the_score_is_never_elided():
    store, p = _Store(), _processor(["five_tier"], elide=True)
    store.run(p, _rec(0, _order("e1", "100", DAY1)), _rec(1, _login("e2", DAY1 + timedelta(hours=1))))
    store.run(p, _rec(2, _login("e3", DAY1 + timedelta(hours=2))))
    assert "fk" in store.record()
    # 1,000,001 more: spend > 1M -> 20, 2 orders -> 5: 20 + 5 + 3 + 2 = 30 -> still bronze, score 30
    out = store.run(p, _rec(3, _order("e4", "1000001", DAY1 + timedelta(hours=3))))
    assert out.elided == {} and [r.score for r in out.read_model] == [30.0]


def test_an_override_and_a_command_stop_elision():
    store, p = _Store(), _processor(["five_tier"], elide=True)
    store.run(p, _rec(0, _order("e1", "100", DAY1)), _rec(1, _login("e2", DAY1 + timedelta(hours=1))))
    command = {"type": "set_override", "command_id": "cmd-1", "customer_id": "c1", "policy": "five_tier",
               "kind": "pin", "tier": "gold", "actor": "exec@example.com", "reason": "board decision"}
    out = store.run(p, _rec(2, command, TOPICS.admin_commands))
    assert [a.accepted for a in out.audit] == [True]
    assert "fk" not in store.record()  # a command's step is not a decision: its record carries no key
    # with the pin held, the same features are evaluated again every time (an override is scheduled state)
    for i, hours in enumerate((2, 3)):
        out = store.run(p, _rec(3 + i, _login(f"e{3 + i}", DAY1 + timedelta(hours=hours))))
        assert out.elided == {} and [(r.tier, r.scored_tier) for r in out.read_model] == [("gold", "bronze")]


def test_a_new_policy_version_is_evaluated_even_with_the_same_features(tmp_path: Path):
    store, v1 = _Store(), _processor(["five_tier"], elide=True)
    store.run(v1, _rec(0, _order("e1", "100", DAY1)))
    store.run(v1, _rec(1, _login("e2", DAY1 + timedelta(hours=1))))
    assert "fk" in store.record()
    text = (PRESETS_DIR / "five_tier.yaml").read_text()
    v2 = tmp_path / "five_tier_v2.yaml"
    v2.write_text(text.replace("version: 1", "version: 2", 1))
    out = store.run(_processor([str(v2)], elide=True), _rec(2, _login("e3", DAY1 + timedelta(hours=2))))
    assert out.elided == {} and [(r.policy_version, r.tier) for r in out.read_model] == [(2, "bronze")]
    assert store.record()["pv"] == 2


def test_a_state_without_keys_is_evaluated_and_keyed():
    # states written before elision existed carry no "fk": the first decision evaluates and keys them
    store, p = _Store(), _processor(["five_tier"], elide=False)
    store.run(p, _rec(0, _order("e1", "100", DAY1)), _rec(1, _login("e2", DAY1 + timedelta(hours=1))))
    assert "fk" not in store.record()
    elider = _processor(["five_tier"], elide=True)
    assert store.run(elider, _rec(2, _login("e3", DAY1 + timedelta(hours=2)))).elided == {}
    assert "fk" in store.record()
    assert store.run(elider, _rec(3, _login("e4", DAY1 + timedelta(hours=3)))).elided == {"five_tier": 1}
    assert BOOKKEEPING in CustomerState.from_bytes(store["c1"]).tiers


def test_feature_keys_are_those_earlier_versions_stored():
    # A worker upgraded from session 5 finds "fk" keys made as blake2b(repr(list of values)): a policy with no
    # compared feature must key its decision the same way, or every stored key would miss once (one extra
    # full evaluation per customer and policy, not a wrong decision, but not free either).
    import hashlib

    policy = load_policies(["five_tier"])[0]
    state = CustomerState.new("c1")
    for event in (_order("e1", "100", DAY1), _login("e2", DAY1 + timedelta(hours=1))):
        parsed = parse_event(orjson.dumps(event), NOW, timedelta(minutes=5))
        state.apply(parsed, parsed.occurred_at - timedelta(days=1100))
    assert state.last_event_at is not None
    view = state.features(state.last_event_at)
    names = tuple(sorted(policy.features_used))
    old = hashlib.blake2b(repr([view.get(n) for n in names]).encode(), digest_size=8).hexdigest()
    assert _feature_key(view, names) == _feature_key(view, names, policy.compared, {}) == old


def test_a_login_that_touches_nothing_five_tier_reads_is_elided_without_computing_a_feature(monkeypatch, request):
    if rerun_from_source(request):  # counts calls of a CustomerState method: the source only
        return
    store, p = _Store(), _processor(["five_tier"], elide=True)
    store.run(p, _rec(0, _order("e1", "100", DAY1)), _rec(1, _login("e2", DAY1 + timedelta(hours=1))))
    store.run(p, _rec(2, _login("e3", DAY1 + timedelta(hours=2))))
    due = CustomerState.from_bytes(store["c1"]).tiers[BOOKKEEPING]["due"]
    reads: list[datetime] = []
    features = CustomerState.features

    def counted(state: CustomerState, now: datetime) -> Any:
        reads.append(now)
        return features(state, now)

    monkeypatch.setattr(CustomerState, "features", counted)
    # the same day again: only login counts and recency move, which five_tier does not read; the stored due
    # time (its next window exit, anniversary or review) is still ahead
    later = DAY1 + timedelta(hours=3)
    out = store.run(p, _rec(3, _login("e4", later)))
    assert out.elided == {"five_tier": 1} and reads == []
    book = CustomerState.from_bytes(store["c1"]).tiers[BOOKKEEPING]
    assert book["due"] == due and book["at"] == later.isoformat() and out.due["c1"][1] is not None
    # the next day is a new active day (active_days_90d): the features are read
    out = store.run(p, _rec(4, _login("e5", DAY1 + timedelta(days=1))))
    assert out.elided == {} and reads


def test_a_compaction_without_a_decision_drops_the_feature_keys():
    # Only a change of the horizon between runs can make a load's compaction change what features read with no
    # event applied: then the stored keys no longer describe the state, and the next decision must compute.
    old = DAY1 - timedelta(days=300)
    store, p = _Store(), _processor(["five_tier"], elide=True)
    store.run(p, _rec(0, _order("e1", "100", old)), _rec(1, _login("e2", DAY1)))
    store.run(p, _rec(2, _login("e3", DAY1 + timedelta(hours=1))))
    assert "fk" in store.record()
    policies = load_policies(["five_tier"])
    short = BatchProcessor(policies, TOPICS, 4, timedelta(minutes=5), timedelta(days=100),
                           thresholds=continuous_thresholds(q.source for q in policies))
    out = short.process([_rec(3, _login("e3", DAY1 + timedelta(hours=1)))], store.load, NOW)  # a duplicate
    assert out.counts == {("login", "duplicate"): 1}
    saved = CustomerState.from_bytes(out.state_writes["c1"][1])
    assert not saved.orders.d and "fk" not in saved.tiers["five_tier"]  # the order folded; the key is gone


RECENCY_SCALE = """
id: recency_scale
version: 1
tiers: [hot, warm, cold]
score:
  scorecard:
    dimensions:
      - name: recency
        weight: 100
        indicators:
          - {name: R, feature: days_since_last_purchase, weight: 100, max_points: 10, scale: {from: 20, to: 0}}
tier:
  bands:
    of: score
    bands:
      - {ge: 70, tier: hot}
      - {ge: 30, lt: 70, tier: warm}
    default: cold
"""


def test_a_policy_scaling_a_continuous_feature_is_never_elided_unread(tmp_path: Path):
    # Its score moves at every instant (a linear scale of days since the last purchase), which no due time
    # announces: were it elided because no event touched what it reads (a login touches no order), its score
    # would go stale.
    path = tmp_path / "recency_scale.yaml"
    path.write_text(RECENCY_SCALE)
    specs = [str(path), "five_tier"]
    records = synthetic_records(40, 400)
    full_out, full_reads, full_store, _ = _drain(_processor(specs, elide=False), records)
    out, reads, store, elided = _drain(_processor(specs, elide=True), records)
    assert out == full_out and reads == full_reads
    assert all(_without_keys(store[c]) == _without_keys(full_store[c]) for c in store)
    assert elided["five_tier"]
    decider = _processor(specs, elide=True).decider
    assert decider._inputs["recency_scale"] is None and decider._inputs["five_tier"] is not None
