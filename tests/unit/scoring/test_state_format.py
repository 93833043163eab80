"""Format 2 of the customer state: versioning, folded-order refunds, money unit, compaction and the caches.

The stream loads, applies a few events and saves every batch; replay folds a whole history in memory. Both
must reach byte-identical states, whatever the batch boundaries, so several tests compare a state folded in
memory with one saved and reloaded after every event.
"""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from schemas.events import EVENT_ADAPTER
from scoring.dedup import DayRecords
from scoring.features import features_json
from scoring.state import DAY, FORMAT_VERSION, OPENED, T_FLAGS, CustomerState
from scoring.state_tables import EntryTable

T0 = datetime(2021, 1, 1, tzinfo=UTC)
H = timedelta(days=365)


def ev(**kw):
    kw.setdefault("customer_id", "c")
    return EVENT_ADAPTER.validate_python(kw)


def apply(s, e, horizon=H):
    return s.apply(e, s.horizon_start(horizon, e.occurred_at))


def order(eid, at, status="placed", amount="100", order_id="o1", **kw):
    return ev(type="order", event_id=eid, occurred_at=at, order_id=order_id, status=status, amount=amount, **kw)


def long_history(rng: random.Random, n: int, days: int, four_decimals: bool) -> list:
    """Random events over ``days`` (far longer than the horizon, so entries fold), refunds and cancels often
    long after their order, failed payments, open tickets, profile updates; 10% exact duplicates."""
    out, orders = [], []

    def money(lo: int, hi: int) -> str:
        scale = 10000 if four_decimals and rng.random() < 0.1 else 100
        return str(Decimal(rng.randrange(lo, hi)) / scale)

    for i in range(n):
        at = T0 + timedelta(seconds=rng.randrange(0, days * 86400))
        kind = rng.choice(["order", "order", "refund", "cancel", "login", "login", "payment", "ticket", "profile"])
        base = {"event_id": f"e{i}", "occurred_at": at}
        if kind == "order" or (kind in ("refund", "cancel") and not orders):
            orders.append((f"o{i}", at))
            e = ev(**base, type="order", order_id=f"o{i}", status="placed", amount=money(100, 100000),
                   quantity=rng.randrange(1, 9), product_line=rng.choice("abcdefg"), margin=money(-500, 5000))
        elif kind in ("refund", "cancel"):
            oid, placed = rng.choice(orders)
            at = placed + timedelta(days=rng.choice([1, 10, 200, 500]) * rng.random())
            e = ev(**{**base, "occurred_at": at}, type="order", order_id=oid, amount=money(1, 5000),
                   status="refunded" if kind == "refund" else "cancelled")
        elif kind == "login":
            e = ev(**base, type="login")
        elif kind == "payment":
            status = rng.choice(["paid", "paid", "failed", "charged_back", "written_off"])
            e = ev(**base, type="payment", payment_id=f"p{rng.randrange(n)}", status=status, amount=money(100, 30000),
                   due_at=at + timedelta(days=rng.choice([-5, 3, 40])))
        elif kind == "ticket":
            action = rng.choice(["opened", "closed"])
            e = ev(**base, type="ticket", ticket_id=f"t{rng.randrange(n // 3 + 1)}", action=action,
                   category=rng.choice(["inquiry", "complaint"]), severity=rng.randrange(1, 5),
                   **({"satisfaction": rng.randrange(1, 6)} if action == "closed" else {}))
        else:
            e = ev(**base, type="profile", attributes={"kind": rng.choice(["person", "group"])},
                   assessments={"growth_potential": rng.randrange(11)})
        out.append(e)
    out += rng.sample(out, n // 10)
    return out


# ---------------------------------------------------------------- format version
def test_format_version_is_written_and_checked():
    s = CustomerState.new("c")
    apply(s, order("p", T0))
    doc = orjson.loads(s.to_bytes())
    assert doc["f"] == FORMAT_VERSION == 2
    doc["f"] = 99
    with pytest.raises(ValueError, match="format 99"):
        CustomerState.from_bytes(orjson.dumps(doc))
    del doc["f"]  # the unversioned format 1
    with pytest.raises(ValueError, match="format None"):
        CustomerState.from_bytes(orjson.dumps(doc))


# ---------------------------------------------------------------- refunds / cancels of folded orders
def test_refund_or_cancel_of_a_folded_order_is_too_late():
    s = CustomerState.new("c")
    assert apply(s, order("p", T0, amount="100", order_id="old")) == "applied"
    # newer events push the anchor so far that the order (newest event at T0) is folded
    assert apply(s, order("q", T0 + timedelta(days=400), order_id="new")) == "applied"
    assert s.features(T0 + timedelta(days=400))["spend_lifetime"] == Decimal("200")
    version, before = s.version, s.to_bytes()
    refund = order("r", T0 + timedelta(days=100), "refunded", amount="30", order_id="old")  # within the horizon
    cancel = order("x", T0 + timedelta(days=100), "cancelled", amount="0", order_id="old")
    assert apply(s, refund) == "too_late" and apply(s, cancel) == "too_late"
    # a second, different "placed" of the folded order is a conflicting fact: the first (folded) one won
    assert apply(s, order("p2", T0 + timedelta(days=100), amount="5", order_id="old")) == "duplicate"
    assert s.version == version and s.to_bytes() == before
    assert s.features(T0 + timedelta(days=400))["spend_lifetime"] == Decimal("200")
    # the memory of folded ids survives a save / load
    s2 = CustomerState.from_bytes(before)
    assert apply(s2, refund) == "too_late"


def test_refund_of_an_unknown_order_is_still_a_pending_placeholder():
    s = CustomerState.new("c")
    apply(s, order("q", T0 + timedelta(days=400), order_id="new"))
    # never seen (not folded): its order may still come, so it is applied and waits
    assert apply(s, order("r", T0 + timedelta(days=390), "refunded", amount="30", order_id="later")) == "applied"
    assert apply(s, order("p", T0 + timedelta(days=380), amount="100", order_id="later")) == "applied"
    assert s.features(T0 + timedelta(days=400))["spend_lifetime"] == Decimal("170")


def test_refund_of_a_live_order_past_its_month_still_nets():
    s = CustomerState.new("c")
    apply(s, order("p", T0, amount="100"))
    assert apply(s, order("r", T0 + timedelta(days=300), "refunded", amount="40")) == "applied"
    assert apply(s, order("q", T0 + timedelta(days=400), order_id="o2", amount="1")) == "applied"
    # the refund kept the order's entry alive (its newest event is day 300): it still nets
    assert s.features(T0 + timedelta(days=400))["spend_lifetime"] == Decimal("61")


# ---------------------------------------------------------------- money unit
def test_money_unit_switches_once_and_keeps_values_exact():
    s = CustomerState.new("c")
    apply(s, order("p", T0, amount="12.34", margin="1.5"))
    assert "u" not in orjson.loads(s.to_bytes())  # cents
    apply(s, ev(type="payment", event_id="pay", occurred_at=T0, payment_id="x", status="paid", amount="7.1234"))
    assert orjson.loads(s.to_bytes())["u"] == 1  # 10^-4 units from now on
    apply(s, order("p2", T0 + timedelta(days=1), amount="0.0001", order_id="o2"))
    f = s.features(T0 + timedelta(days=40))
    assert f["spend_12m"] == Decimal("12.3401") and f["margin_12m"] == Decimal("1.5")
    assert f["monthly_spend_2021-01"] == Decimal("7.1234")
    assert CustomerState.from_bytes(s.to_bytes()).to_bytes() == s.to_bytes()


def test_money_unit_does_not_depend_on_arrival_order():
    events = [
        order("a", T0, amount="10", margin="2"),
        order("b", T0 + timedelta(hours=1), "refunded", amount="3.3333"),
        ev(type="payment", event_id="p", occurred_at=T0, payment_id="p", status="paid", amount="5"),
    ]
    results = set()
    for perm in ([0, 1, 2], [1, 0, 2], [2, 1, 0], [2, 0, 1]):
        s = CustomerState.new("c")
        for i in perm:
            assert apply(s, events[i]) == "applied"
        results.add(s.to_bytes())
        assert s.features(T0 + timedelta(days=1))["margin_12m"] == Decimal("1.3333")  # pro rata, half-even
    assert len(results) == 1


# ---------------------------------------------------------------- batches: save / load between events
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_saving_between_events_changes_nothing(seed):
    """The stream's shape (load, apply, save per event) ends in the same bytes as one in-memory fold, and
    after every event nothing older than the retention cut is left (compaction is never skipped)."""
    rng = random.Random(seed)
    for trial in range(4):
        events = long_history(rng, 250, rng.choice([400, 1500]), four_decimals=trial % 2 == 0)
        if trial % 2:
            events.sort(key=lambda e: e.occurred_at)
        else:
            rng.shuffle(events)
        horizon = timedelta(days=rng.choice([100, 365, 1095]))
        memory, saved = CustomerState.new("c"), CustomerState.new("c").to_bytes()
        for e in events:
            r1 = apply(memory, e, horizon)
            s = CustomerState.from_bytes(saved)
            assert apply(s, e, horizon) == r1
            saved = s.to_bytes()
            cut = (memory.anchor - memory.h) // DAY * DAY - memory.base
            for name, table in (("o", memory.orders), ("pe", memory.pay_entries), ("t", memory.tickets)):
                late = [k for k, x in table.d.items() if x[0] < cut and not (name == "t" and x[T_FLAGS] == OPENED)]
                assert not late, (name, late)
        assert memory.to_bytes() == saved
        now = memory.last_event_at
        loaded = CustomerState.from_bytes(saved)
        assert features_json(memory.features(now)) == features_json(loaded.features(now))
        assert memory.next_change_at(now) == loaded.next_change_at(now)


def test_next_change_at_matches_a_brute_force_search():
    """next_change_at (computed with pruning / bit tricks) against trying every window-exit candidate."""
    rng = random.Random(11)
    for _ in range(6):
        s = CustomerState.new("c")
        for e in long_history(rng, 150, 200, four_decimals=False):
            apply(s, e)
        for now in (s.last_event_at, s.last_event_at + timedelta(days=rng.randrange(1, 100))):
            nxt = s.next_change_at(now)
            assert nxt is not None and nxt > now
            before = features_json(s.features(nxt - timedelta(seconds=1)))
            after = features_json(s.features(nxt))
            assert {k for k in before if before[k] != after[k] and not k.startswith("days_since")}, nxt
            # and nothing changed in between (sampled every 6 hours)
            t = now + timedelta(hours=6)
            ref = features_json(s.features(now))
            while t < nxt - timedelta(seconds=1):
                cur = features_json(s.features(t))
                assert {k for k in ref if ref[k] != cur[k] and not k.startswith("days_since")} == set(), t
                t += timedelta(hours=6)


# ---------------------------------------------------------------- caches
def test_feature_view_is_reused_until_the_next_apply():
    s = CustomerState.new("c")
    apply(s, order("p", T0))
    now = T0 + timedelta(days=1)
    view = s.features(now)
    assert s.features(now) is view and view["spend_12m"] == Decimal("100")
    apply(s, order("q", T0 + timedelta(hours=1), order_id="o2"))
    assert s.features(now) is not view and s.features(now)["spend_12m"] == Decimal("200")
    # same instant, another UTC offset: calendar features may differ, so a new view
    from datetime import timezone
    assert s.features(now.astimezone(timezone(timedelta(hours=8)))) is not s.features(now)


# ---------------------------------------------------------------- building blocks
def test_day_records_are_a_sorted_set_with_range_queries():
    rng = random.Random(5)
    recs, ref = DayRecords(4), set()
    for _ in range(500):
        day, digest = rng.randrange(20000, 20100), rng.randbytes(4)
        assert recs.add(day, digest) == ((day, digest) not in ref)
        ref.add((day, digest))
    assert len(recs) == len(ref) and sorted(recs.days()) == recs.days()
    day, digest = next(iter(ref))
    assert recs.has(day, digest) and recs.has_hash(digest) and not recs.has(day + 1000, digest)
    assert recs.count_days(20010, 20019) == sum(1 for d, _ in ref if 20010 <= d <= 20019)
    assert recs.first_day_from(20050) == min(d for d, _ in ref if d >= 20050)
    back = DayRecords(4, recs.encode())
    assert back.first_day() == min(d for d, _ in ref) and back.encode() == recs.encode()
    recs.evict(20050)
    assert recs.first_day() == min(d for d, _ in ref if d >= 20050) and len(recs) == sum(d >= 20050 for d, _ in ref)


def test_entry_table_pops_exactly_the_old_entries_in_any_insert_order():
    rng = random.Random(9)
    for _ in range(50):
        table, ref = EntryTable(), {}
        for i in range(60):
            key, entry = f"k{i:03d}", [rng.randrange(1000)]
            table.insert(key, entry)
            ref[key] = entry
            if rng.random() < 0.2:  # an entry's time grows (a later event of the same id)
                k = rng.choice(list(ref))
                ref[k][0] += rng.randrange(1, 300)
                table.touch(k)
            if rng.random() < 0.1:
                table.shift(7)  # the time base moved (ref entries are the same lists)
            if rng.random() < 0.2:
                cut = rng.randrange(1000)
                popped = table.pop_older(cut)
                assert sorted(k for k, _ in popped) == sorted(k for k, e in ref.items() if e[0] < cut)
                for k, _ in popped:
                    del ref[k]
        assert list(table.canonical()) == sorted(ref, key=lambda k: (ref[k][0], k))
