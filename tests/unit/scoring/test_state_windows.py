"""Window features computed by hand at the boundaries (exactly 365 days ago is out, a second later is in)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from schemas.events import EVENT_ADAPTER
from scoring.state import CustomerState

NOW = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)
H = timedelta(days=1095)


def ev(**kw):
    kw.setdefault("customer_id", "c1")
    return EVENT_ADAPTER.validate_python(kw)


def order(eid, at, amount="100", **kw):
    return ev(type="order", event_id=eid, occurred_at=at, order_id=kw.pop("order_id", eid),
              status=kw.pop("status", "placed"), amount=amount, **kw)


def fold(*events):
    s = CustomerState.new("c1")
    for e in events:
        assert s.apply(e, s.horizon_start(H, e.occurred_at)) == "applied"
    return s


def test_12m_boundary_exactly_365_days_is_out_one_second_later_is_in():
    s = fold(
        order("a", NOW - timedelta(days=365), "10"),
        order("b", NOW - timedelta(days=365) + timedelta(seconds=1), "20"),
        order("c", NOW, "40"),
    )
    f = s.features(NOW)
    assert f["spend_12m"] == Decimal("60")
    assert f["orders_12m"] == 2
    assert f["spend_36m"] == Decimal("70") and f["spend_lifetime"] == Decimal("70")
    assert f["orders_lifetime"] == 3 and f["repurchase"] is True


def test_36m_boundary_and_quantity_margin_product_lines():
    s = fold(
        order("a", NOW - timedelta(days=1095), "5", quantity=3, margin="1", product_line="x"),
        order("b", NOW - timedelta(days=1094), "7", quantity=4, margin="2", product_line="y"),
        order("c", NOW - timedelta(days=10), "9", quantity=5, margin="-1", product_line="y"),
    )
    f = s.features(NOW)
    assert f["spend_36m"] == Decimal("16") and f["quantity_36m"] == 9 and f["margin_36m"] == Decimal("1")
    assert f["spend_lifetime"] == Decimal("21") and f["quantity_lifetime"] == 12
    assert f["product_lines_lifetime"] == 2 and f["product_lines_12m"] == 1
    assert f["first_purchase_at"] == NOW - timedelta(days=1095)
    assert f["last_purchase_at"] == NOW - timedelta(days=10)
    assert f["days_since_last_purchase"] == 10.0
    assert f["months_as_customer"] == 35  # 1095 days back is 2023-07-16 (2024 is a leap year)


def test_events_after_now_are_not_in_windows():
    s = fold(order("a", NOW - timedelta(days=1), "5"), order("b", NOW + timedelta(days=1), "7"))
    f = s.features(NOW)
    assert f["spend_12m"] == Decimal("5") and f["orders_lifetime"] == 1


def test_monthly_spend_and_complete_month_average():
    pay = lambda eid, at, amt, **kw: ev(type="payment", event_id=eid, occurred_at=at, payment_id=eid,  # noqa: E731
                                       status=kw.pop("status", "paid"), amount=amt, **kw)
    s = fold(
        pay("p1", datetime(2026, 1, 10, tzinfo=UTC), "120"),
        pay("p2", datetime(2026, 6, 30, 23, 59, tzinfo=UTC), "60"),
        pay("p3", datetime(2026, 7, 1, tzinfo=UTC), "999"),  # current month: not complete
        pay("p4", datetime(2026, 6, 2, tzinfo=UTC), "20", status="charged_back"),
        # paid in June although the event is in July: bucketed by paid_at
        pay("p5", datetime(2026, 7, 2, tzinfo=UTC), "10", paid_at=datetime(2026, 6, 15, tzinfo=UTC)),
    )
    f = s.features(NOW)
    assert f["monthly_spend_2026-06"] == Decimal("50")
    assert f["monthly_spend_2026-01"] == Decimal("120")
    assert f["monthly_spend_2025-01"] == Decimal("0")
    assert f["avg_monthly_spend_6m"] == Decimal("28.3333")  # (120 + 50) / 6, months Jan..Jun
    assert f["avg_monthly_spend_1m"] == Decimal("50")
    assert f["charged_back_amount"] == Decimal("20")
    assert f["paid_12m"] == Decimal("1169")


def test_payment_credit_features():
    due = NOW - timedelta(days=5)
    s = fold(
        ev(type="payment", event_id="1", occurred_at=NOW - timedelta(days=40), payment_id="a", status="paid",
           amount="10", due_at=NOW - timedelta(days=41)),  # late
        ev(type="payment", event_id="2", occurred_at=NOW - timedelta(days=20), payment_id="b", status="paid",
           amount="10", due_at=NOW - timedelta(days=19)),
        ev(type="payment", event_id="3", occurred_at=NOW - timedelta(days=10), payment_id="c", status="failed",
           amount="30", due_at=due),
        ev(type="payment", event_id="4", occurred_at=NOW - timedelta(days=9), payment_id="d", status="failed",
           amount="7", due_at=NOW + timedelta(days=3)),
        ev(type="payment", event_id="5", occurred_at=NOW - timedelta(days=8), payment_id="e", status="written_off",
           amount="4"),
    )
    f = s.features(NOW)
    assert f["on_time_ratio"] == 0.5
    assert f["overdue_amount"] == Decimal("30")
    assert f["failed_payments_90d"] == 2
    assert f["written_off_amount"] == Decimal("4") and f["bad_debt"] is True
    # paying the failed one resolves it, even though it arrives as another event of the same payment id
    s.apply(e := ev(type="payment", event_id="6", occurred_at=NOW, payment_id="c", status="paid", amount="30"),
            s.horizon_start(H, e.occurred_at))
    assert s.features(NOW)["overdue_amount"] == Decimal("0")


def test_activity_logins_tickets_windows():
    s = fold(
        ev(type="login", event_id="l1", occurred_at=NOW - timedelta(days=29, hours=12)),  # day now-29: in 30d
        ev(type="login", event_id="l2", occurred_at=NOW - timedelta(days=30)),  # day now-30: out of 30d
        ev(type="login", event_id="l3", occurred_at=NOW - timedelta(days=30, hours=1)),  # same day as l2
        ev(type="login", event_id="l4", occurred_at=NOW),
        ev(type="ticket", event_id="t1", occurred_at=NOW - timedelta(days=89), ticket_id="t1", action="opened",
           category="complaint", severity=3),
        ev(type="ticket", event_id="t2", occurred_at=NOW - timedelta(days=90), ticket_id="t2", action="opened",
           category="complaint", severity=4),
        ev(type="ticket", event_id="t3", occurred_at=NOW - timedelta(days=5), ticket_id="t3", action="opened",
           category="inquiry"),
        ev(type="ticket", event_id="t4", occurred_at=NOW - timedelta(days=1), ticket_id="t3", action="closed",
           category="inquiry", satisfaction=4),
        ev(type="ticket", event_id="t5", occurred_at=NOW - timedelta(days=2), ticket_id="t1", action="closed",
           category="complaint", satisfaction=1),
    )
    f = s.features(NOW)
    assert f["logins_30d"] == 2 and f["logins_90d"] == 4
    assert f["active_days_30d"] == 5  # days of l1, t3, t5, t4, l4
    assert f["active_days_90d"] == 7  # plus the day of l2/l3 and of t1 (t2's day is the 91st)
    assert f["last_login_at"] == NOW
    assert f["tickets_opened_90d"] == 2 and f["complaints_90d"] == 1 and f["severe_complaints_90d"] == 1
    assert f["open_tickets"] == 1  # t2
    assert f["avg_satisfaction"] == 2.5
