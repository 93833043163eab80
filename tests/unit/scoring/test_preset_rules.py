"""Rule-ladder presets: order_volume (seed 003), funnel (seed 003), credit_class and size_class (seed 001)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from scoring.policy import load_preset

ORDERS = load_preset("order_volume")
FUNNEL = load_preset("funnel")
CREDIT = load_preset("credit_class")
SIZE = load_preset("size_class")


@pytest.mark.parametrize(
    ("orders", "quantity", "tier"),
    [
        (6, 100_001, "A"),
        (6, 100_000, "B"),  # not over 100K
        (5, 200_000, "B"),  # not more than 5 orders
        (4, 10_001, "B"),
        (4, 10_000, "C"),  # not over 10K
        (3, 50_000, "C"),  # not more than 3 orders
        (0, 0, "C"),
    ],
)
def test_order_volume(orders: int, quantity: int, tier: str) -> None:
    d = ORDERS.evaluate({"orders_lifetime": orders, "quantity_lifetime": quantity})
    assert d.tier == tier
    assert d.score is None


def test_order_volume_cancelled_orders_do_not_count() -> None:
    # 7 orders placed, 2 fully cancelled: the features already exclude them (docs/features.md)
    assert ORDERS.evaluate({"orders_lifetime": 5, "quantity_lifetime": 150_000}).tier == "B"


def test_order_volume_explains_rule_and_next_tier() -> None:
    d = ORDERS.evaluate({"orders_lifetime": 4, "quantity_lifetime": 20_000})
    assert d.explanation["matched_rule"] == {
        "index": 1,
        "name": "more than 3 orders and over 10K units",
        "when": "orders_lifetime > 3 and quantity_lifetime > 10000",
    }
    assert d.explanation["next_tier"] == {
        "tier": "A",
        "requires": ["orders_lifetime > 5 and quantity_lifetime > 100000"],
    }


def test_order_volume_missing_features_fall_to_default() -> None:
    assert ORDERS.evaluate({}).tier == "C"


@pytest.mark.parametrize(
    ("attrs", "tier"),
    [
        ({"expected_close_days": 0}, "A"),
        ({"expected_close_days": 30}, "A"),
        ({"expected_close_days": 31}, "B"),
        ({"expected_close_days": 90}, "B"),
        ({"expected_close_days": 91}, "C"),
        ({"expected_close_days": 180}, "C"),
        ({"expected_close_days": 181}, "D"),
        ({"has_need": True}, "D"),
        ({"has_need": False}, "E"),
        ({"stage": "lost", "expected_close_days": 10}, "E"),
        ({"stage": "no_need"}, "E"),
        ({}, "E"),
        ({"expected_close_days": "soon"}, "E"),  # not a number: no comparison holds
    ],
)
def test_funnel(attrs: dict[str, Any], tier: str) -> None:
    assert FUNNEL.evaluate({f"attr.{k}": v for k, v in attrs.items()}).tier == tier


def test_funnel_follow_up_cadence() -> None:
    assert {t: FUNNEL.routing[t]["follow_up_days"] for t in FUNNEL.tiers} == {
        "A": 1,
        "B": 7,
        "C": 15,
        "D": 30,
        "E": 365,
    }


def credit(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "bad_debt": False,
        "failed_payments_90d": 0,
        "on_time_ratio": 0.98,
        "overdue_amount": Decimal("0"),
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("features", "tier"),
    [
        (credit(), "good"),
        (credit(on_time_ratio=0.95), "good"),
        (credit(on_time_ratio=0.9499), "ordinary"),
        (credit(on_time_ratio=0.7), "ordinary"),
        (credit(on_time_ratio=0.6999), "risky"),
        (credit(on_time_ratio=None), "ordinary"),
        (credit(failed_payments_90d=1), "ordinary"),
        (credit(failed_payments_90d=2), "risky"),
        (credit(overdue_amount=Decimal("0.01")), "ordinary"),
        (credit(overdue_amount=Decimal("10000")), "ordinary"),
        (credit(overdue_amount=Decimal("10000.01")), "risky"),
        (credit(bad_debt=True), "risky"),
    ],
)
def test_credit_class(features: dict[str, Any], tier: str) -> None:
    assert CREDIT.evaluate(features).tier == tier


@pytest.mark.parametrize(
    ("spend", "tier"),
    [("0", "small"), ("499999.99", "small"), ("500000", "medium"), ("5000000", "medium"), ("5000000.01", "large")],
)
def test_size_class(spend: str, tier: str) -> None:
    assert SIZE.evaluate({"spend_12m": Decimal(spend)}).tier == tier


def test_several_policies_for_one_customer() -> None:
    f = {"spend_12m": Decimal("600000"), **credit(), "orders_lifetime": 6, "quantity_lifetime": 200_000}
    decisions = [p.evaluate(f) for p in (SIZE, CREDIT, ORDERS)]
    assert [(d.policy, d.version, d.tier) for d in decisions] == [
        ("size_class", 1, "medium"),
        ("credit_class", 1, "good"),
        ("order_volume", 1, "A"),
    ]
