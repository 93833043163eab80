"""Cancellations, refunds (partial, full, before the order), duplicates, too-late events, latest-wins profile."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from schemas.events import EVENT_ADAPTER
from scoring.state import CustomerState

NOW = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)
H = timedelta(days=365)


def ev(**kw):
    kw.setdefault("customer_id", "c1")
    return EVENT_ADAPTER.validate_python(kw)


def order(eid, at, status="placed", amount="100", order_id="o1", **kw):
    return ev(type="order", event_id=eid, occurred_at=at, order_id=order_id, status=status, amount=amount, **kw)


def apply(s, e, horizon=H):
    return s.apply(e, s.horizon_start(horizon, e.occurred_at))


def test_partial_refund_reduces_spend_and_margin_pro_rata_keeps_order():
    s = CustomerState.new("c1")
    apply(s, order("p", NOW - timedelta(days=3), amount="200", margin="50", quantity=4))
    assert apply(s, order("r1", NOW - timedelta(days=1), "refunded", amount="50")) == "applied"
    f = s.features(NOW)
    assert f["spend_12m"] == Decimal("150") and f["margin_12m"] == Decimal("37.5")
    assert f["orders_12m"] == 1 and f["quantity_12m"] == 4


def test_full_refund_and_cancel_remove_the_order():
    s = CustomerState.new("c1")
    apply(s, order("p", NOW - timedelta(days=3), amount="200", margin="50", quantity=4))
    apply(s, order("r1", NOW - timedelta(days=2), "refunded", amount="120"))
    apply(s, order("r2", NOW - timedelta(days=1), "refunded", amount="80"))
    f = s.features(NOW)
    assert f["spend_lifetime"] == 0 and f["orders_lifetime"] == 0 and f["quantity_lifetime"] == 0
    assert f["first_purchase_at"] is None
    s2 = CustomerState.new("c1")
    apply(s2, order("p", NOW - timedelta(days=3), amount="200"))
    apply(s2, order("x", NOW - timedelta(days=1), "cancelled", amount="0"))
    assert s2.features(NOW)["orders_12m"] == 0 and s2.features(NOW)["spend_12m"] == 0


def test_refund_before_its_order_nets_in_the_orders_window():
    s = CustomerState.new("c1")
    # the order is 400 days old (outside 12m); its refund arrives first and is recent
    long = timedelta(days=1095)
    assert apply(s, order("r1", NOW - timedelta(days=1), "refunded", amount="30"), long) == "applied"
    assert s.features(NOW)["spend_lifetime"] == 0
    assert apply(s, order("p", NOW - timedelta(days=400), amount="100"), long) == "applied"
    f = s.features(NOW)
    assert f["spend_lifetime"] == Decimal("70") and f["spend_12m"] == 0 and f["spend_36m"] == Decimal("70")


def test_duplicates_count_once_and_do_not_bump_version():
    s = CustomerState.new("c1")
    events = [
        order("p", NOW - timedelta(days=3)),
        order("r", NOW - timedelta(days=2), "refunded", amount="10"),
        ev(type="login", event_id="l", occurred_at=NOW),
        ev(type="payment", event_id="pay", occurred_at=NOW, payment_id="x", status="paid", amount="5"),
        ev(type="ticket", event_id="t", occurred_at=NOW, ticket_id="t", action="opened", category="complaint"),
        ev(type="profile", event_id="pr", occurred_at=NOW, assessments={"growth_potential": 5}),
    ]
    for e in events:
        assert apply(s, e) == "applied"
    before = s.to_bytes()
    for e in events:
        assert apply(s, e) == "duplicate"
    assert s.to_bytes() == before and s.version == len(events)
    # dedup memory survives a restart (it lives in the serialized state)
    s2 = CustomerState.from_bytes(before)
    assert all(apply(s2, e) == "duplicate" for e in events)


def test_too_late_and_login_specific_horizon():
    s = CustomerState.new("c1")
    apply(s, order("p", NOW))
    old = order("q", NOW - H - timedelta(seconds=1), order_id="o2")
    assert apply(s, old) == "too_late"
    assert apply(s, order("q2", NOW - H, order_id="o3")) == "applied"  # exactly at the horizon start
    # logins only feed 30/90-day windows: older than 90 days before the newest event they are too late
    assert apply(s, ev(type="login", event_id="l1", occurred_at=NOW - timedelta(days=91))) == "too_late"
    assert apply(s, ev(type="login", event_id="l2", occurred_at=NOW - timedelta(days=89))) == "applied"
    assert s.version == 3


def test_attributes_latest_wins_by_event_time_then_event_id_in_any_order():
    a = ev(type="profile", event_id="a", occurred_at=NOW - timedelta(days=2), attributes={"kind": "person"})
    b = ev(type="profile", event_id="b", occurred_at=NOW - timedelta(days=1), attributes={"kind": "group"},
           assessments={"growth_potential": 7})
    c = ev(type="profile", event_id="c", occurred_at=NOW - timedelta(days=3), attributes={"contract_plan": 186},
           assessments={"growth_potential": 2})
    results = set()
    for order_ in ([a, b, c], [c, b, a], [b, a, c]):
        s = CustomerState.new("c1")
        for e in order_:
            apply(s, e)
        f = s.features(NOW)
        assert f["attr.kind"] == "group" and f["assess.growth_potential"] == 7.0 and f["attr.contract_plan"] == 186
        assert f["attr.unknown_thing"] is None
        results.add(s.to_bytes())
    assert len(results) == 1
