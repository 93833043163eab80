"""blended_bonus (seed 003, with its worked example) and rfm (seed 004)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from scoring.policy import load_preset

BLEND = load_preset("blended_bonus")
RFM = load_preset("rfm")


def account(history: str, forecast: float | None, avg24: str = "0") -> dict[str, Any]:
    f: dict[str, Any] = {"spend_lifetime": Decimal(history), "avg_monthly_spend_24m": Decimal(avg24)}
    if forecast is not None:
        f["attr.forecast_sales"] = forecast
    return f


def test_seed_worked_example() -> None:
    # history 1.5M -> 90, forecast 4M -> 70, 2-year sales reached the threshold: (90 × 50% + 70 × 50%) × 1.05 = 84
    d = BLEND.evaluate(account("1500000", 4_000_000, "62500"))
    assert d.score == 84.0
    assert d.tier == "A"
    detail = d.explanation["score_detail"]
    assert [(p["name"], p["weight"], p["value"]) for p in detail["parts"]] == [
        ("history", 50, 90.0),
        ("forecast", 50, 70.0),
    ]
    assert detail["before_bonus"] == 80.0
    assert detail["bonus"] == [
        {
            "multiplier": 1.05,
            "when": "avg_monthly_spend_24m >= 50000",
            "reason": "cumulative sales of the last 2 years reached the threshold",
        }
    ]


@pytest.mark.parametrize(("avg24", "score"), [("49999.99", 80.0), ("50000", 84.0)])
def test_bonus_threshold_boundary(avg24: str, score: float) -> None:
    assert BLEND.evaluate(account("1500000", 4_000_000, avg24)).score == score


@pytest.mark.parametrize(
    ("history", "points"),
    [
        ("0", 50),
        ("499999.99", 50),
        ("500000", 70),
        ("999999.99", 70),
        ("1000000", 90),
        ("1999999.99", 90),
        ("2000000", 100),
    ],
)
def test_history_ladder(history: str, points: float) -> None:
    # forecast 5M -> 90 points; no bonus
    assert BLEND.evaluate(account(history, 5_000_000)).score == (points + 90) / 2


@pytest.mark.parametrize(
    ("forecast", "points"),
    [
        (0, 30),
        (999_999, 30),
        (1_000_000, 50),
        (2_999_999, 50),
        (3_000_000, 70),
        (4_999_999, 70),
        (5_000_000, 90),
        (None, 0),
    ],
)
def test_forecast_ladder(forecast: float | None, points: float) -> None:
    # history 2M -> 100 points
    assert BLEND.evaluate(account("2000000", forecast)).score == (100 + points) / 2


@pytest.mark.parametrize(
    ("history", "forecast", "score", "tier"),
    [
        ("2000000", 5_000_000, 95.0, "A"),
        ("500000", 3_000_000, 70.0, "B"),
        ("1000000", 0, 60.0, "B"),  # (90 + 30) / 2
        ("0", 3_000_000, 60.0, "B"),  # (50 + 70) / 2
        ("0", 1_000_000, 50.0, "C"),
        ("0", 0, 40.0, "C"),
        ("0", None, 25.0, "D"),  # missing forecast scores 0
    ],
)
def test_blended_bands(history: str, forecast: float | None, score: float, tier: str) -> None:
    d = BLEND.evaluate(account(history, forecast))
    assert (d.score, d.tier) == (score, tier)


def rfm(days: float | None, orders: int, spend: str) -> dict[str, Any]:
    return {"days_since_last_purchase": days, "orders_12m": orders, "spend_12m": Decimal(spend)}


def points(d: Any) -> dict[str, float]:
    detail = d.explanation["score_detail"]
    return {r[0]: r[3] for dim in detail["dimensions"] for r in dim["indicators"]}


@pytest.mark.parametrize(
    ("days", "r"),
    [(0, 5), (30, 5), (30.5, 4), (90, 4), (91, 3), (180, 3), (181, 2), (365, 2), (366, 1), (None, 0)],
)
def test_recency_ladder(days: float | None, r: float) -> None:
    assert points(RFM.evaluate(rfm(days, 0, "0")))["R"] == r


@pytest.mark.parametrize(("orders", "f"), [(0, 0), (1, 1), (2, 2), (4, 2), (5, 3), (9, 3), (10, 4), (19, 4), (20, 5)])
def test_frequency_ladder(orders: int, f: float) -> None:
    assert points(RFM.evaluate(rfm(None, orders, "0")))["F"] == f


@pytest.mark.parametrize(
    ("spend", "m"),
    [
        ("0", 0),
        ("0.01", 1),
        ("4999.99", 1),
        ("5000", 2),
        ("19999.99", 2),
        ("20000", 3),
        ("50000", 4),
        ("99999.99", 4),
        ("100000", 5),
    ],
)
def test_monetary_ladder(spend: str, m: float) -> None:
    assert points(RFM.evaluate(rfm(None, 0, spend)))["M"] == m


@pytest.mark.parametrize(
    ("features", "segment"),
    [
        (rfm(90, 10, "50000"), "champions"),  # R4 F4 M4
        (rfm(90, 10, "49999.99"), "loyal"),  # M3
        (rfm(91, 10, "100000"), "loyal"),  # R3 F4
        (rfm(91, 9, "100000"), "need_attention"),  # R3 F3
        (rfm(90, 1, "100"), "potential"),  # R4 F1
        (rfm(181, 5, "100"), "at_risk"),  # R2 F3
        (rfm(400, 5, "100"), "at_risk"),  # R1 F3
        (rfm(181, 4, "100"), "need_attention"),  # R2 F2
        (rfm(400, 1, "100"), "lost"),  # R1 F1
        (rfm(None, 0, "0"), "lost"),  # never bought
    ],
)
def test_rfm_segments(features: dict[str, Any], segment: str) -> None:
    assert RFM.evaluate(features).tier == segment


def test_rfm_total() -> None:
    # R5 F5 M5 -> 35 + 30 + 35 = 100; R4 F4 M4 -> 4/5 of each = 80
    assert RFM.evaluate(rfm(1, 20, "100000")).score == 100.0
    assert RFM.evaluate(rfm(90, 10, "50000")).score == 80.0
