"""What an applied event touched (``CustomerState.touched``, issue 8): the parts of the state features read.

``streams.decide`` elides a policy without computing a feature when no part its features read was touched
(and no time-driven change fell due). The claim that must hold for that: a feature whose parts
(``scoring.features.feature_inputs``) an event did not touch has, at the new anchor, the value it had before
the event. It is checked on every event of realistic and of adversarial streams, for every feature; then a
few cases by hand.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.events import EVENT_ADAPTER, parse_event
from scoring.features import STATIC_FEATURES, feature_inputs
from scoring.state import (
    IN_ACTIVE,
    IN_ACTIVITY,
    IN_ALL,
    IN_ANCHOR,
    IN_FIRST,
    IN_LAST_LOGIN,
    IN_LOGINS,
    IN_ORDERS,
    IN_PAYMENTS,
    IN_PROFILE,
    CustomerState,
)
from tests.unit.scoring.test_state_invariance import random_events
from tierstream.synth import generate_events

END = datetime(2026, 1, 1, tzinfo=UTC)
NAMES = (*STATIC_FEATURES, "avg_monthly_spend_6m", "avg_monthly_spend_1m", "monthly_spend_2025-06",
         "monthly_spend_2025-12", "attr.kind", "attr.size", "assess.growth_potential", "assess.strategic_value")


def _check(events: list[Any], horizon: timedelta) -> Counter[str]:
    """Apply ``events`` one by one; after each, every feature whose parts were not touched must read as the
    state before the event read it at the new anchor. Returns how often each feature was found untouched."""
    states: dict[str, CustomerState] = {}
    untouched: Counter[str] = Counter()
    for event in events:
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState.new(event.customer_id)
        before = CustomerState.from_bytes(state.to_bytes())
        state.touched = 0
        state.apply(event, state.horizon_start(horizon, event.occurred_at))
        at = state.last_event_at
        if at is None:
            continue
        now, then = state.features(at), before.features(at)
        for name in NAMES:
            if not state.touched & feature_inputs([name]):
                untouched[name] += 1
                assert now[name] == then[name], (name, event.type, event.event_id, state.touched)
    return untouched


def test_untouched_features_keep_their_value_on_a_realistic_stream():
    events = [parse_event(orjson.dumps(e), END, timedelta(minutes=5))
              for e in generate_events(60, seed=4, start=END - timedelta(days=420), end=END)]
    untouched = _check(events, timedelta(days=400))
    # not vacuous: the common cases of elision happened many times
    assert untouched["active_days_90d"] > 500 and untouched["spend_12m"] > 1000
    assert untouched["assess.strategic_value"] > 1000 and untouched["paid_12m"] > 1000


@pytest.mark.parametrize("seed", range(6))
def test_untouched_features_keep_their_value_on_adversarial_streams(seed: int):
    # refunds and cancels before their orders, duplicates, conflicting facts, arrival out of event order,
    # and a short horizon so that orders and payments fold while the stream runs
    rng = random.Random(seed)
    raw = random_events(rng, 300)
    raw += [dict(rng.choice(raw)) for _ in range(30)]  # exact duplicates
    events = [EVENT_ADAPTER.validate_python(e) for e in raw]
    rng.shuffle(events)
    untouched = _check(events, timedelta(days=30))
    assert sum(untouched.values()) > 1000


def _login(eid: str, at: datetime) -> Any:
    return EVENT_ADAPTER.validate_python({"event_id": eid, "customer_id": "c", "occurred_at": at, "type": "login"})


def _apply(state: CustomerState, event: Any) -> int:
    state.touched = 0
    state.apply(event, state.horizon_start(timedelta(days=400), event.occurred_at))
    return state.touched


def test_what_a_login_touches_by_hand():
    day = datetime(2025, 6, 1, 9, tzinfo=UTC)
    state = CustomerState.new("c")
    assert _apply(state, _login("e1", day)) == IN_ALL  # a first event: everything is new
    # later the same day: the login counts, the newest times; not the active days
    assert _apply(state, _login("e2", day + timedelta(hours=2))) == IN_LOGINS | IN_LAST_LOGIN | IN_ANCHOR | IN_ACTIVITY
    # earlier the same day, before the first event: the login count and the first event time
    assert _apply(state, _login("e3", day - timedelta(hours=2))) == IN_LOGINS | IN_FIRST
    # in between: only the login count
    assert _apply(state, _login("e3b", day + timedelta(hours=1))) == IN_LOGINS
    assert _apply(state, _login("e3", day - timedelta(hours=2))) == 0  # a duplicate touches nothing
    # the next day: a new active day as well
    assert _apply(state, _login("e4", day + timedelta(days=1))) & IN_ACTIVE
    # a profile update touches the profile and the anchor, never activity
    profile = EVENT_ADAPTER.validate_python({"event_id": "e5", "customer_id": "c", "type": "profile",
                                             "occurred_at": day + timedelta(days=2), "assessments": {"x": 3}})
    assert _apply(state, profile) == IN_PROFILE | IN_ANCHOR


def test_a_fold_touches_the_orders():
    day = datetime(2025, 1, 1, tzinfo=UTC)
    state = CustomerState.new("c")
    order = EVENT_ADAPTER.validate_python({"event_id": "o", "customer_id": "c", "occurred_at": day, "type": "order",
                                           "order_id": "o1", "status": "placed", "amount": "10"})
    _apply(state, order)
    # a payment 200 days later (retention 100 days with this horizon): the order folds into its month
    pay = EVENT_ADAPTER.validate_python({"event_id": "p", "customer_id": "c", "occurred_at": day + timedelta(days=200),
                                         "type": "payment", "payment_id": "p1", "status": "paid", "amount": "5"})
    state.touched = 0
    state.apply(pay, state.horizon_start(timedelta(days=30), pay.occurred_at))
    assert state.touched & IN_ORDERS and state.touched & IN_PAYMENTS and not state.orders.d
