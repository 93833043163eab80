"""Rollout helpers (scoring.rollout): the policy-change plan, the token bucket, shadow differences."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import EVENT_ADAPTER
from scoring.policy import CompiledPolicy, Decision, parse_policy
from scoring.rollout import (
    POLICY_CHANGE_CAUSE,
    SHADOW_LABELS,
    PolicyChange,
    RateLimiter,
    ShadowDiff,
    needs_rescore,
    pair_shadows,
    plan_rollout,
    shadow_diff,
)
from scoring.state import CustomerState

FEATURE = "assess.growth_potential"


def policy(version: int, tiers: str = "[gold, silver, bronze]", pid: str = "demo", gold: float = 80) -> CompiledPolicy:
    names = tiers.strip("[]").split(", ")
    return parse_policy(textwrap.dedent(f"""
        id: {pid}
        version: {version}
        tiers: {tiers}
        score: {{feature: {FEATURE}}}
        tier:
          bands:
            bands:
              - {{tier: {names[0]}, ge: {gold}}}
            default: {names[-1]}
        """), f"{pid}.yaml")


def stored(cid: str, pv: int | None, tier: str = "gold") -> CustomerState:
    s = CustomerState.new(cid)
    if pv is not None:
        s.tiers["demo"] = {"tier": tier, "pv": pv, "score": 90.0}
    s.tiers["~"] = {"at": "2026-03-01T00:00:00+00:00", "due": None}
    return s


# ---------------------------------------------------------------------- the plan
def test_plan_names_removed_and_added_tiers() -> None:
    change = PolicyChange.plan(policy(1), policy(2, "[gold, silver, copper]"))
    assert (change.policy_id, change.old.version, change.new.version) == ("demo", 1, 2)
    assert change.tiers_removed == ("bronze",) and change.tiers_added == ("copper",)
    assert PolicyChange.plan(policy(3), policy(2)).tiers_removed == ()  # a rollback is a change too
    assert POLICY_CHANGE_CAUSE == "policy_change"


def test_plan_refuses_other_ids_and_equal_versions() -> None:
    with pytest.raises(ValueError, match="one policy id"):
        PolicyChange.plan(policy(1), policy(2, pid="other"))
    with pytest.raises(ValueError, match="bump the version"):
        PolicyChange.plan(policy(1), policy(1, gold=70))


def test_rescore_every_stored_record_of_another_version() -> None:
    change = PolicyChange.plan(policy(1), policy(2))
    ss = [stored("a", 1), stored("b", 2), stored("c", None), stored("d", 1)]
    assert list(change.customers(ss)) == ["a", "d"]  # b already on v2, c never scored
    assert needs_rescore(ss[0], change.new) and not needs_rescore(ss[1], change.new)
    ss[0].tiers["demo"]["pv"] = 2  # what a re-score (or any event) leaves behind: idempotent
    assert not needs_rescore(ss[0], change.new)


def test_assess_and_guard_compare_stored_tiers_with_the_new_version() -> None:
    change = PolicyChange.plan(policy(1), policy(2, gold=9.5))
    # all hold gold; no events: evaluated at their bookkeeping time, growth_potential missing -> bronze
    ss = [stored(c, 1) for c in "abcd"]
    m = change.assess(ss)
    assert m.against == "stored tiers" and m.count("gold", "bronze") == 4 and m.share_changed == 1.0
    assert change.guard(m, 0.25, force=False)[0] is False
    assert change.guard(m, 0.25, force=True)[0] is True


# ---------------------------------------------------------------------- the token bucket
def test_bucket_starts_full_then_refills_at_the_rate() -> None:
    b = RateLimiter(rate_per_s=10, burst=5)
    assert b.take(5, now=100.0)  # full at start
    assert not b.take(1, now=100.0)  # empty
    assert not b.take(2, now=100.15)  # 1.5 tokens: not enough for 2, and none are taken
    assert b.take(1, now=100.15)
    assert b.available(100.15) == pytest.approx(0.5)
    assert b.available(200.0) == 5  # never above the burst


def test_bucket_take_up_to_and_wait() -> None:
    b = RateLimiter(rate_per_s=2, burst=10)
    assert b.take_up_to(25, now=0.0) == 10  # a batch of 25: 10 now
    assert b.take_up_to(25, now=0.0) == 0
    assert b.wait(4, now=0.0) == pytest.approx(2.0)  # 4 tokens at 2/s
    assert b.take_up_to(25, now=1.75) == 3  # 3.5 tokens: whole ones only
    assert b.available(1.75) == pytest.approx(0.5)
    assert b.wait(0, now=1.75) == 0.0


def test_bucket_ignores_time_going_backwards_and_refuses_impossible_requests() -> None:
    b = RateLimiter(rate_per_s=1, burst=2)
    assert b.take(2, now=50.0)
    assert b.available(10.0) == 0  # earlier clock: no tokens minted
    assert b.available(51.0) == pytest.approx(1.0)  # measured from 50, not from 10
    with pytest.raises(ValueError):
        b.take(3, now=60.0)  # more than the burst can ever hold
    with pytest.raises(ValueError):
        b.wait(3, now=60.0)
    with pytest.raises(ValueError):
        RateLimiter(0, 1)
    with pytest.raises(ValueError):
        RateLimiter(1, 0.5)


def test_slow_rates_accumulate_fractions() -> None:
    b = RateLimiter(rate_per_s=0.5, burst=1)
    assert b.take(1, now=0.0)
    assert not b.take(1, now=1.0)
    assert b.take(1, now=2.0)


# ---------------------------------------------------------------------- shadow
def d(tier: str, version: int = 1, pid: str = "demo") -> Decision:
    return Decision(pid, version, tier, 50.0, {})


def test_shadow_diff_labels_only_when_tiers_differ() -> None:
    assert shadow_diff(d("gold"), d("gold", 2)) is None
    diff = shadow_diff(d("gold"), d("silver", 2))
    assert diff == ShadowDiff("demo", "2", "gold", "silver")
    assert dict(zip(SHADOW_LABELS, diff, strict=True)) == {
        "policy": "demo", "shadow_version": "2", "live_tier": "gold", "shadow_tier": "silver"}


def test_shadow_of_real_policies() -> None:
    live, shadow = policy(1), policy(2, gold=60)
    features = {FEATURE: 70}
    assert shadow_diff(live.evaluate(features), shadow.evaluate(features)) == ("demo", "2", "bronze", "gold")
    assert shadow_diff(live.evaluate({FEATURE: 90}), shadow.evaluate({FEATURE: 90})) is None


def test_pair_shadows_by_id() -> None:
    live = [policy(1), policy(1, pid="other")]
    pairs = pair_shadows(live, [policy(2)])
    assert [(a.id, a.version, b.version) for a, b in pairs] == [("demo", 1, 2)]
    with pytest.raises(ValueError, match="no live policy"):
        pair_shadows(live, [policy(2, pid="nope")])
    with pytest.raises(ValueError, match="two shadow"):
        pair_shadows(live, [policy(2), policy(3)])


def test_module_is_pure() -> None:
    import scoring.rollout as r
    import scoring.whatif as w

    for module in (r, w):
        text = open(module.__file__, encoding="utf-8").read()  # noqa: SIM115
        assert not any(f"import {x}" in text or f"from {x}" in text
                       for x in ("faust", "kafka", "redis", "streams", "tierstream"))


# ---------------------------------------------------------------------- the worker's plan (plan_rollout)
def assessed(cid: str, pv: int, growth: float, tier: str = "gold") -> CustomerState:
    """A customer stored by version ``pv`` as ``tier``, whose growth assessment scores ``growth``."""
    s = stored(cid, pv, tier)
    at = datetime(2026, 2, 1, tzinfo=UTC)
    event = EVENT_ADAPTER.validate_python({
        "type": "profile", "event_id": f"p-{cid}", "customer_id": cid, "occurred_at": at.isoformat(),
        "assessments": {"growth_potential": growth}})
    assert s.apply(event, s.horizon_start(timedelta(days=400), at)) == "applied"
    return s


def test_worker_plan_queues_stale_records_in_partition_order_and_guards_each_policy() -> None:
    # v2's score is the growth assessment (0-10); gold when >= 9.5, else bronze. All held gold under v1:
    # a (9.9) stays gold; b (9.0) and c (8.5) fall to bronze; d is already on v2.
    entries = [(1, assessed("c", 1, 8.5)), (0, assessed("b", 1, 9.0)), (0, assessed("a", 1, 9.9)),
               (1, assessed("d", 2, 1.0, "bronze"))]
    plan = plan_rollout(entries, [policy(2, gold=9.5)], max_share=0.5, force=False)
    assert plan.queue == ((0, "a"), (0, "b"), (1, "c"))  # d is done; sorted by partition, then id
    m = plan.assessments["demo"]
    assert (m.compared, m.changed, m.count("gold", "bronze"), m.count("gold", "gold")) == (3, 2, 2, 1)
    # 2 of 3 (66.7 %) would change: above 50 %, refused; forced, allowed; within 70 %, allowed
    assert not plan.ok and "2 of 3" in plan.refused["demo"] and "refusing" in plan.refused["demo"]
    assert plan_rollout(entries, [policy(2, gold=9.5)], 0.5, force=True).ok
    assert plan_rollout(entries, [policy(2, gold=9.5)], 0.7, force=False).ok


def test_worker_plan_with_nothing_stale_is_empty_and_ok() -> None:
    plan = plan_rollout([(0, assessed("a", 2, 9.9))], [policy(2)], max_share=0.0, force=False)
    assert plan.queue == () and plan.assessments == {} and plan.verdicts == {} and plan.ok
