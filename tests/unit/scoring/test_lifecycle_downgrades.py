"""Upgrade and downgrade modes, minimum time in tier: hand-built timelines (gold >= 80, silver [50, 80),
bronze below; the score is the number given; quarterly reviews on Jan/Apr/Jul/Oct 1 UTC)."""

from __future__ import annotations

from test_lifecycle_helpers import Driver, d, make_policy


def test_default_is_immediate_up_and_down() -> None:
    drv = Driver(make_policy())
    first = drv.event("2024-01-10", 60)
    assert [(c.from_tier, c.to_tier, c.direction, c.sequence, c.event_id) for c in first.changes] == [
        (None, "silver", "new", 1, "e1")]
    drv.event("2024-01-11", 61)  # same tier: nothing
    drv.event("2024-01-12", 85)
    drv.event("2024-01-13", 20, cause="correction")
    assert drv.changes() == [
        (None, "silver", "event", d("2024-01-10")),
        ("silver", "gold", "event", d("2024-01-12")),
        ("gold", "bronze", "correction", d("2024-01-13")),
    ]
    assert [c.sequence for r in drv.results for c in r.changes] == [1, 2, 3]
    assert drv.due() is None  # nothing waits on time


def test_first_assignment_is_immediate_whatever_the_mode() -> None:
    drv = Driver(make_policy("downgrade: {mode: at_review}\nupgrade: at_review"))
    r = drv.event("2024-02-10", 30)
    assert r.tier == "bronze" and r.changes[0].direction == "new"


def test_min_days_in_tier_delays_a_downgrade() -> None:
    drv = Driver(make_policy("downgrade: {mode: immediate, min_days_in_tier: 10}"))
    drv.event("2024-01-01", 85)  # gold since Jan 1
    r = drv.event("2024-01-04", 60)
    assert r.changes == () and r.tier == "gold" and r.scored_tier == "silver"
    assert drv.due() == d("2024-01-11")
    r = drv.time("2024-01-11", 60)
    assert [(c.to_tier, c.cause, c.effective_at, c.event_id) for c in r.changes] == [
        ("silver", "decay", d("2024-01-11"), None)]
    # after ten days in a tier a downgrade is immediate again
    drv.event("2024-01-30", 30)
    assert drv.track.tier == "bronze"


def test_min_days_in_tier_never_delays_an_upgrade_and_recovery_cancels() -> None:
    drv = Driver(make_policy("downgrade: {mode: immediate, min_days_in_tier: 10}"))
    drv.event("2024-01-01", 60)  # silver
    assert drv.event("2024-01-02", 90).tier == "gold"  # upgrade at once
    drv.event("2024-01-03", 60)  # below, waits until Jan 12
    drv.event("2024-01-05", 81)  # back: the pending downgrade is gone
    assert drv.due() is None
    assert drv.time("2024-01-12", 81).changes == ()


def test_after_grace_downgrades_after_n_days_continuously_below() -> None:
    drv = Driver(make_policy("downgrade: {mode: after_grace, grace_days: 7}"))
    drv.event("2024-03-01", 85)
    drv.event("2024-03-02", 70)  # below gold from Mar 2
    assert drv.due() == d("2024-03-09")
    assert drv.event("2024-03-05", 65).changes == ()  # still below: the clock keeps running from Mar 2
    assert drv.due() == d("2024-03-09")
    r = drv.time("2024-03-09", 65)
    assert [(c.from_tier, c.to_tier, c.cause, c.effective_at) for c in r.changes] == [
        ("gold", "silver", "decay", d("2024-03-09"))]


def test_after_grace_recovery_inside_the_grace_resets_it() -> None:
    drv = Driver(make_policy("downgrade: {mode: after_grace, grace_days: 7}"))
    drv.event("2024-03-01", 85)
    drv.event("2024-03-02", 70)  # below: due Mar 9
    drv.event("2024-03-05", 80)  # back at gold's threshold (inclusive): reset
    assert drv.due() is None
    drv.event("2024-03-06", 70)  # below again: a fresh 7 days
    assert drv.due() == d("2024-03-13")
    assert drv.time("2024-03-09", 70).changes == ()
    assert drv.time("2024-03-13", 70).changes[0].effective_at == d("2024-03-13")


def test_after_grace_with_a_missed_timer_applies_at_the_grace_end() -> None:
    drv = Driver(make_policy("downgrade: {mode: after_grace, grace_days: 7}"))
    drv.event("2024-03-01", 85)
    drv.event("2024-03-02", 70)
    # no timer fired; the next event comes long after the grace ended and scores bronze
    r = drv.event("2024-03-20", 30)
    assert [(c.to_tier, c.cause, c.effective_at) for c in r.changes] == [("silver", "decay", d("2024-03-09"))]
    # from silver, bronze is a new downgrade with its own grace
    assert r.tier == "silver" and drv.due() == d("2024-03-27")


def test_after_grace_goes_to_the_tier_scored_at_the_end() -> None:
    drv = Driver(make_policy("downgrade: {mode: after_grace, grace_days: 7}"))
    drv.event("2024-03-01", 85)
    drv.event("2024-03-02", 70)
    drv.event("2024-03-04", 20)  # further down; still one continuous stretch below gold
    assert drv.time("2024-03-09", 20).changes[0].to_tier == "bronze"


def test_at_review_waits_for_the_exact_review_date() -> None:
    drv = Driver(make_policy("downgrade: {mode: at_review}"))
    drv.event("2024-02-01", 85)
    drv.event("2024-03-15", 60)
    assert drv.due() == d("2024-04-01")
    assert drv.event("2024-03-31T23:59:59", 60).changes == ()
    r = drv.time("2024-04-01", 60)
    assert [(c.to_tier, c.cause, c.effective_at, c.event_id) for c in r.changes] == [
        ("silver", "review", d("2024-04-01"), None)]
    assert drv.track.last_review == d("2024-04-01")


def test_at_review_a_decision_exactly_on_the_boundary_is_the_review() -> None:
    drv = Driver(make_policy("downgrade: {mode: at_review}"))
    drv.event("2024-02-01", 85)
    r = drv.event("2024-04-01T00:00:00", 60)
    assert [(c.to_tier, c.cause, c.effective_at) for c in r.changes] == [("silver", "review", d("2024-04-01"))]
    # one second after the boundary: the next review is a quarter away
    drv.event("2024-04-01T00:00:01", 20)
    assert drv.track.tier == "silver" and drv.due() == d("2024-07-01")


def test_at_review_upgrades_stay_immediate_and_recovery_cancels() -> None:
    drv = Driver(make_policy("downgrade: {mode: at_review}"))
    drv.event("2024-02-01", 60)
    assert drv.event("2024-02-02", 90).tier == "gold"
    drv.event("2024-02-03", 60)
    drv.event("2024-03-30", 85)  # recovered before the review
    assert drv.due() is None
    assert drv.time("2024-04-01", 85).changes == ()


def test_at_review_with_a_missed_timer_applies_at_the_review_date() -> None:
    drv = Driver(make_policy("downgrade: {mode: at_review}"))
    drv.event("2024-02-01", 85)
    drv.event("2024-03-15", 60)
    r = drv.event("2024-05-20", 60)
    assert [(c.to_tier, c.cause, c.effective_at) for c in r.changes] == [("silver", "review", d("2024-04-01"))]


def test_upgrade_at_review() -> None:
    drv = Driver(make_policy("upgrade: at_review"))
    drv.event("2024-05-01", 60)
    assert drv.event("2024-05-10", 90).changes == ()
    assert drv.track.pending is not None and drv.due() == d("2024-07-01")
    r = drv.time("2024-07-01", 90)
    assert [(c.to_tier, c.direction, c.cause) for c in r.changes] == [("gold", "up", "review")]
    assert drv.event("2024-07-02", 20).tier == "bronze"  # downgrades stay immediate


def test_one_step_moves_at_most_one_tier_per_review() -> None:
    drv = Driver(make_policy("downgrade: {mode: one_step}"))
    drv.event("2024-02-01", 85)
    drv.event("2024-02-10", 20)  # scores bronze: two tiers down
    assert drv.due() == d("2024-04-01")
    r = drv.time("2024-04-01", 20)
    assert [(c.from_tier, c.to_tier, c.cause) for c in r.changes] == [("gold", "silver", "review")]
    # another decision at the same review instant does not step again
    assert drv.event("2024-04-01", 20).changes == ()
    assert drv.due() == d("2024-07-01")
    r = drv.time("2024-07-01", 20)
    assert [(c.from_tier, c.to_tier, c.effective_at) for c in r.changes] == [("silver", "bronze", d("2024-07-01"))]
    assert drv.due() is None


def test_one_step_with_missed_timers_steps_once_per_review_date() -> None:
    drv = Driver(make_policy("downgrade: {mode: one_step}"))
    drv.event("2024-02-01", 85)
    drv.event("2024-02-10", 20)
    r = drv.event("2024-08-15", 20)
    assert [(c.to_tier, c.effective_at) for c in r.changes] == [
        ("silver", d("2024-04-01")), ("bronze", d("2024-07-01"))]


def test_one_step_stops_where_the_score_is() -> None:
    drv = Driver(make_policy("downgrade: {mode: one_step}"))
    drv.event("2024-02-01", 85)
    drv.event("2024-02-10", 60)  # silver: one step is the whole way
    drv.time("2024-04-01", 60)
    assert drv.track.tier == "silver" and drv.track.pending is None


def test_review_mode_with_min_days_waits_for_the_first_review_after_them() -> None:
    drv = Driver(make_policy("downgrade: {mode: at_review, min_days_in_tier: 30}"))
    drv.event("2024-03-20", 85)  # gold from Mar 20: no downgrade before Apr 19
    drv.event("2024-03-25", 60)
    assert drv.due() == d("2024-07-01")
