"""telecom_vip and telecom_group_vip: seed 001 (China Unicom Hainan, 2022 rules), followed exactly."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from scoring.policy import load_preset

VIP = load_preset("telecom_vip")
GROUP = load_preset("telecom_group_vip")


def person(avg: str = "0", **attrs: Any) -> dict[str, Any]:
    return {"avg_monthly_spend_6m": Decimal(avg), **{f"attr.{k}": v for k, v in attrs.items()}}


@pytest.mark.parametrize(
    ("avg", "tier"),
    [
        ("0", "standard"),
        ("99.99", "standard"),
        ("100", "silver"),
        ("179.99", "silver"),
        ("180", "gold"),
        ("259.99", "gold"),
        ("260", "diamond"),
        ("1000", "diamond"),
    ],
)
def test_vip_spend_bands(avg: str, tier: str) -> None:
    d = VIP.evaluate(person(avg))
    assert d.tier == tier
    assert d.score == float(Decimal(avg))


def test_six_month_average_is_the_score() -> None:
    # e.g. monthly payments 300, 300, 300, 300, 360, 0 (a month without payments counts as 0): 1560 / 6 = 260
    assert VIP.evaluate(person(str(Decimal(1560) / 6))).tier == "diamond"
    assert VIP.max_window_days >= 6 * 31  # the 6 complete months before the current one
    assert VIP.features_used >= {"avg_monthly_spend_6m", "attr.contract_plan"}


@pytest.mark.parametrize(
    ("plan", "tier"),
    [
        (95, "standard"),
        (96, "silver"),
        (126, "silver"),
        (156, "silver"),
        (157, "standard"),
        (185, "standard"),
        (186, "gold"),
        (226, "gold"),
        (227, "standard"),
        (285, "standard"),
        (286, "diamond"),
        (586, "diamond"),
    ],
)
def test_contract_plan_grant(plan: float, tier: str) -> None:
    assert VIP.evaluate(person("0", contract_plan=plan)).tier == tier


def test_grant_and_spend_take_the_better() -> None:
    assert VIP.evaluate(person("200", contract_plan=96)).tier == "gold"  # own spend wins
    d = VIP.evaluate(person("50", contract_plan=186))  # the plan wins
    assert d.tier == "gold"
    assert d.explanation["tier_detail"]["chosen"] == "contract_plan"
    # next tier up is still explained from the spend bands
    assert d.explanation["next_tier"] == {"tier": "diamond", "threshold": 260.0, "inclusive": True, "gap": 210.0}
    assert d.explanation["keep"] is None  # gold is not held by spend


@pytest.mark.parametrize(
    ("role", "group_class", "tier"),
    [
        ("executive", "A", "diamond"),
        ("executive", "A1", "diamond"),
        ("executive", "B", "gold"),
        ("executive", "B2", "gold"),
        ("division_cadre", "C", "gold"),
        ("contact", "A", "gold"),
        ("executive", "C", "silver"),
        ("contact", "B", "silver"),
        ("contact", "C", "silver"),
        ("contact", "D", "silver"),
        ("executive", "D", "standard"),
        ("influencer", "A", "standard"),
        ("executive", None, "standard"),
    ],
)
def test_key_person_role_tier(role: str, group_class: str | None, tier: str) -> None:
    assert VIP.evaluate(person("0", key_person_role=role, group_class=group_class)).tier == tier


def test_key_person_gets_max_of_role_and_own_spend() -> None:
    assert VIP.evaluate(person("300", key_person_role="contact", group_class="D")).tier == "diamond"
    assert VIP.evaluate(person("120", key_person_role="contact", group_class="A")).tier == "gold"
    d = VIP.evaluate(person("120", key_person_role="executive", group_class="A"))
    assert d.tier == "diamond"
    assert d.explanation["matched_rule"]["name"] == "executive of an A-class group"


def test_gap_and_margin_in_money() -> None:
    d = VIP.evaluate(person("150"))
    assert d.tier == "silver"
    assert d.explanation["next_tier"] == {"tier": "gold", "threshold": 180.0, "inclusive": True, "gap": 30.0}
    assert d.explanation["keep"] == {"tier": "silver", "threshold": 100.0, "inclusive": True, "margin": 50.0}


@pytest.mark.parametrize(
    ("avg", "tier", "cards"),
    [
        ("0", "standard", 0),
        ("999.99", "standard", 0),
        ("1000", "gold", 0),
        ("2499.99", "gold", 0),
        ("2500", "diamond", 0),
        ("4999.99", "diamond", 0),
        ("5000", "supreme", 1),
        ("41999.99", "supreme", 1),
        ("42000", "supreme", 2),
        ("169999.99", "supreme", 2),
        ("170000", "supreme", 5),
        ("419999.99", "supreme", 5),
        ("420000", "supreme", 10),
        ("1000000", "supreme", 10),
    ],
)
def test_group_bands_and_cards(avg: str, tier: str, cards: int) -> None:
    d = GROUP.evaluate({"avg_monthly_spend_6m": Decimal(avg)})
    assert (d.tier, d.entitlements) == (tier, cards)
    assert d.explanation["entitlements"]["count"] == cards


def test_money_is_compared_exactly() -> None:
    # 0.1 + 0.2 style float error cannot move a customer across a threshold: Decimal thresholds
    assert GROUP.evaluate({"avg_monthly_spend_6m": Decimal("0.1") + Decimal("999.9")}).tier == "gold"
    assert GROUP.evaluate({"avg_monthly_spend_6m": Decimal("999.9999")}).tier == "standard"


def test_entitlements_none_for_policies_without_them() -> None:
    assert VIP.evaluate(person("300")).entitlements is None
