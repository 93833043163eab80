"""Property-style: any permutation of an in-horizon event set gives identical bytes and features."""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from schemas.events import EVENT_ADAPTER
from scoring.features import features_json
from scoring.state import CustomerState

T0 = datetime(2025, 3, 1, tzinfo=UTC)
H = timedelta(days=1095)


def random_events(rng: random.Random, n: int) -> list:
    """Random in-horizon events of every kind. Natural keys are used once per status (a payment id has at
    most one event per status, a ticket one open and one close, an order one cancel): events that share a
    natural key but differ are conflicting facts, not duplicates, and the first applied wins."""
    out = []
    orders = []
    used: set = set()

    def fresh(prefix: str, space: int, status: str) -> str:
        while True:
            key = f"{prefix}{rng.randrange(space)}"
            if (key, status) not in used:
                used.add((key, status))
                return key

    for i in range(n):
        at = T0 + timedelta(seconds=rng.randrange(0, 80 * 86400))
        kind = rng.choice(["order", "order", "refund", "cancel", "login", "login", "payment", "ticket", "profile"])
        base = {"event_id": f"e{i}", "customer_id": "c", "occurred_at": at}
        if kind == "order" or (kind in ("refund", "cancel") and not orders):
            oid = f"o{i}"
            orders.append(oid)
            ev = {**base, "type": "order", "order_id": oid, "status": "placed",
                  "amount": str(Decimal(rng.randrange(100, 100000)) / 100), "quantity": rng.randrange(1, 9),
                  "product_line": rng.choice("abcd"), "margin": str(Decimal(rng.randrange(-500, 5000)) / 100)}
        elif kind in ("refund", "cancel"):
            # may well precede its order in event time and in arrival order
            status = "refunded" if kind == "refund" else "cancelled"
            oid = rng.choice(orders)
            if status == "cancelled":
                if (oid, status) in used:
                    status = "refunded"
                used.add((oid, status))
            ev = {**base, "type": "order", "order_id": oid, "status": status,
                  "amount": str(Decimal(rng.randrange(1, 5000)) / 100)}
        elif kind == "login":
            ev = {**base, "type": "login", "channel": "app"}
        elif kind == "payment":
            status = rng.choice(["paid", "paid", "failed", "charged_back", "written_off"])
            ev = {**base, "type": "payment", "payment_id": fresh("p", n, status), "status": status,
                  "amount": str(Decimal(rng.randrange(100, 30000)) / 100), "due_at": at + timedelta(days=3)}
        elif kind == "ticket":
            action = rng.choice(["opened", "closed"])
            ev = {**base, "type": "ticket", "ticket_id": fresh("t", n // 3, action), "action": action,
                  "category": rng.choice(["inquiry", "complaint"]), "severity": rng.randrange(1, 5),
                  **({"satisfaction": rng.randrange(1, 6)} if action == "closed" else {})}
        else:
            ev = {**base, "type": "profile", "attributes": {"kind": rng.choice(["person", "group"])},
                  "assessments": {"growth_potential": rng.randrange(11)}}
        out.append(EVENT_ADAPTER.validate_python(ev))
    out += rng.sample(out, n // 10)  # exact duplicates
    return out


def fold(events):
    s = CustomerState.new("c")
    for e in events:
        assert s.apply(e, s.horizon_start(H, e.occurred_at)) in ("applied", "duplicate")
    return s


def test_permutations_give_identical_bytes_and_features():
    rng = random.Random(20260715)
    for _ in range(5):
        events = random_events(rng, 150)
        ref = fold(events)
        ref_bytes = ref.to_bytes()
        now = ref.last_event_at + timedelta(days=3)
        ref_features = features_json(ref.features(now))
        for _ in range(20):
            shuffled = events[:]
            rng.shuffle(shuffled)
            s = fold(shuffled)
            assert s.to_bytes() == ref_bytes
            assert features_json(s.features(now)) == ref_features
            assert s.next_change_at(now) == ref.next_change_at(now)


def test_refunds_before_orders_net_the_same_as_after():
    rng = random.Random(7)
    events = random_events(rng, 60)
    forward = fold(sorted(events, key=lambda e: (e.type != "order" or e.status != "placed")))
    backward = fold(sorted(events, key=lambda e: (e.type == "order" and e.status == "placed")))
    assert forward.to_bytes() == backward.to_bytes()
