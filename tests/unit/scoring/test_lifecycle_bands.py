"""Hysteresis bands and the flip-flop count, and at-risk warnings with the margin to keep the tier.
Hand-computed: gold is entered at 80 (inclusive); with margin 2 it is kept down to 78 (inclusive)."""

from __future__ import annotations

from test_lifecycle_helpers import Driver, d, make_policy

OSCILLATING = [70, 80.5, 79.5, 80.5, 79.5, 80.5, 78.0, 77.9]


def run_days(drv: Driver, scores: list[float]) -> None:
    for day, score in enumerate(scores, start=1):
        drv.event(f"2024-01-{day:02d}", score)


def test_without_a_band_scores_around_a_line_flip_and_are_counted() -> None:
    drv = Driver(make_policy())
    run_days(drv, OSCILLATING)
    tiers = [c.to_tier for r in drv.results for c in r.changes]
    # 70 S, 80.5 G, 79.5 S, 80.5 G, 79.5 S, 80.5 G, 78 S, 77.9 (S, no change)
    assert tiers == ["silver", "gold", "silver", "gold", "silver", "gold", "silver"]
    # every change after the first two returns to the tier held just before, within 30 days
    assert drv.track.flip_flops == 5
    assert sum(r.flip_flops for r in drv.results) == 5


def test_a_band_keeps_the_tier_until_the_exit_threshold() -> None:
    drv = Driver(make_policy("hysteresis: {margin: 2}"))
    run_days(drv, OSCILLATING)
    assert drv.changes() == [
        (None, "silver", "event", d("2024-01-01")),
        ("silver", "gold", "event", d("2024-01-02")),  # entry at 80 unchanged
        ("gold", "silver", "event", d("2024-01-08")),  # 78.0 keeps gold (>= 78), 77.9 does not
    ]
    # one return to silver 6 days after leaving it (without the band: five)
    assert drv.track.flip_flops == 1
    # the scored tier stays visible while the band holds the customer
    r = drv.event("2024-01-09", 85)
    r = drv.event("2024-01-10", 79)
    assert (r.tier, r.scored_tier) == ("gold", "silver")


def test_exclusive_entry_gives_an_exclusive_exit() -> None:
    policy = make_policy("hysteresis: {margin: 2}", bands="""
      - {tier: gold, gt: 80}
      - {tier: silver, gt: 50, le: 80}
    """)
    drv = Driver(policy)
    drv.event("2024-01-01", 81)
    assert drv.event("2024-01-02", 78.01).tier == "gold"
    assert drv.event("2024-01-03", 78.0).tier == "silver"  # kept only while > 78


def test_per_tier_margins_replace_the_common_one() -> None:
    drv = Driver(make_policy("hysteresis: {margin: 2, tiers: {silver: 10}}"))
    drv.event("2024-01-01", 55)  # silver, kept down to 40
    assert drv.event("2024-01-02", 41).tier == "silver"
    assert drv.event("2024-01-03", 39.9).tier == "bronze"


def test_a_band_does_not_hold_against_an_adjustment() -> None:
    extra = """adjust:
  - force: bronze
    reason: bad debt
    when: {feature: bad_debt, op: "==", value: true}
"""
    drv = Driver(make_policy("hysteresis: {margin: 2}", extra=extra))
    drv.event("2024-01-01", 85)
    r = drv.event("2024-01-02", 79, bad_debt=True)  # the band would keep gold; the adjustment wins
    assert r.tier == "bronze"


def test_a_band_does_not_skip_tiers_downwards() -> None:
    drv = Driver(make_policy("hysteresis: {margin: 2}"))
    drv.event("2024-01-01", 85)
    assert drv.event("2024-01-02", 10).tier == "bronze"


# --------------------------------------------------------------------------------------------- at risk


def test_at_risk_warning_n_days_before_a_grace_end_with_the_margin() -> None:
    drv = Driver(make_policy("downgrade: {mode: after_grace, grace_days: 30}\nat_risk_days: 7"))
    drv.event("2024-01-01", 85)
    assert drv.event("2024-01-02", 75).at_risk == ()  # below from Jan 2: downgrade due Feb 1
    assert drv.due() == d("2024-01-25")  # the warning is the next thing time does
    r = drv.time("2024-01-25", 74)
    (w,) = r.at_risk
    assert (w.tier, w.to_tier, w.scheduled_at, w.warned_at, w.needs_approval) == (
        "gold", "silver", d("2024-02-01"), d("2024-01-25"), False)
    assert w.keep is not None
    assert (w.keep.threshold, w.keep.inclusive, w.keep.value, w.keep.gap) == (80.0, True, 74.0, 6.0)
    assert w.score == 74.0
    # once per scheduled downgrade
    assert drv.event("2024-01-26", 73).at_risk == ()
    assert drv.due() == d("2024-02-01")
    assert drv.time("2024-02-01", 73).changes[0].to_tier == "silver"


def test_at_risk_margin_uses_the_exit_threshold_of_a_band() -> None:
    drv = Driver(make_policy("downgrade: {mode: after_grace, grace_days: 30}\nat_risk_days: 7\n"
                             "hysteresis: {margin: 2}"))
    drv.event("2024-01-01", 85)
    drv.event("2024-01-02", 75)
    (w,) = drv.time("2024-01-25", 75).at_risk
    assert w.keep is not None and (w.keep.threshold, w.keep.gap) == (78.0, 3.0)


def test_at_risk_before_a_review_date_and_at_once_when_it_is_close() -> None:
    drv = Driver(make_policy("downgrade: {mode: at_review}\nat_risk_days: 14"))
    drv.event("2024-02-01", 85)
    drv.event("2024-02-10", 60)  # due Apr 1: warn Mar 18
    assert drv.due() == d("2024-03-18")
    (w,) = drv.time("2024-03-18", 60).at_risk
    assert w.scheduled_at == d("2024-04-01")
    drv.time("2024-04-01", 60)
    # silver from Apr 1; below silver on Jun 25, six days before the Jul 1 review: warned at once
    (w,) = drv.event("2024-06-25", 30).at_risk
    assert (w.tier, w.to_tier, w.warned_at, w.scheduled_at) == ("silver", "bronze", d("2024-06-25"), d("2024-07-01"))
    assert w.keep is not None and w.keep.threshold == 50.0 and w.keep.gap == 20.0


def test_recovery_then_a_new_drop_warns_again() -> None:
    drv = Driver(make_policy("downgrade: {mode: after_grace, grace_days: 10}\nat_risk_days: 3"))
    drv.event("2024-01-01", 85)
    drv.event("2024-01-02", 70)
    assert len(drv.time("2024-01-09", 70).at_risk) == 1
    drv.event("2024-01-10", 85)  # recovered
    drv.event("2024-01-11", 70)
    assert drv.due() == d("2024-01-18")
    assert len(drv.time("2024-01-18", 70).at_risk) == 1


def test_at_risk_says_when_the_downgrade_will_need_approval() -> None:
    drv = Driver(make_policy("downgrade: {mode: at_review}\nat_risk_days: 14\n"
                             "approvals: [{from: [gold], to: down, expires_after_days: 10}]"))
    drv.event("2024-02-01", 85)
    drv.event("2024-02-10", 60)
    (w,) = drv.time("2024-03-18", 60).at_risk
    assert w.needs_approval


def test_warning_only_when_a_downgrade_is_scheduled() -> None:
    drv = Driver(make_policy("downgrade: {mode: immediate, min_days_in_tier: 5}\nat_risk_days: 2"))
    drv.event("2024-01-01", 85)
    assert drv.event("2024-01-10", 60).at_risk == ()  # past the minimum: immediate, nothing to warn about
    drv.event("2024-01-11", 85)
    r = drv.event("2024-01-12", 60)  # gold since Jan 11: the downgrade waits until Jan 16, warned Jan 14
    assert r.at_risk == () and drv.due() == d("2024-01-14")
    (w,) = drv.time("2024-01-14", 60).at_risk
    assert w.scheduled_at == d("2024-01-16")


def test_at_risk_margin_from_the_outlook_when_bands_are_nested() -> None:
    # telecom_vip takes the max of spend bands, grants and roles: the decision's outlook gives the gap back
    # to the held tier. Gold (>= 180) dropped to 150 on Mar 20: downgrade at the Apr 1 review, warned Mar 25.
    from decimal import Decimal

    from scoring.lifecycle import TierTrack, due_at, on_time, step
    from scoring.policy import load_preset

    policy = load_preset("telecom_vip")
    low = policy.evaluate({"avg_monthly_spend_6m": Decimal(150)})
    high = policy.evaluate({"avg_monthly_spend_6m": Decimal(200)})
    track = step(TierTrack("c1"), policy, high, d("2024-03-03")).track
    track = step(track, policy, low, d("2024-03-20")).track
    assert track.tier == "gold" and due_at(track, policy) == d("2024-03-25")
    (w,) = on_time(track, policy, low, d("2024-03-25")).at_risk
    assert (w.to_tier, w.scheduled_at) == ("silver", d("2024-04-01"))
    assert w.keep is not None and (w.keep.threshold, w.keep.value, w.keep.gap) == (180.0, 150.0, 30.0)
