"""Deterministic synthetic event stream: a customer population whose tiers move over time.

``generate_events(customers, seed, start, end, ...)`` returns JSON-ready dicts (``schemas.events``
shapes: RFC 3339 timestamps with an offset, money as strings with ≤ 2 decimals) in *emission* order:
mostly by event time, shuffled within a short jitter window, a ``late`` share delayed by up to a few
days, a ``duplicates`` share re-emitted verbatim (same ``event_id`` and body) shortly after the
original, and an ``invalid`` share of schema-violating objects. Same arguments -> identical list.

Population: key skew from a Pareto activity multiplier (a few heavy customers, a long tail) and
archetypes that make tiers move as windows slide: ``steady``, ``grower`` (spend rising), ``quiet``
(stops buying part-way), ``complainer`` (complaints pile up; failed, charged-back, written-off
payments), ``whale`` (large orders), ``telecom`` (monthly bills around a ``contract_plan``), ``group``
(``attr.kind=group`` with a ``group_class``) and ``key_person`` (of a group, with ``key_person_role``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

ARCHETYPES: tuple[tuple[str, float], ...] = (
    ("steady", 0.30),
    ("grower", 0.14),
    ("quiet", 0.14),
    ("complainer", 0.10),
    ("whale", 0.03),
    ("telecom", 0.18),
    ("group", 0.05),
    ("key_person", 0.06),
)
PRODUCT_LINES = ("batteries", "modules", "chargers", "services", "software", "spares")
INDUSTRIES = ("manufacturing", "retail", "energy", "telecom", "government", "logistics")
PLANS = (56.0, 96.0, 126.0, 156.0, 186.0, 226.0, 286.0, 386.0)
OFFSETS = (UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5)))
LATE_MAX = timedelta(days=3)
JITTER = timedelta(minutes=20)
DUP_DELAY = timedelta(hours=2)


def default_end() -> datetime:
    """Now (UTC) rounded down to the minute: the default end of the generated span."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def _money(x: float) -> str:
    return f"{max(x, 0.01):.2f}"


class _Customer:
    """Generation context of one customer (all randomness from the shared seeded RNG)."""

    def __init__(self, rng: random.Random, index: int, kind: str, start: datetime, end: datetime) -> None:
        self.rng = rng
        self.id = f"c{index:06d}"
        self.kind = kind
        self.tz = OFFSETS[index % len(OFFSETS)]
        self.activity = min(rng.paretovariate(1.3), 40.0)  # key skew: most ~1, a few heavy
        span = (end - start).total_seconds()
        # half the population exists from the start, the rest joins over the first 70% of the span
        self.joined = start if rng.random() < 0.5 else start + timedelta(seconds=rng.uniform(0, 0.7 * span))
        self.quit_at = self.joined + timedelta(seconds=rng.uniform(0.3, 0.7) * (end - self.joined).total_seconds())
        self.plan = rng.choice(PLANS)
        self.n = 0
        self.events: list[dict[str, Any]] = []

    def eid(self) -> str:
        self.n += 1
        return f"{self.id}-{self.n:05d}-{self.rng.getrandbits(32):08x}"

    def stamp(self, at: datetime) -> str:
        return at.astimezone(self.tz).replace(microsecond=0).isoformat()

    def emit(self, at: datetime, body: dict[str, Any]) -> None:
        self.events.append({"event_id": self.eid(), "customer_id": self.id, "occurred_at": self.stamp(at), **body})


def _profile(c: _Customer, at: datetime, groups: list[str]) -> None:
    rng = c.rng
    attrs: dict[str, Any] = {
        "kind": {"group": "group", "key_person": "person", "telecom": "person"}.get(
            c.kind, rng.choice(("person", "enterprise", "enterprise"))
        ),
        "size": rng.choice(("small", "medium", "large")),
        "industry": rng.choice(INDUSTRIES),
    }
    if c.kind in ("telecom", "group"):
        attrs["contract_plan"] = c.plan
    if c.kind == "group":
        attrs["group_class"] = rng.choice(("A", "B", "C"))
    if c.kind == "key_person" and groups:
        attrs["key_person_role"] = rng.choice(("executive", "manager", "staff"))
        attrs["group_id"] = rng.choice(groups)
    c.emit(at, {"type": "profile", "attributes": attrs, "assessments": _assess(c)})


def _assess(c: _Customer) -> dict[str, float]:
    rng = c.rng
    base = {"grower": 7.0, "whale": 8.0, "quiet": 3.0, "complainer": 2.0}.get(c.kind, 5.0)
    return {
        "growth_potential": round(min(10.0, max(0.0, rng.gauss(base, 1.5))), 1),
        "strategic_value": round(min(10.0, max(0.0, rng.gauss(base, 2.0))), 1),
    }


def _months(start: datetime, end: datetime) -> Iterator[datetime]:
    at = start
    while at < end:
        yield at
        at += timedelta(days=30)


def _order(c: _Customer, at: datetime, amount: float, end: datetime) -> None:
    rng = c.rng
    oid = f"o-{c.id}-{c.n + 1:05d}"
    amount_s = _money(amount)
    c.emit(at, {
        "type": "order", "order_id": oid, "status": "placed", "amount": amount_s, "currency": "CNY",
        "quantity": max(1, int(amount / rng.uniform(5, 50))), "product_line": rng.choice(PRODUCT_LINES),
        "margin": _money(amount * rng.uniform(0.05, 0.35)),
    })
    roll = rng.random()
    later = at + timedelta(hours=rng.uniform(2, 240))
    if later >= end:
        return
    if roll < 0.04:
        c.emit(later, {"type": "order", "order_id": oid, "status": "cancelled", "amount": amount_s})
    elif roll < 0.09:
        refund = _money(amount * rng.uniform(0.1, 0.6))  # partial
        c.emit(later, {"type": "order", "order_id": oid, "status": "refunded", "amount": refund})


def _payment(c: _Customer, at: datetime, amount: float, bad: float, end: datetime) -> None:
    rng = c.rng
    pid = f"p-{c.id}-{c.n + 1:05d}"
    due = at + timedelta(days=rng.choice((7, 15, 30)))
    roll = rng.random()
    if roll < bad:  # failed; later paid, or written off, or left open
        c.emit(at, {"type": "payment", "payment_id": pid, "status": "failed", "amount": _money(amount),
                    "due_at": c.stamp(due)})
        fate = rng.random()
        later = due + timedelta(days=rng.uniform(1, 60))
        if later < end:
            if fate < 0.5:
                c.emit(later, {"type": "payment", "payment_id": pid, "status": "paid", "amount": _money(amount),
                               "due_at": c.stamp(due), "paid_at": c.stamp(later)})
            elif fate < 0.8:
                c.emit(later, {"type": "payment", "payment_id": pid, "status": "written_off", "amount": _money(amount)})
        return
    paid = at + timedelta(days=rng.uniform(0, 10 if rng.random() < 0.85 else 40))
    if paid >= end:
        return
    c.emit(paid, {"type": "payment", "payment_id": pid, "status": "paid", "amount": _money(amount),
                  "due_at": c.stamp(due), "paid_at": c.stamp(paid)})
    if rng.random() < bad / 4:
        cb = paid + timedelta(days=rng.uniform(5, 40))
        if cb < end:
            c.emit(cb, {"type": "payment", "payment_id": pid, "status": "charged_back", "amount": _money(amount)})


def _ticket(c: _Customer, at: datetime, complaint: bool, end: datetime) -> None:
    rng = c.rng
    tid = f"t-{c.id}-{c.n + 1:05d}"
    category = "complaint" if complaint else rng.choice(("inquiry", "inquiry", "other"))
    severity = rng.randint(2, 4) if complaint else rng.randint(1, 2)
    c.emit(at, {"type": "ticket", "ticket_id": tid, "action": "opened", "category": category, "severity": severity})
    closed = at + timedelta(hours=rng.uniform(1, 24 * 20))
    if rng.random() < 0.85 and closed < end:
        sat = rng.randint(1, 3) if complaint else rng.randint(3, 5)
        c.emit(closed, {"type": "ticket", "ticket_id": tid, "action": "closed", "category": category,
                        "satisfaction": sat})


def _simulate(c: _Customer, end: datetime, groups: list[str]) -> None:
    """Month by month from joining to ``end``: orders, payments, logins, tickets, profile updates."""
    rng = c.rng
    _profile(c, c.joined, groups)
    total = max((end - c.joined).total_seconds(), 1.0)
    for month in _months(c.joined, end):
        progress = (month - c.joined).total_seconds() / total
        active = not (c.kind == "quiet" and month > c.quit_at)
        scale = c.activity
        if c.kind == "grower":
            scale *= 0.3 + 3.5 * progress
        elif c.kind == "complainer":
            scale *= max(0.2, 1.0 - progress)

        def when(m: datetime = month) -> datetime:
            return min(m + timedelta(seconds=rng.uniform(0, 30 * 86400)), end - timedelta(seconds=1))

        if c.kind in ("telecom", "group", "key_person"):
            # a group's monthly total is a dozen lines and grows; a person's bill varies around the plan
            bill = c.plan * rng.uniform(0.7, 1.5)
            if c.kind == "group":
                bill *= 12.0 * (1 + progress)
            if active:
                _payment(c, when(), bill, 0.03, end)
        if active and c.kind != "telecom":
            n_orders = _poisson(rng, 0.6 * scale)
            mean = {"whale": 60_000.0, "group": 8_000.0}.get(c.kind, 1_500.0)
            for _ in range(n_orders):
                amount = rng.lognormvariate(0, 0.8) * mean
                at = when()
                _order(c, at, amount, end)
                if c.kind not in ("group", "key_person"):
                    _payment(c, at, amount, 0.25 * progress if c.kind == "complainer" else 0.02, end)
        if active or rng.random() < 0.1:
            for _ in range(_poisson(rng, 3.0 * min(scale, 10.0) * (1.0 if active else 0.2))):
                c.emit(when(), {"type": "login", "channel": rng.choice(("app", "web", "store", "phone"))})
        complaint_rate = 0.3 + 2.5 * progress if c.kind == "complainer" else 0.03
        for _ in range(_poisson(rng, complaint_rate)):
            _ticket(c, when(), True, end)
        for _ in range(_poisson(rng, 0.15 * min(scale, 5.0))):
            _ticket(c, when(), False, end)
        if rng.random() < 1 / 6:
            c.emit(when(), {"type": "profile", "assessments": _assess(c)})
        if c.kind == "telecom" and rng.random() < 0.04:
            c.plan = rng.choice(PLANS)
            c.emit(when(), {"type": "profile", "attributes": {"contract_plan": c.plan}})


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth for small means, normal approximation for large ones: deterministic given the RNG state.
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, lam**0.5)))
    limit, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _invalid(rng: random.Random, good: dict[str, Any]) -> dict[str, Any]:
    """A schema-violating variant of a valid event (the reason varies)."""
    bad = dict(good)
    bad["event_id"] = f"bad-{rng.getrandbits(32):08x}"
    choice = rng.randrange(4)
    if choice == 0:
        bad["type"] = "refund_request"
    elif choice == 1:
        bad["occurred_at"] = "yesterday"
    elif choice == 2:
        bad.pop("customer_id")
    else:
        bad["unexpected_field"] = 1
    return bad


def generate_events(
    customers: int,
    seed: int,
    start: datetime | None = None,
    end: datetime | None = None,
    duplicates: float = 0.05,
    late: float = 0.02,
    invalid: float = 0.0,
) -> list[dict[str, Any]]:
    """The synthetic stream, in emission order (see the module docstring).

    Inputs: number of customers, RNG seed, the event-time span (default ``end`` = now rounded down to the
    minute, ``start`` = ``end`` - 730 days), and the shares of exact duplicates, late events and invalid
    objects (fractions of the valid events). Output: a list of dicts; every non-invalid one validates
    against ``schemas.events`` and no event is after ``end``. Deterministic for the same arguments.
    """
    end = (end or default_end()).astimezone(UTC)
    start = (start or end - timedelta(days=730)).astimezone(UTC)
    if not start < end:
        raise ValueError("start must be before end")
    rng = random.Random(seed)
    kinds, weights = zip(*ARCHETYPES, strict=True)
    population = [_Customer(rng, i, rng.choices(kinds, weights)[0], start, end) for i in range(customers)]
    groups = [c.id for c in population if c.kind == "group"]
    events: list[tuple[datetime, int, dict[str, Any]]] = []
    for c in population:
        _simulate(c, end, groups)
        for body in c.events:
            at = datetime.fromisoformat(body["occurred_at"])
            emit = at + timedelta(seconds=rng.uniform(0, JITTER.total_seconds()))
            if rng.random() < late:
                emit = at + timedelta(seconds=rng.uniform(3600, LATE_MAX.total_seconds()))
            events.append((emit, len(events), body))
    originals = len(events)
    # exactly ceil(share × originals) duplicates, so the requested share is a floor, not an expectation
    for i in sorted(rng.sample(range(originals), min(originals, math.ceil(duplicates * originals)))):
        emit, _, body = events[i]
        events.append((emit + timedelta(seconds=rng.uniform(60, DUP_DELAY.total_seconds())), len(events), body))
    if invalid > 0:
        for emit, _, body in list(events):
            if rng.random() < invalid:
                events.append((emit, len(events), _invalid(rng, body)))
    events.sort(key=lambda item: (item[0], item[1]))
    return [dict(body) for _, _, body in events]
