"""Round trip through bytes, tiers untouched, bounded size, next_change_at correctness."""

import random
from datetime import UTC, datetime, timedelta

from schemas.events import EVENT_ADAPTER
from scoring.state import CustomerState

T0 = datetime(2016, 1, 1, tzinfo=UTC)
H = timedelta(days=365)


def ev(**kw):
    kw.setdefault("customer_id", "c1")
    return EVENT_ADAPTER.validate_python(kw)


def heavy_customer(n: int) -> CustomerState:
    """n events over ten years, mostly logins, weekly orders, monthly payments: in (roughly) time order."""
    rng = random.Random(1)
    s = CustomerState.new("c1")
    span = 10 * 365 * 86400
    for i in range(n):
        at = T0 + timedelta(seconds=span * i // n + rng.randrange(0, 3600))
        r = i % 20
        if r < 14:
            e = ev(type="login", event_id=f"l{i}", occurred_at=at)
        elif r < 17:
            e = ev(type="order", event_id=f"o{i}", occurred_at=at, order_id=f"o{i}", status="placed",
                   amount="123.45", quantity=2, product_line=f"pl{i % 7}", margin="20.1")
        elif r < 19:
            e = ev(type="payment", event_id=f"p{i}", occurred_at=at, payment_id=f"p{i}", status="paid",
                   amount="99.9", due_at=at)
        else:
            e = ev(type="ticket", event_id=f"t{i}", occurred_at=at, ticket_id=f"t{i // 40}",
                   action="opened" if i % 40 < 20 else "closed", category="inquiry",
                   **({"satisfaction": 4} if i % 40 >= 20 else {}))
        s.apply(e, s.horizon_start(H, e.occurred_at))
    return s


def test_round_trip_is_byte_exact_and_keeps_tiers():
    s = heavy_customer(600)
    s.tiers = {"five_tier": {"tier": "Gold", "score": 71.5, "since": "2026-01-01T00:00:00+00:00", "sequence": 3}}
    data = s.to_bytes()
    back = CustomerState.from_bytes(data)
    assert back.to_bytes() == data
    assert back.tiers == s.tiers and back.version == s.version and back.last_event_at == s.last_event_at
    now = s.last_event_at
    assert dict(back.features(now)) == dict(s.features(now))


def test_empty_state_round_trip():
    s = CustomerState.new("x")
    assert CustomerState.from_bytes(s.to_bytes()).to_bytes() == s.to_bytes()
    assert s.next_change_at(T0) is None and s.features(T0)["spend_lifetime"] == 0


def test_size_stays_bounded_with_10000_events():
    s = heavy_customer(10_000)
    size = len(s.to_bytes())
    # a heavy customer (1,000 events a year): one horizon of orders/payments + 90 days of logins
    assert size <= 20_000, size
    assert size == len(heavy_customer(10_000).to_bytes())
    assert len(heavy_customer(20_000).to_bytes()) <= 2.2 * size  # grows with the rate, not the count


def test_next_change_at_is_when_features_change():
    s = CustomerState.new("c1")
    t = datetime(2026, 3, 10, 8, 30, tzinfo=UTC)
    for e in (
        ev(type="order", event_id="o", occurred_at=t, order_id="o", status="placed", amount="10"),
        ev(type="login", event_id="l", occurred_at=t),
    ):
        s.apply(e, s.horizon_start(H, e.occurred_at))
    now = t
    seen = []
    for _ in range(8):
        nxt = s.next_change_at(now)
        assert nxt is not None and nxt > now
        before = dict(s.features(nxt - timedelta(seconds=1)))
        after = dict(s.features(nxt))
        changed = {k for k in before if before[k] != after[k] and not k.startswith("days_since")}
        assert changed, nxt
        seen.append((nxt, sorted(changed)))
        now = nxt
    # the first change: month turn (months_as_customer is 0 until 2026-04-10, month averages shift on 04-01)
    assert seen[0][0] == datetime(2026, 4, 1, tzinfo=UTC) or seen[0][0] == datetime(2026, 4, 9, tzinfo=UTC)
    whens = [w for w, _ in seen]
    assert datetime(2026, 4, 9, tzinfo=UTC) in whens  # login day leaves the 30-day window
    assert whens == sorted(whens)


def test_next_change_at_includes_12m_exit():
    s = CustomerState.new("c1")
    t = datetime(2026, 3, 10, 8, 30, tzinfo=UTC)
    e = ev(type="order", event_id="o", occurred_at=t, order_id="o", status="placed", amount="10")
    s.apply(e, s.horizon_start(H, t))
    now = t + timedelta(days=364, hours=23)
    nxt = s.next_change_at(now)
    assert nxt == t + timedelta(days=365)
    assert s.features(nxt - timedelta(seconds=1))["spend_12m"] == 10 and s.features(nxt)["spend_12m"] == 0
