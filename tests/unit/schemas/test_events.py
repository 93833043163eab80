"""The input event contract: valid events parse to typed models; every kind of bad input is refused with
its reason code (the dead-letter reason)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from schemas.events import InvalidEvent, OrderEvent, ProfileEvent, TicketEvent, parse_event

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)


def ev(**fields) -> bytes:
    base = {"event_id": "e1", "customer_id": "c1", "occurred_at": "2026-06-01T10:00:00+08:00"}
    return orjson.dumps({**base, **fields})


def test_order_amount_is_exact_decimal_and_quantity_defaults_to_one():
    e = parse_event(ev(type="order", order_id="o1", status="placed", amount="1234.5678"), NOW, SKEW)
    assert isinstance(e, OrderEvent)
    assert e.amount == Decimal("1234.5678") and e.quantity == 1
    # a JSON number keeps its exact decimal value too (no float rounding on the way in)
    e = parse_event(b'{"event_id":"e","customer_id":"c","occurred_at":"2026-06-01T00:00:00Z",'
                    b'"type":"order","order_id":"o","status":"placed","amount":0.1}', NOW, SKEW)
    assert e.amount == Decimal("0.1")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (ev(type="refund"), "unknown_type"),
        (ev(type="order", order_id="o", status="placed", amount="-1"), "schema"),
        (ev(type="order", order_id="o", status="placed", amount="1.00001"), "schema"),
        (ev(type="order", order_id="o", status="shipped", amount="1"), "schema"),
        (ev(type="login", extra_field=1), "schema"),
        (ev(type="login", occurred_at="2026-06-01T10:00:00"), "schema"),  # no offset
        (ev(type="login", event_id=""), "schema"),
        (ev(type="login", customer_id="x" * 129), "schema"),
        (ev(type="ticket", ticket_id="t", action="opened", category="complaint", satisfaction=3), "schema"),
        (ev(type="ticket", ticket_id="t", action="opened", category="complaint", severity=5), "schema"),
        (ev(type="profile", assessments={"growth": 11}), "schema"),
        (ev(type="login", occurred_at="2026-06-01T12:05:01Z"), "future_timestamp"),
    ],
)
def test_bad_input_is_refused_with_reason(raw, reason):
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, NOW, SKEW)
    assert info.value.reason == reason
    assert info.value.detail


def test_future_within_skew_is_accepted():
    e = parse_event(ev(type="login", occurred_at="2026-06-01T12:05:00Z"), NOW, SKEW)
    assert e.occurred_at == NOW + SKEW


def test_ticket_satisfaction_on_close_and_profile_extras():
    t = parse_event(ev(type="ticket", ticket_id="t", action="closed", category="inquiry", satisfaction=5), NOW, SKEW)
    assert isinstance(t, TicketEvent) and t.satisfaction == 5
    p = parse_event(ev(type="profile", attributes={"kind": "group", "contract_plan": 186, "region": "HN"},
                       assessments={"growth_potential": 7.5}), NOW, SKEW)
    assert isinstance(p, ProfileEvent)
    assert p.attributes.contract_plan == 186 and p.attributes.model_extra == {"region": "HN"}
    with pytest.raises(InvalidEvent):
        parse_event(ev(type="profile", attributes={"nested": {"a": 1}}), NOW, SKEW)
