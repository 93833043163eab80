"""Continuous features a policy only compares with constants (scoring.policy.compared, issue 8).

``streams.decide`` keys such a feature by its position among the constants instead of its value, so what is
claimed here is what that relies on: the analysis finds exactly the comparisons (and refuses every other
use), positions tell apart exactly the values some comparison tells apart, and the presets decide the same
for any two values at the same position.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from scoring.policy import load_preset, parse_policy, preset_names
from scoring.policy.compared import compared_only, position

ALL = {name: load_preset(name) for name in preset_names()}


def test_the_presets_that_compare_a_continuous_feature_only_compare_it():
    found = {name: dict(p.compared) for name, p in ALL.items() if p.compared}
    assert found == {
        # R ladder: [0, 30], (30, 90], (90, 180], (180, 365], > 365
        "rfm": {"days_since_last_purchase": (0, 30, 90, 180, 365)},
        # dormant: days_since_last_activity > 180 forces D
        "sabcd": {"days_since_last_activity": (180,)},
    }


@pytest.mark.parametrize(("node", "expected"), [
    ({"feature": "days_since_last_event", "op": ">", "value": 7}, {"days_since_last_event": (7,)}),
    ({"feature": "days_since_last_event", "op": "in", "value": [3, 1, 2]}, {"days_since_last_event": (1, 2, 3)}),
    ({"feature": "days_since_last_event", "op": "==", "value": None}, {}),  # presence only: nothing to key by
    ({"feature": "days_since_last_event", "op": "==", "value": "7"}, {}),  # a string: not understood
    ({"name": "R", "feature": "days_since_last_event", "weight": 10,
      "ladder": [{"ge": 0, "lt": 5, "points": 2}, {"ge": 5, "points": 1}]}, {"days_since_last_event": (0, 5)}),
    ({"name": "R", "feature": "days_since_last_event", "weight": 10, "scale": {"from": 0, "to": 30}}, {}),
    ({"feature": "days_since_last_event", "steps": [{"ge": 3, "points": 1}]}, {"days_since_last_event": (3,)}),
    ({"feature": "days_since_last_event", "steps": [{"ge": 3, "tier": "A"}]}, {}),  # a grant
    ({"of": "days_since_last_event", "bands": [{"ge": 3, "tier": "A"}]}, {}),  # bands of the value itself
    ({"score": {"feature": "days_since_last_event"}}, {}),  # the raw value as the score
])
def test_only_comparisons_with_numbers_qualify(node: dict[str, Any], expected: dict[str, tuple]):
    assert compared_only({"tier": node}, ["days_since_last_event", "spend_12m"]) == expected


def test_one_use_that_is_not_a_comparison_disqualifies_the_feature():
    compare = {"feature": "days_since_last_event", "op": ">", "value": 7}
    scaled = {"name": "R", "feature": "days_since_last_event", "weight": 10, "scale": {"from": 0, "to": 30}}
    assert compared_only({"adjust": [{"when": compare}], "score": {"indicators": [scaled]}},
                         ["days_since_last_event"]) == {}
    assert compared_only({"adjust": [{"when": compare}], "x": ["days_since_last_event"]},
                         ["days_since_last_event"]) == {}
    # and features it does not read, or that do not change with time, are never listed
    assert compared_only({"when": {"feature": "spend_12m", "op": ">", "value": 7}}, ["spend_12m"]) == {}


def test_a_compiled_policy_with_a_linear_scale_on_recency_is_keyed_by_value():
    text = """
id: recency_scale
version: 1
tiers: [hot, cold]
score:
  scorecard:
    dimensions:
      - name: recency
        weight: 100
        indicators:
          - {name: R, feature: days_since_last_event, weight: 100, max_points: 10, scale: {from: 60, to: 0}}
tier:
  bands:
    of: score
    bands:
      - {ge: 50, tier: hot}
    default: cold
adjust:
  - force: cold
    reason: dormant
    when: {feature: days_since_last_event, op: ">", value: 365}
"""
    assert dict(parse_policy(text, "recency_scale.yaml").compared) == {}
    assert dict(parse_policy(text.replace("scale: {from: 60, to: 0}", "ladder: [{le: 30, points: 10}, "
                                          "{gt: 30, points: 0}]"), "x.yaml").compared) == {
        "days_since_last_event": (30, 365)}


def test_positions_tell_apart_exactly_what_a_comparison_tells_apart():
    t = (Decimal(0), Decimal(30), Decimal(90))
    assert position(None, t) is None
    assert position(-1.0, t) == ("~", 0, 0)
    assert position(0.0, t) == ("~", 0, 1)  # on 0: ">= 0" holds, "> 0" does not
    assert position(12.5, t) == position(29.99, t) == ("~", 1, 1)
    assert position(30.0, t) == ("~", 1, 2) != position(30.000001, t)
    assert position(400.0, t) == ("~", 3, 3)
    rng = random.Random(3)
    for _ in range(2000):
        a, b = rng.choice([0, 30, 90]) + rng.choice([-1, 0, 1]) * rng.random(), rng.uniform(-5, 120)
        same = all((a < x) == (b < x) and (a == x) == (b == x) for x in t)
        assert (position(a, t) == position(b, t)) is same


def _recent(days: float | None) -> dict[str, Any]:
    """rfm's and sabcd's other inputs fixed (a mid-sized customer), recency as given."""
    return {
        "days_since_last_purchase": days, "days_since_last_activity": days, "orders_12m": 12,
        "spend_12m": Decimal("60000"), "spend_36m": Decimal("150000"), "margin_12m": Decimal("9000"),
        "product_lines_lifetime": 3, "years_as_customer": 2.5, "bad_debt": False,
        **{f"assess.{n}": 6.0 for n in ("brand_influence", "industry_outlook", "new_product_willingness",
                                        "purchase_intent", "referrals", "size_growth", "supply_chain_value")},
    }


@pytest.mark.parametrize("name", ["rfm", "sabcd"])
def test_values_at_one_position_get_the_same_decision(name: str):
    # what an elided decision keeps: tier, score, and the outlook the lifecycle reads its keep margin from
    policy = ALL[name]
    feature, thresholds = next(iter(policy.compared.items()))
    rng = random.Random(11)
    values = [float(t) + d for t in thresholds for d in (-0.5, -1e-6, 0.0, 1e-6, 0.5)] + \
        [rng.uniform(-1, 800) for _ in range(300)] + [None]
    seen: dict[Any, tuple] = {}
    decisions = set()
    for v in values:
        d = policy.evaluate(_recent(v))
        outcome = (d.tier, d.score, repr(d.explanation.get("next_tier")), d.explanation.get("base_tier"))
        decisions.add(outcome)
        assert seen.setdefault(position(v, thresholds), outcome) == outcome, (feature, v)
    assert len(decisions) > 1  # recency does move these decisions
