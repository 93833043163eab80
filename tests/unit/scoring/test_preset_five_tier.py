"""five_tier: seed 000 篇一. Expectations computed by hand from the seed's ladders and bands."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from scoring.policy import load_preset

P = load_preset("five_tier")


def customer(
    spend: str = "0",
    orders: int = 0,
    active: int = 0,
    years: float = 0.0,
    growth: float | None = None,
    strategic: float | None = None,
) -> dict[str, Any]:
    f: dict[str, Any] = {
        "spend_lifetime": Decimal(spend),
        "orders_12m": orders,
        "active_days_90d": active,
        "years_as_customer": years,
    }
    if growth is not None:
        f["assess.growth_potential"] = growth
    if strategic is not None:
        f["assess.strategic_value"] = strategic
    return f


def rows(decision: Any) -> dict[str, dict[str, Any]]:
    detail = decision.explanation["score_detail"]
    cols = detail["columns"]
    return {r[0]: dict(zip(cols, r, strict=True)) for d in detail["dimensions"] for r in d["indicators"]}


@pytest.mark.parametrize(
    ("spend", "points"),
    [("0", 10), ("1000000", 10), ("1000000.01", 20), ("5000000", 20), ("5000000.01", 30), ("-5", 0)],
)
def test_cumulative_spend_ladder(spend: str, points: float) -> None:
    assert rows(P.evaluate(customer(spend=spend)))["cumulative_spend"]["points"] == points


@pytest.mark.parametrize(("orders", "points"), [(0, 0), (1, 5), (2, 5), (3, 10), (5, 10), (6, 15)])
def test_purchases_last_year_ladder(orders: int, points: float) -> None:
    assert rows(P.evaluate(customer(orders=orders)))["purchases_last_year"]["points"] == points


# base 65 = spend > 5M (30) + 6 orders (15) + 30 active days (10) + 5 years (10)
# growth scale 0..10 × 15%, strategic 0..10 × 20%
@pytest.mark.parametrize(
    ("f", "score", "tier"),
    [
        (customer("6000000", 6, 30, 5, 10, 10), 100.0, "diamond"),
        (customer("6000000", 6, 30, 5, 10, 5.5), 91.0, "diamond"),  # 65 + 15 + 11
        (customer("6000000", 6, 30, 5, 10, 5.25), 90.5, "diamond"),  # > 90
        (customer("6000000", 6, 30, 5, 10, 5), 90.0, "platinum"),  # 90 is not > 90
        (customer("6000000", 6, 30, 5, 0, 5.25), 75.5, "platinum"),  # 65 + 10.5
        (customer("6000000", 6, 30, 5, 0, 5), 75.0, "gold"),  # 75 is not > 75
        (customer("100", 6, 30, 5, 10, 0.5), 61.0, "gold"),  # 10 + 15 + 10 + 10 + 15 + 1
        (customer("100", 6, 30, 5, 10, 0), 60.0, "silver"),
        (customer("100", 3, 30, 5, None, 0.25), 40.5, "silver"),  # 10 + 10 + 10 + 10 + 0.5
        (customer("100", 3, 30, 5), 40.0, "bronze"),  # 40 is bronze (<= 40)
        (customer(), 12.0, "bronze"),  # spend 0 -> 10, 0 years -> 2
    ],
)
def test_band_boundaries(f: dict[str, Any], score: float, tier: str) -> None:
    d = P.evaluate(f)
    assert d.score == score
    assert d.tier == tier


def test_missing_assessment_scores_zero_and_says_missing() -> None:
    r = rows(P.evaluate(customer("100", 3, 30, 5)))
    assert r["strategic_value"]["points"] == 0
    assert r["strategic_value"]["step"] == "missing"
    assert r["growth_potential"]["step"] == "missing"


def test_explanation_gap_and_margin() -> None:
    d = P.evaluate(customer("6000000", 6, 30, 5, 0, 5.25))  # 75.5 platinum
    e = d.explanation
    assert (e["policy"], e["version"], e["tier"], e["score"]) == ("five_tier", 1, "platinum", 75.5)
    assert e["next_tier"] == {"tier": "diamond", "threshold": 90.0, "inclusive": False, "gap": 14.5}
    assert e["keep"] == {"tier": "platinum", "threshold": 75.0, "inclusive": False, "margin": 0.5}
    assert e["thresholds_crossed"] == ["score > 75 (platinum)", "score > 60 (gold)", "score > 40 (silver)"]
    value = next(d for d in e["score_detail"]["dimensions"] if d["name"] == "value")
    assert value == {
        "name": "value",
        "weight": 45.0,
        "points": 45.0,
        "indicators": [
            ["cumulative_spend", "spend_lifetime", 6000000.0, 30.0, 30.0, 30.0, 30.0, "(5000000, inf)"],
            ["purchases_last_year", "orders_12m", 6, 15.0, 15.0, 15.0, 15.0, "(5, inf)"],
        ],
    }
    orjson.dumps(e)  # JSON-serializable


def test_policy_metadata() -> None:
    assert P.tiers == ("diamond", "platinum", "gold", "silver", "bronze")
    assert P.routing["diamond"]["queue"] == "strategic"
    assert P.routing["bronze"]["priority"] == 5
    assert not P.needs_population
