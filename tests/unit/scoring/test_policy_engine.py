"""Engine building blocks: conditions, grants, combinators, penalties, quotas, entitlements, population."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from scoring.policy import (
    UNBOUNDED_DAYS,
    CompiledPolicy,
    HistogramPopulation,
    PopulationView,
    ScoreHistogram,
    load_preset,
    lookup,
    parse_policy,
    preset_names,
)

PRESETS = [
    "five_tier",
    "sabcd",
    "pyramid",
    "telecom_vip",
    "telecom_group_vip",
    "order_volume",
    "funnel",
    "blended_bonus",
    "rfm",
    "size_class",
    "credit_class",
]


def policy(text: str) -> CompiledPolicy:
    return parse_policy(textwrap.dedent(text), "test.yaml")


def rules_with(cond: str) -> CompiledPolicy:
    return policy(
        f"""
        id: t
        version: 3
        tiers: [hit, miss]
        tier:
          rules:
            - tier: hit
              when: {cond}
            - tier: miss
        """
    )


def test_all_presets_load() -> None:
    assert sorted(PRESETS) == preset_names()
    for name in PRESETS:
        p = load_preset(name)
        assert p.id == name
        assert p.version >= 1
        assert set(p.routing) == set(p.tiers)
        assert all({"queue", "priority", "response_time_target_seconds"} <= set(r) for r in p.routing.values())


@pytest.mark.parametrize(
    ("cond", "features", "expected"),
    [
        ('{feature: orders_12m, op: ">", value: 5}', {"orders_12m": 6}, True),
        ('{feature: orders_12m, op: ">", value: 5}', {"orders_12m": 5}, False),
        ('{feature: orders_12m, op: ">", value: 5}', {}, False),  # missing -> false
        ('{feature: orders_12m, op: "<", value: 5}', {"orders_12m": None}, False),
        ('{feature: orders_12m, op: "!=", value: 5}', {}, False),
        ('{feature: on_time_ratio, op: "==", value: null}', {}, True),
        ('{feature: on_time_ratio, op: "!=", value: null}', {"on_time_ratio": 0.5}, True),
        ("{feature: attr.size, op: in, value: [large, medium]}", {"attr.size": "large"}, True),
        ("{feature: attr.size, op: in, value: [large, medium]}", {"attr.size": "small"}, False),
        ('{feature: attr.size, op: ">", value: 3}', {"attr.size": "large"}, False),  # incomparable -> false
        ('{feature: spend_12m, op: ">=", value: 0.3}', {"spend_12m": Decimal("0.1") + Decimal("0.2")}, True),
        ('{feature: spend_12m, op: "==", value: 100}', {"spend_12m": Decimal("100.00")}, True),
        ('{not: {feature: bad_debt, op: "==", value: true}}', {"bad_debt": False}, True),
        (
            '{any: [{feature: complaints_90d, op: ">=", value: 3}, {feature: bad_debt, op: "==", value: true}]}',
            {"complaints_90d": 3, "bad_debt": False},
            True,
        ),
        (
            '{all: [{feature: complaints_90d, op: ">=", value: 3}, {feature: bad_debt, op: "==", value: true}]}',
            {"complaints_90d": 3, "bad_debt": False},
            False,
        ),
    ],
)
def test_conditions(cond: str, features: dict, expected: bool) -> None:
    assert (rules_with(cond).evaluate(features).tier == "hit") is expected


def test_condition_text_in_explanation() -> None:
    d = rules_with(
        '{any: [{feature: complaints_90d, op: ">=", value: 3}, {not: {feature: bad_debt, op: "==", value: true}}]}'
    )
    e = d.evaluate({"complaints_90d": 4}).explanation
    assert e["matched_rule"]["when"] == "complaints_90d >= 3 or not (bad_debt == true)"
    assert (e["policy"], e["version"]) == ("t", 3)


COMBO = """
id: combo
version: 2
tiers: [diamond, gold, silver, bronze]
score: {feature: spend_12m}
tier:
  max:
    - bands:
        bands:
          - {tier: diamond, ge: 1000}
          - {tier: gold, ge: 500, lt: 1000}
          - {tier: silver, ge: 100, lt: 500}
    - grant: {feature: attr.plan, values: {platinum: diamond, premium: gold}}
adjust:
  - at_most: silver
    when: {feature: severe_complaints_90d, op: ">=", value: 2}
    reason: severe complaints
  - down: 1
    when: {feature: complaints_90d, op: ">=", value: 5}
  - at_least: silver
    when: {feature: attr.partner, op: "==", value: true}
  - quota: {tier: diamond, top_percent: 1, min_count: 1}
entitlements:
  of: score
  steps:
    - {ge: 500, lt: 1000, count: 1}
    - {ge: 1000, count: 3}
"""


def test_grant_values_and_max() -> None:
    p = policy(COMBO)
    assert p.evaluate({"spend_12m": Decimal(50), "attr.plan": "premium"}).tier == "gold"
    assert p.evaluate({"spend_12m": Decimal(600), "attr.plan": "basic"}).tier == "gold"
    assert p.evaluate({"spend_12m": Decimal(50)}).tier == "bronze"


def test_min_combinator() -> None:
    p = policy(COMBO.replace("  max:", "  min:"))
    assert p.evaluate({"spend_12m": Decimal(600), "attr.plan": "platinum"}).tier == "gold"
    assert p.evaluate({"spend_12m": Decimal(600)}).tier == "gold"  # a grant that did not match is skipped


def test_penalties_floor_and_order() -> None:
    p = policy(COMBO)
    assert p.evaluate({"spend_12m": Decimal(600), "severe_complaints_90d": 2}).tier == "silver"
    assert p.evaluate({"spend_12m": Decimal(600), "complaints_90d": 5}).tier == "silver"
    assert p.evaluate({"spend_12m": Decimal(50), "complaints_90d": 5}).tier == "bronze"  # cannot go lower
    d = p.evaluate({"spend_12m": Decimal(50), "complaints_90d": 5, "attr.partner": True})
    assert d.tier == "silver"
    assert [a["kind"] for a in d.explanation["adjustments"]] == ["down", "at_least"]


def test_entitlements_attached() -> None:
    p = policy(COMBO)
    assert p.evaluate({"spend_12m": Decimal(499)}).entitlements == 0
    assert p.evaluate({"spend_12m": Decimal(500)}).entitlements == 1
    assert p.evaluate({"spend_12m": Decimal(1000)}).entitlements == 3


def test_quota_at_most_one_percent() -> None:
    p = policy(COMBO)
    assert p.needs_population
    h = ScoreHistogram(0, 10_000, 10_000)  # 1-unit bins: integer scores rank exactly
    for i in range(200):
        h.add(i * 10)  # 0 .. 1990: allowed diamonds = 1% of 200 = 2
    pop = HistogramPopulation({"combo": h})
    assert p.evaluate({"spend_12m": Decimal(1980)}, pop).tier == "diamond"  # rank 2
    d = p.evaluate({"spend_12m": Decimal(1970)}, pop)  # rank 3
    assert d.tier == "gold"
    quota = d.explanation["adjustments"][-1]
    assert (quota["status"], quota["allowed"], quota["rank"]) == ("quota full", 2, 3.0)
    # without a population the quota is not applied, and the explanation says so
    d = p.evaluate({"spend_12m": Decimal(1970)})
    assert d.tier == "diamond"
    assert "population unavailable" in d.explanation["adjustments"][-1]["status"]


def test_quota_min_count() -> None:
    p = policy(COMBO)
    h = ScoreHistogram(0, 10_000, 10_000)
    for i in range(50):
        h.add(1000 + i)  # 1% of 50 = 0 -> at least 1
    pop = HistogramPopulation({"combo": h})
    assert p.evaluate({"spend_12m": Decimal(1049)}, pop).tier == "diamond"
    assert p.evaluate({"spend_12m": Decimal(1048)}, pop).tier == "gold"


def test_histogram_merge_and_bytes() -> None:
    a, b = ScoreHistogram(), ScoreHistogram()
    for i in range(100):
        (a if i % 2 else b).add(i + 0.5)
    merged = a.merge(b)
    assert merged.total == 100
    assert merged.to_bytes() == b.merge(a).to_bytes()
    again = ScoreHistogram.from_bytes(merged.to_bytes())
    assert again.to_bytes() == merged.to_bytes()
    assert again.count_at_or_above(90.5) == 10
    assert again.percentile_of(90.5) == 90.0
    with pytest.raises(ValueError):
        a.merge(ScoreHistogram(0, 100, 10))
    with pytest.raises(ValueError):
        ScoreHistogram.from_bytes(b"junk")


def test_histogram_accuracy_within_one_bin() -> None:
    h = ScoreHistogram(0, 100, 100)  # 1-point bins
    for i in range(1000):
        h.add(i / 10)  # 0.0 .. 99.9, 10 per bin
    # exact on bin edges
    assert h.count_at_or_above(50) == 500
    # inside a bin: interpolated, error at most one bin's count (10)
    assert abs(h.count_at_or_above(50.45) - 495) <= 10
    h.remove(99.9)
    assert h.total == 999
    assert isinstance(HistogramPopulation({}), PopulationView)


def test_window_catalogue() -> None:
    assert lookup("spend_36m").window_days == 1095  # type: ignore[union-attr]
    assert lookup("avg_monthly_spend_6m").window_days == 217  # type: ignore[union-attr]
    assert lookup("avg_monthly_spend_36m") is not None
    assert lookup("avg_monthly_spend_37m") is None
    assert lookup("avg_monthly_spend_0m") is None
    assert lookup("monthly_spend_2026-07") is not None
    assert lookup("monthly_spend_2026-13") is None
    assert lookup("attr.contract_plan").kind == "attr"  # type: ignore[union-attr]
    assert lookup("assess.growth_potential").kind == "float"  # type: ignore[union-attr]
    assert lookup("spend_lifetime").window_days == UNBOUNDED_DAYS  # type: ignore[union-attr]
    assert load_preset("size_class").max_window_days == 365


def test_decision_is_immutable_and_deterministic() -> None:
    p = load_preset("sabcd")
    f = {"spend_12m": Decimal("600000"), "orders_12m": 3}
    a, b = p.evaluate(f), p.evaluate(f)
    assert a == b
    with pytest.raises(AttributeError):
        a.tier = "S"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.id = "x"  # type: ignore[misc]


def test_yaml_file_roundtrip(tmp_path: Path) -> None:
    from scoring.policy import load_policy

    path = tmp_path / "combo.yaml"
    path.write_text(COMBO, encoding="utf-8")
    assert load_policy(path).evaluate({"spend_12m": Decimal(600)}).tier == "gold"
