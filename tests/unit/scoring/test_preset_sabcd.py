"""sabcd: seed 000 篇二. Weights exactly as the seed; expectations computed by hand."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from scoring.policy import load_preset

P = load_preset("sabcd")

# All six ladder indicators at 10 points: 15 + 15 + 10 + 10 + 5 + 5 = 60.
LADDERS_MAX: dict[str, Any] = {
    "spend_36m": Decimal("3000000.01"),
    "spend_12m": Decimal("1000000.01"),
    "margin_12m": Decimal("200000.01"),
    "orders_12m": 12,
    "years_as_customer": 5.0,
    "product_lines_lifetime": 5,
}
ASSESS = (
    "referrals",
    "size_growth",
    "industry_outlook",
    "purchase_intent",
    "brand_influence",
    "new_product_willingness",
    "supply_chain_value",
)


def assess(**values: float) -> dict[str, float]:
    return {f"assess.{k}": v for k, v in values.items()}


def all_assess(v: float) -> dict[str, float]:
    return {f"assess.{k}": v for k in ASSESS}


def rows(decision: Any) -> dict[str, dict[str, Any]]:
    detail = decision.explanation["score_detail"]
    cols = detail["columns"]
    return {r[0]: dict(zip(cols, r, strict=True)) for d in detail["dimensions"] for r in d["indicators"]}


def test_weights_are_the_seeds() -> None:
    d = P.evaluate({**LADDERS_MAX, **all_assess(10)})
    dims = {x["name"]: x for x in d.explanation["score_detail"]["dimensions"]}
    assert {k: v["weight"] for k, v in dims.items()} == {
        "historical_contribution": 40,
        "activity_loyalty": 25,
        "growth_potential": 25,
        "strategic_synergy": 10,
    }
    weights = {name: r["weight"] for name, r in rows(d).items()}
    assert weights == {
        "A1_purchases_3y": 15,
        "A2_purchases_1y": 15,
        "A3_profit_contribution": 10,
        "B1_purchase_frequency": 10,
        "B2_years_as_customer": 5,
        "B3_product_lines": 5,
        "B4_referrals": 5,
        "C1_size_growth": 10,
        "C2_industry_outlook": 10,
        "C3_purchase_intent": 5,
        "D1_brand_influence": 4,
        "D2_new_product_willingness": 3,
        "D3_supply_chain_value": 3,
    }
    assert d.score == 100.0
    assert d.tier == "S"


@pytest.mark.parametrize(
    ("spend", "points"),
    [
        ("0", 2),
        ("100000", 2),
        ("100000.01", 5),
        ("500000", 5),
        ("500000.01", 8),
        ("1000000", 8),
        ("1000000.01", 10),
        ("-0.01", 0),
    ],
)
def test_a2_ladder_from_the_seed(spend: str, points: float) -> None:
    r = rows(P.evaluate({"spend_12m": Decimal(spend)}))["A2_purchases_1y"]
    assert r["points"] == points
    assert r["contribution"] == points * 15 / 10


def test_seed_example_purchases_last_year() -> None:
    # 600k last year -> 8 points, × 15% = 12 points of the total
    r = rows(P.evaluate({"spend_12m": Decimal("600000")}))["A2_purchases_1y"]
    assert (r["points"], r["contribution"], r["step"]) == (8.0, 12.0, "(500000, 1000000]")


@pytest.mark.parametrize(
    ("features", "score", "tier"),
    [
        ({**LADDERS_MAX, **all_assess(10), "assess.size_growth": 0}, 90.0, "S"),
        ({**LADDERS_MAX, **all_assess(10), "assess.size_growth": 0, "assess.industry_outlook": 9.9}, 89.9, "A"),
        ({**LADDERS_MAX, **assess(size_growth=5, industry_outlook=10)}, 75.0, "A"),
        ({**LADDERS_MAX, **assess(size_growth=4.9, industry_outlook=10)}, 74.9, "B"),
        (LADDERS_MAX, 60.0, "B"),
        # A3 at 8 points (margin 150k): 58, plus C1 1.9 -> 59.9
        ({**LADDERS_MAX, "margin_12m": Decimal("150000"), **assess(size_growth=1.9)}, 59.9, "C"),
        (all_assess(10), 40.0, "C"),  # assessments only: 5 + 10 + 10 + 5 + 4 + 3 + 3
        ({**all_assess(10), "assess.purchase_intent": 9.8}, 39.9, "D"),
        ({}, 0.0, "D"),
    ],
)
def test_band_boundaries(features: dict[str, Any], score: float, tier: str) -> None:
    d = P.evaluate(features)
    assert d.score == score
    assert d.tier == tier


@pytest.mark.parametrize(("days", "tier"), [(180.0, "S"), (180.5, "D"), (None, "S")])
def test_dormant_forced_to_d(days: float | None, tier: str) -> None:
    f = {**LADDERS_MAX, **all_assess(10), "days_since_last_activity": days}
    d = P.evaluate(f)
    assert d.tier == tier
    assert d.explanation["base_tier"] == "S"
    if tier == "D":
        assert d.explanation["adjustments"][0]["kind"] == "force"
        assert d.explanation["adjustments"][0]["reason"].startswith("dormant")
        assert d.score == 100.0  # the score is kept; only the tier is forced


def test_bad_debt_forced_to_d() -> None:
    d = P.evaluate({**LADDERS_MAX, **all_assess(10), "bad_debt": True})
    assert d.tier == "D"
    assert d.explanation["adjustments"] == [
        {"kind": "force", "when": "bad_debt == true", "reason": "bad debt", "from": "S", "to": "D"}
    ]
    assert P.evaluate({**LADDERS_MAX, **all_assess(10), "bad_debt": False}).tier == "S"


def test_missing_assessment_is_explained() -> None:
    r = rows(P.evaluate(LADDERS_MAX))
    assert r["C1_size_growth"]["points"] == 0
    assert r["C1_size_growth"]["step"] == "missing"


def test_gap_to_next_tier_and_margin() -> None:
    d = P.evaluate({**LADDERS_MAX, **assess(size_growth=4.9, industry_outlook=10)})  # 74.9 B
    assert d.explanation["next_tier"] == {"tier": "A", "threshold": 75.0, "inclusive": True, "gap": pytest.approx(0.1)}
    assert d.explanation["keep"]["margin"] == pytest.approx(14.9)
    top = P.evaluate({**LADDERS_MAX, **all_assess(10)})
    assert top.explanation["next_tier"] is None
    assert top.explanation["keep"] == {"tier": "S", "threshold": 90.0, "inclusive": True, "margin": 10.0}
