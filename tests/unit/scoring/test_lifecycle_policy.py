"""The ``lifecycle:`` section of policy files: what compiles, and bad sections refused with path and reason."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_lifecycle_helpers import FEATURE, make_policy

from scoring.policy import PolicyError, load_preset, parse_policy, preset_names
from scoring.policy.lifecycle import DEFAULT_LIFECYCLE

RULES = f"""
id: rules
version: 1
review: quarterly
tiers: [good, bad]
tier:
  rules:
    - {{tier: bad, when: {{feature: {FEATURE}, op: "<", value: 5}}}}
    - {{tier: good}}
"""


def refused(lifecycle: str, review: str | None = "quarterly") -> PolicyError:
    with pytest.raises(PolicyError) as info:
        make_policy(lifecycle, review=review)
    return info.value


def test_without_a_section_the_behaviour_is_immediate() -> None:
    lc = make_policy().lifecycle
    assert (lc.upgrade, lc.downgrade, lc.hysteresis, lc.approvals, lc.at_risk) == (
        "immediate", "immediate", False, (), None)
    assert parse_policy(RULES, "r.yaml").lifecycle == DEFAULT_LIFECYCLE


def test_a_full_section_compiles() -> None:
    lc = make_policy("""
        upgrade: at_review
        downgrade: {mode: after_grace, grace_days: 14, min_days_in_tier: 30}
        hysteresis: {margin: 2.5, tiers: {silver: 5}}
        at_risk_days: 7
        approvals:
          - {from: [gold], to: down, expires_after_days: 30}
          - {from: any, to: [gold], expires_after_days: 5}
    """).lifecycle
    assert (lc.upgrade, lc.downgrade, lc.grace, lc.min_in_tier, lc.at_risk, lc.review) == (
        "at_review", "after_grace", timedelta(days=14), timedelta(days=30), timedelta(days=7), "quarterly")
    assert lc.keep_threshold(0) == (77.5, True) and lc.keep_threshold(1) == (45.0, True)
    assert lc.keep_threshold(2) is None
    assert lc.approval_for(0, 2).index == 0 and lc.approval_for(2, 0).index == 1
    assert lc.approval_for(2, 1) is None


@pytest.mark.parametrize(
    ("lifecycle", "review", "path", "reason"),
    [
        ("downgrade: {mode: at_review}", None, "lifecycle.downgrade.mode",
         "mode 'at_review' needs the policy's 'review' period (monthly, quarterly, half_yearly or yearly)"),
        ("downgrade: {mode: one_step}", None, "lifecycle.downgrade.mode", "mode 'one_step' needs the policy's"),
        ("upgrade: at_review", None, "lifecycle.upgrade", "upgrade 'at_review' needs the policy's 'review'"),
        ("upgrade: later", "quarterly", "lifecycle.upgrade", "Input should be 'immediate' or 'at_review'"),
        ("downgrade: {mode: after_grace}", "quarterly", "lifecycle.downgrade", "mode 'after_grace' needs 'grace_days'"),
        ("downgrade: {mode: immediate, grace_days: 3}", "quarterly", "lifecycle.downgrade",
         "'grace_days' only applies to mode 'after_grace'"),
        ("downgrade: {mode: after_grace, grace_days: 0}", "quarterly", "lifecycle.downgrade.grace_days",
         "greater than or equal to 1"),
        ("downgrade: {mode: after_grace, grace: 3}", "quarterly", "lifecycle.downgrade.grace", "unknown key 'grace'"),
        ("at_risk_days: 7", "quarterly", "lifecycle.at_risk_days", "at-risk warnings need a scheduled downgrade"),
        ("hysteresis: {margin: 0}", "quarterly", "lifecycle.hysteresis", "give a positive 'margin'"),
        ("hysteresis: {margin: -1}", "quarterly", "lifecycle.hysteresis.margin", "greater than or equal to 0"),
        # gold's exit 80 - 30 = 50 would reach silver's entry: the band would swallow silver
        ("hysteresis: {margin: 30}", "quarterly", "lifecycle.hysteresis.margin",
         "exit threshold 50 of tier 'gold' (80 - 30) is not above the entry threshold 50 of the next band down"),
        ("hysteresis: {tiers: {gold: 40}}", "quarterly", "lifecycle.hysteresis.tiers.gold", "exit threshold 40"),
        ("hysteresis: {tiers: {platinum: 1}}", "quarterly", "lifecycle.hysteresis.tiers.platinum",
         "unknown tier 'platinum'; the policy's tiers are gold, silver, bronze"),
        ("hysteresis: {tiers: {bronze: 1}}", "quarterly", "lifecycle.hysteresis.tiers.bronze",
         "tier 'bronze' has no band with a lower bound"),
        ("approvals: [{from: [gold, platinum], to: down, expires_after_days: 3}]", "quarterly",
         "lifecycle.approvals[0].from[1]", "unknown tier 'platinum'"),
        ("approvals: [{from: [gold], to: sideways, expires_after_days: 3}]", "quarterly", "lifecycle.approvals[0].to",
         "a list of tiers or one of 'down', 'up', 'any' (got 'sideways')"),
        ("approvals: [{from: all, to: down, expires_after_days: 3}]", "quarterly", "lifecycle.approvals[0].from",
         "a list of tiers or one of 'any' (got 'all')"),
        ("approvals: [{from: [gold], to: down}]", "quarterly", "lifecycle.approvals[0].expires_after_days",
         "required key is missing"),
        ("approvals: [{from: [], to: down, expires_after_days: 3}]", "quarterly", "lifecycle.approvals[0]",
         "'from' needs at least one tier"),
        ("approvals: [{from: [bronze], to: down, expires_after_days: 3}]", "quarterly", "lifecycle.approvals[0]",
         "this rule matches no transition between the policy's tiers"),
        ("review: monthly", "quarterly", "lifecycle.review", "unknown key 'review'"),
    ],
)
def test_bad_sections_are_refused_with_path_and_reason(lifecycle: str, review: str | None, path: str,
                                                       reason: str) -> None:
    err = refused(lifecycle, review)
    assert err.file == "demo.yaml"
    assert err.path == path
    assert reason in err.reason, err.reason


@pytest.mark.parametrize(
    ("tier", "kind"),
    [
        ("rules:\n    - {tier: good}", "rules"),
        ("percentile: {bands: [{tier: good, top_percent: 10}]}", "percentile"),
        ("max:\n    - fixed: good\n    - fixed: bad", "max"),
    ],
)
def test_hysteresis_is_refused_without_bands(tier: str, kind: str) -> None:
    text = f"""
id: x
version: 1
tiers: [good, bad]
score: {{feature: {FEATURE}}}
tier:
  {tier}
lifecycle:
  hysteresis: {{margin: 1}}
"""
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "x.yaml")
    assert info.value.path == "lifecycle.hysteresis"
    assert info.value.reason.startswith(f"hysteresis needs a policy whose 'tier' is 'bands' (this one uses {kind!r})")


def test_every_preset_still_loads() -> None:
    assert len(preset_names()) == 11
    for name in preset_names():
        load_preset(name)


def test_preset_lifecycles_follow_the_seeds() -> None:
    five = load_preset("five_tier").lifecycle
    assert (five.downgrade, five.review, five.hysteresis, five.at_risk) == (
        "one_step", "quarterly", True, timedelta(days=14))
    assert five.approval_for(1, 2) is not None and five.approval_for(2, 3) is None  # top two tiers only
    sabcd = load_preset("sabcd").lifecycle
    assert (sabcd.downgrade, sabcd.review) == ("at_review", "quarterly")
    pyramid = load_preset("pyramid").lifecycle
    assert pyramid.approval_for(0, 1) is not None and pyramid.approval_for(1, 2) is None  # leaving VVIP
    assert (pyramid.downgrade, pyramid.review) == ("at_review", "half_yearly")
    telecom = load_preset("telecom_vip").lifecycle
    assert (telecom.upgrade, telecom.downgrade, telecom.review) == ("immediate", "at_review", "monthly")
    assert load_preset("credit_class").lifecycle == DEFAULT_LIFECYCLE  # risky must show at once
