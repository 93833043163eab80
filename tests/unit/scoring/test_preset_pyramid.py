"""pyramid (seed 000 篇三): percentile bands over a merged population histogram."""

from __future__ import annotations

from typing import Any

import pytest

from scoring.policy import HistogramPopulation, ScoreHistogram, load_preset

P = load_preset("pyramid")


def population() -> HistogramPopulation:
    # 100 customers scoring 0.5, 1.0, ..., 50.0 (multiples of the 0.1 bin width: ranks are exact)
    h = ScoreHistogram(0, 100, 1000)
    for i in range(1, 101):
        h.add(i * 0.5)
    return HistogramPopulation({"pyramid": h})


def assess(**values: float) -> dict[str, Any]:
    return {f"assess.{k}": v for k, v in values.items()}


POTENTIAL_FULL = assess(business_scale=10, demand_growth=10, new_business_willingness=10, strategic_fit=10)  # 25


@pytest.mark.parametrize(
    ("features", "score", "tier"),
    [
        # 25 + SP1 10 (3) + SP2 10 (2.5) = 30.5: 40 customers score >= 30.5 -> top 40% -> key_account
        ({**POTENTIAL_FULL, **assess(industry_influence=10, co_marketing=10)}, 30.5, "key_account"),
        # 25 + 3 + SP2 8 (2.0) = 30.0: 41 customers >= 30 -> 41% -> general
        ({**POTENTIAL_FULL, **assess(industry_influence=10, co_marketing=8)}, 30.0, "general"),
        # 25 + strategic 10 + LE4 10 (3.75) + LE5 5.5 (2.75) = 41.5: 41.5 .. 50.0 = 18 customers -> 18%
        (
            {
                **POTENTIAL_FULL,
                **assess(
                    industry_influence=10,
                    co_marketing=10,
                    innovation_feedback=10,
                    resource_access=10,
                    engagement=10,
                    referrals=5.5,
                ),
            },
            41.5,
            "key_account",
        ),
        # ... LE5 10 (5) = 43.75 -> customers >= 43.75: 44.0..50.0 = 13 -> 13% -> VIP
        (
            {
                **POTENTIAL_FULL,
                **assess(
                    industry_influence=10,
                    co_marketing=10,
                    innovation_feedback=10,
                    resource_access=10,
                    engagement=10,
                    referrals=10,
                ),
            },
            43.75,
            "VIP",
        ),
    ],
)
def test_percentile_bands(features: dict[str, Any], score: float, tier: str) -> None:
    d = P.evaluate(features, population())
    assert d.score == score
    assert d.tier == tier


def test_vvip_needs_strong_economic_and_strategic() -> None:
    h = ScoreHistogram(0, 100, 1000)
    for i in range(1, 101):
        h.add(i * 0.4)  # 0.4 .. 40.0
    pop = HistogramPopulation({"pyramid": h})
    f = {
        **POTENTIAL_FULL,
        **assess(
            industry_influence=10,
            co_marketing=10,
            innovation_feedback=10,
            resource_access=10,
            engagement=10,
            referrals=10,
        ),
    }  # 43.75: top 1% by rank, but economic is 0
    d = P.evaluate(f, pop)
    assert d.explanation["base_tier"] == "VVIP"
    assert d.tier == "VIP"
    assert d.explanation["adjustments"][0]["kind"] == "at_most"


def test_vvip_with_strong_dimensions() -> None:
    full: dict[str, Any] = {
        "spend_12m": 2_000_000,
        "margin_12m": 300_000,
        "spend_lifetime": 9_000_000,
        "on_time_ratio": 1.0,
        "years_as_customer": 8.0,
        "repurchase": True,
        "product_lines_lifetime": 6,
        **POTENTIAL_FULL,
        **assess(
            industry_influence=10,
            co_marketing=10,
            innovation_feedback=10,
            resource_access=10,
            engagement=10,
            referrals=10,
        ),
    }
    d = P.evaluate(full, population())
    assert d.score == 100.0
    assert d.tier == "VVIP"
    # nobody in the population (0.5 .. 50) scores >= 100: rank 0%, the very top
    assert d.explanation["tier_detail"]["rank_percent"] == 0.0


def test_executive_designation_wins() -> None:
    d = P.evaluate({"attr.executive_designation": "VVIP"}, population())
    assert d.tier == "VVIP"
    assert d.explanation["adjustments"][-1]["reason"] == "designated VVIP by an executive"


def test_without_population_the_default_tier_is_explained() -> None:
    assert P.needs_population
    d = P.evaluate(POTENTIAL_FULL)
    assert d.tier == "general"
    assert d.explanation["tier_detail"]["status"] == "population unavailable"


def test_rank_outlook() -> None:
    d = P.evaluate({**POTENTIAL_FULL, **assess(industry_influence=10, co_marketing=10)}, population())
    assert d.explanation["next_tier"] == {"tier": "VIP", "top_percent": 15, "rank_percent": 40.0, "gap_percent": 25.0}
    assert d.explanation["keep"] == {"tier": "key_account", "top_percent": 40, "margin_percent": 0.0}
