"""The scoring hot path's shortcuts give exactly what the plain code gives (issue 8 optimizations).

- ``next_change`` limited to the *sources* of the features read never skips a change of those features;
- ``step`` shortcut (nothing scheduled, decision at the held tier) = the general path;
- ``TierTrack`` clone / to_dict / from_dict (positional construction, memoized ISO formatting) round-trip
  and keep each datetime's own UTC offset;
- ``add_months`` fast path = the clamping computation.
"""

from __future__ import annotations

import calendar
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from test_lifecycle_helpers import FEATURE, make_policy

from schemas.events import EVENT_ADAPTER
from scoring.buckets import add_months
from scoring.features import ALL_SOURCES, SOURCE_FEATURES, time_sources
from scoring.lifecycle import Override, Pending, Proposal, TierTrack, step, step_owned
from scoring.lifecycle.machine import Run
from scoring.policy import Decision, load_policies, preset_names
from scoring.state import CustomerState
from tierstream.synth import generate_events

END = datetime(2026, 1, 1, tzinfo=UTC)


def _states(customers: int = 60, days: int = 400) -> dict[str, CustomerState]:
    """Folded states of a synthetic load long enough that every window has entries leaving it."""
    states: dict[str, CustomerState] = {}
    for raw in generate_events(customers, seed=3, start=END - timedelta(days=days), end=END):
        try:
            event = EVENT_ADAPTER.validate_python(raw)
        except ValueError:
            continue  # the generator's invalid share
        state = states.setdefault(event.customer_id, CustomerState.new(event.customer_id))
        state.apply(event, state.horizon_start(timedelta(days=1100), event.occurred_at))
    return states


def _values(state: CustomerState, at: datetime, names: list[str]) -> list:
    view = CustomerState.from_bytes(state.to_bytes()).features(at)  # a fresh view: nothing cached
    return [view.get(n) for n in names]


# ---------------------------------------------------------------------------------------------- next_change
def test_time_sources_of_the_presets():
    five = load_policies(["five_tier"])[0]
    assert time_sources(five.features_used) == {"order_enter", "order_12m", "active_90d", "anniversary"}
    assert time_sources(["attr.kind", "assess.x", "monthly_spend_2025-01", "bad_debt"]) == frozenset()
    assert time_sources(["avg_monthly_spend_6m"]) == {"month_turn"}
    assert time_sources(["no_such_feature"]) == ALL_SOURCES  # unknown: conservative


@pytest.mark.parametrize("preset", preset_names())
def test_next_change_of_the_features_read_skips_no_change_of_them(preset):
    """Between now and the restricted next change, at every instant where *any* feature changes, the
    features the policy reads (but the continuous days_since_*) still have their values at now. ``now`` is
    at or after the customer's newest event, as in the stream (decisions are at the newest event time or
    at a later due time; next_change does not schedule entries of items newer than ``now``)."""
    policy = load_policies([preset])[0]
    sources = time_sources(policy.features_used)
    names = sorted(n for n in policy.features_used if not n.startswith("days_since_"))
    checked = 0
    for state in list(_states().values())[:25]:
        newest = state.last_event_at
        assert newest is not None
        for now in (newest, newest + timedelta(days=17, hours=5), newest + timedelta(days=200)):
            until = state.next_change_at(now, sources)
            full = state.next_change_at(now)
            assert (until is None) or (full is not None and until >= full)
            base = _values(state, now, names)
            t = now
            for _ in range(40):  # every change instant of any feature before the restricted one
                t = state.next_change_at(t)
                if t is None or (until is not None and t >= until):
                    break
                assert _values(state, t, names) == base, (preset, state.customer_id, now, t)
                checked += 1
    assert checked or not sources  # the filter had something to skip (or nothing moves with time)


def test_next_change_with_every_source_is_the_unrestricted_one():
    for state in list(_states(30).values()):
        for now in (END - timedelta(days=90), END):
            assert state.next_change_at(now) == state.next_change_at(now, ALL_SOURCES)
    assert set(SOURCE_FEATURES) == ALL_SOURCES


# ---------------------------------------------------------------------------------------------- step shortcut
def _general(track: TierTrack, policy, decision: Decision, at: datetime):
    """The general path of scoring.lifecycle.engine._step (without the shortcut), on a copy of ``track``."""
    run = Run(track, policy, at, "event", "e1")
    run.reconcile()
    run.advance(run.at, inclusive=False)
    if run.t.held is None:
        run.first(decision)
    else:
        run.observe(decision)
    run.advance(run.at, inclusive=True)
    return run.result()


@pytest.mark.parametrize("lifecycle", [
    "",
    "hysteresis: {margin: 5}\ndowngrade: {mode: after_grace, grace_days: 30}\nat_risk_days: 10",
    "upgrade: at_review\ndowngrade: {mode: one_step}",
    "downgrade: {mode: immediate, min_days_in_tier: 20}",
])
def test_step_shortcut_equals_the_general_path(lifecycle):
    policy = make_policy(lifecycle)
    rng = random.Random(7)
    at = datetime(2025, 1, 1, tzinfo=UTC)
    track = TierTrack("c1")
    for _ in range(300):
        at += timedelta(days=rng.choice([0, 1, 3, 10, 40]), seconds=rng.randint(0, 9))
        value = rng.choice([20.0, 49.0, 50.0, 52.0, 79.0, 80.0, 83.0, 95.0])
        decision = policy.evaluate({FEATURE: value})
        expected = _general(track, policy, decision, at)
        for fn in (step, step_owned):
            got = fn(track.clone(), policy, decision, at, "event", "e1")
            assert got == expected
        track = expected.track


# ---------------------------------------------------------------------------------------------- TierTrack
def test_track_clone_and_round_trip_keep_everything_and_each_offset():
    utc8 = timezone(timedelta(hours=8))
    instant = datetime(2025, 3, 1, 8, tzinfo=utc8)
    same_instant_utc = instant.astimezone(UTC)
    track = TierTrack(
        "c1", tier="gold", since=same_instant_utc, seq=3, held="silver", held_since=instant, scored="gold",
        score=81.5, keep=(80.0, True, 81.5),
        pending=Pending("down", "bronze", same_instant_utc, instant, "grace", True, "bronze"),
        proposal=Proposal("p-1", "silver", "gold", instant, same_instant_utc, "event", "e9", 0),
        override=Override("floor", "silver", "ops", "vip", instant, None, "cmd-1"),
        last_review=same_instant_utc, at=instant, flip_flops=1, proposals=2,
        ledger=[(same_instant_utc, "silver", 2, "event"), (instant, "gold", 3, "decay")], commands=["cmd-1"],
    )
    clone = track.clone()
    assert clone == track and clone.pending is not track.pending and clone.ledger is not track.ledger
    d = track.to_dict()
    # the UTC instant was formatted (and memoized) first: the equal +08:00 datetime keeps its own offset
    assert d["s"] == "2025-03-01T00:00:00+00:00" and d["hs"] == "2025-03-01T08:00:00+08:00"
    assert d["l"][1][0] == "2025-03-01T08:00:00+08:00"
    back = TierTrack.from_dict(d)
    assert back == track and back.to_dict() == d
    assert list(d) == ["c", "q", "ff", "np", "t", "s", "h", "hs", "sc", "sv", "lr", "at", "k", "p", "pr", "o", "l",
                       "cm"]


# ---------------------------------------------------------------------------------------------- add_months
def _add_months_reference(ts: datetime, months: int) -> datetime:
    index = ts.year * 12 + ts.month - 1 + months
    year, m0 = divmod(index, 12)
    return ts.replace(year=year, month=m0 + 1, day=min(ts.day, calendar.monthrange(year, m0 + 1)[1]))


def test_add_months_equals_the_clamping_computation():
    start = datetime(2023, 1, 1, 13, 7, tzinfo=UTC)
    for day in range(0, 3 * 366, 5):
        ts = start + timedelta(days=day)
        for months in (0, 1, 2, 11, 12, 13, 25):
            assert add_months(ts, months) == _add_months_reference(ts, months)


# ---------------------------------------------------------------------------------------------- DayRecords
def test_day_records_evict_without_decoding_equals_evict_after_decoding():
    from scoring.dedup import DayRecords

    full = DayRecords(4)
    for day in (100, 100, 101, 105, 130):
        full.add(day, bytes([day % 256, 1, 2, 3]))
    text = full.encode()
    for floor in (0, 100, 101, 102, 131, 200):
        lazy, eager = DayRecords(4, text), DayRecords(4, text)
        eager.raw  # noqa: B018 -- decoded first: the path that always existed
        lazy.evict(floor)
        eager.evict(floor)
        assert lazy.encode() == eager.encode() and lazy.first_day() == eager.first_day()
