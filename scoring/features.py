"""Features of ``docs/features.md`` read lazily from a :class:`scoring.state.CustomerState` at time ``now``.

:class:`FeatureView` is a read-only ``Mapping``: a value is computed on first access and cached, so a
policy that reads three features pays for three (plus one shared pass per event family). Names:
the static names in :data:`STATIC_FEATURES` and the patterns ``monthly_spend_<YYYY-MM>``,
``avg_monthly_spend_<N>m`` (N = 1..36), ``attr.<name>`` and ``assess.<name>``; :func:`is_feature_name`
tells a policy loader whether a name is known. Unknown names raise ``KeyError``.

Cost: the order features share one integer pass over the state's order entries and folded months (the
money is converted to ``Decimal`` per name read); the other features are O(1) reads or a small scan of
their own family; pattern names are parsed once per name (memoized). :func:`next_change` prunes every
source to its first candidate after ``now`` (bit arithmetic on the activity mask, binary search of the
login days) and reuses the state's cached view for ``months_as_customer``; given the *sources* of the
features some policy reads (:func:`time_sources`), it skips the others entirely, so a stream that wakes
customers at their next change wakes them only when a feature it uses can move.

Window semantics: order and ticket windows are exact by timestamp, ``(now - W, now]``; activity and
login windows (30/90 days) and ``paid_12m`` count whole UTC days, the N days ending on now's day.
Orders folded beyond the state's retention count in a window when their month starts inside it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any, Final

from scoring.buckets import (
    DAY,
    EPOCH,
    add_months,
    from_seconds,
    month_label,
    month_of,
    month_start,
    parse_month_label,
    to_seconds,
    units_to_decimal,
    whole_months_between,
)
from scoring.state import (
    FAILED,
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
    IN_TICKETS,
    O_AMT,
    O_DTS,
    O_LAST,
    O_MRG,
    O_PL,
    O_QTY,
    OPENED,
    P_DUE,
    P_FAILED_TS,
    P_FLAGS,
    PAID,
    SHORT_DAYS,
    T_CAT,
    T_FLAGS,
    T_SEV,
    WRITTEN_OFF,
    order_net,
    order_placed_at,
    pay_amount,
    pay_due_at,
    pay_failed_at,
    ticket_opened_at,
)

if TYPE_CHECKING:
    from scoring.state import CustomerState

Y1: Final = 365 * DAY
Y3: Final = 1095 * DAY
_ORDER_SPANS: Final = (("lifetime", None), ("12m", Y1), ("36m", Y3))

_WINDOWED: Final = tuple(
    f"{kind}_{span}" for kind in ("spend", "orders", "quantity", "margin") for span in ("lifetime", "12m", "36m")
)
ORDER_FEATURES: Final = (
    *_WINDOWED, "product_lines_lifetime", "product_lines_12m", "first_purchase_at", "last_purchase_at",
    "days_since_last_purchase", "months_as_customer", "years_as_customer", "repurchase",
)
PAYMENT_FEATURES: Final = (
    "paid_12m", "on_time_ratio", "overdue_amount", "charged_back_amount", "written_off_amount",
    "failed_payments_90d", "bad_debt",
)
LOGIN_FEATURES: Final = ("active_days_30d", "active_days_90d", "logins_30d", "logins_90d", "last_login_at")
TICKET_FEATURES: Final = (
    "tickets_opened_90d", "complaints_90d", "severe_complaints_90d", "open_tickets", "avg_satisfaction",
)
RECENCY_FEATURES: Final = ("last_event_at", "days_since_last_event", "days_since_last_activity")
STATIC_FEATURES: Final[tuple[str, ...]] = (
    *ORDER_FEATURES, *PAYMENT_FEATURES, *LOGIN_FEATURES, *TICKET_FEATURES, *RECENCY_FEATURES
)
#: avg_monthly_spend_<N>m listed when iterating a view (any N in 1..36 can be read).
LISTED_AVG_MONTHS: Final = (1, 3, 6, 12)
MAX_AVG_MONTHS: Final = 36

_AVG_RE: Final = re.compile(r"^avg_monthly_spend_([1-9][0-9]?)m$")
_MONTHLY_RE: Final = re.compile(r"^monthly_spend_(\d{4}-\d{2})$")
_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_Q4: Final = Decimal("0.0001")
_MISS: Final = object()  # "not cached yet" (None is a valid cached value)
_STATIC: Final = frozenset(STATIC_FEATURES)


def is_feature_name(name: str) -> bool:
    """True if ``name`` is a feature any state can answer (static name or a valid pattern instance)."""
    if name in _STATIC:
        return True
    m = _AVG_RE.match(name)
    if m:
        return 1 <= int(m.group(1)) <= MAX_AVG_MONTHS
    m = _MONTHLY_RE.match(name)
    if m:
        return parse_month_label(m.group(1)) is not None
    if name.startswith(("attr.", "assess.")):
        return bool(_NAME_RE.match(name.split(".", 1)[1]))
    return False


def _days(seconds: int) -> float:
    return seconds / DAY


class FeatureView(Mapping[str, Any]):
    """Lazy, cached features of one state at ``now``; see the module docstring for names and semantics.

    Inputs: a state and the evaluation time. Reading a name computes only what it needs: the order
    features share one integer pass over order entries and folded months (money is converted to
    ``Decimal`` per name read), the others are O(1) reads or small scans of their own family.
    """

    __slots__ = ("_cache", "_months", "_now", "_now_s", "_orders", "_state")

    def __init__(self, state: CustomerState, now: datetime) -> None:
        self._state = state
        self._now = now
        delta = now - EPOCH
        self._now_s = delta.days * DAY + delta.seconds  # to_seconds, inlined (one per view)
        self._cache: dict[str, Any] = {}
        self._orders: list | None = None
        self._months: int | None = None  # whole months as customer (two features and next_change read it)

    # Mapping protocol ---------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        value = self._cache.get(name, _MISS)  # a sentinel, not try/except: a first read must not raise
        if value is _MISS:
            fn = _READERS.get(name) or _dynamic(name)
            value = self._cache[name] = fn(self)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        """``Mapping.get`` (``default`` for an unknown name) without its extra call layer: policies read
        every feature through ``get``."""
        value = self._cache.get(name, _MISS)
        if value is _MISS:
            fn = _READERS.get(name) or _dynamic(name)
            try:
                value = fn(self)
            except KeyError:
                return default
            self._cache[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        st = self._state
        yield from STATIC_FEATURES
        for n in LISTED_AVG_MONTHS:
            yield f"avg_monthly_spend_{n}m"
        for month in sorted(st.pay_month):
            yield f"monthly_spend_{month_label(month)}"
        for name in sorted(st.attrs):
            yield f"attr.{name}"
        for name in sorted(st.assess):
            yield f"assess.{name}"

    def __len__(self) -> int:
        st = self._state
        return len(STATIC_FEATURES) + len(LISTED_AVG_MONTHS) + len(st.pay_month) + len(st.attrs) + len(st.assess)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return is_feature_name(name)

    # computation ---------------------------------------------------------------------
    def _order_sums(self) -> list:
        """One integer pass over order entries and folded months (cached per view).

        Returns ``[lifetime, 12m, 36m]`` sums as ``[net, count, qty, margin]`` lists, then the lifetime and
        12m product line index sets and the first / last purchase times (epoch s, or None). Accumulators
        are locals (much faster than list items in CPython); a plain placed order skips ``order_net``.
        """
        sums = self._orders
        if sums is not None:
            return sums
        st = self._state
        base, unit = st.base, st.unit  # stored money x unit = 10^-4 units
        now = self._now_s - base  # entry times count from the state's base
        y1, y3 = now - Y1, now - Y3
        ln = lc = lq = lm = an = ac = aq = am = bn = bc = bq = bm = 0  # lifetime, 12m (a), 36m (b)
        pls_life: set[int] = set(st.folded_pls)
        pls_12: set[int] = set()
        first, last = _NEVER, -_NEVER  # sentinels: cheaper than None checks per entry
        for e in st.orders.d.values():
            if len(e) == O_DTS:  # a plain placed order (the common case): its last event is the placement
                ts = e[O_LAST]
                if ts > now:
                    continue
                net = e[O_AMT] * unit
                qty = e[O_QTY]
                margin = e[O_MRG]
                margin = 0 if margin is None else margin * unit
            else:  # has a cancel / refund / pending marker
                dts = e[O_DTS]
                if dts is None:
                    continue  # pending cancel/refund placeholder: its order has not come
                ts = e[O_LAST] - dts
                if ts > now:
                    continue
                net, count, qty, margin = order_net(e, unit)
                if not count:
                    continue
            ln += net
            lc += 1
            lq += qty
            lm += margin
            pl = e[O_PL]
            if ts > y3:
                bn += net
                bc += 1
                bq += qty
                bm += margin
                if ts > y1:
                    an += net
                    ac += 1
                    aq += qty
                    am += margin
                    if pl >= 0:
                        pls_12.add(pl)
            if pl >= 0:
                pls_life.add(pl)
            if ts < first:
                first = ts
            if ts > last:
                last = ts
        # combine with the folded orders' first / last (absolute times)
        ff, fl = st.folded_first, st.folded_last
        first_at = ff if first == _NEVER else first + base if ff is None else min(ff, first + base)
        last_at = fl if last == -_NEVER else last + base if fl is None else max(fl, last + base)
        now += base
        y1, y3 = now - Y1, now - Y3
        for month, net, count, qty, margin in st.folded_months:
            start = month_start(month)
            if start > now:
                continue
            net *= unit
            margin *= unit
            ln += net
            lc += count
            lq += qty
            lm += margin
            if start > y3:
                bn += net
                bc += count
                bq += qty
                bm += margin
                if start > y1:
                    an += net
                    ac += count
                    aq += qty
                    am += margin
        sums = self._orders = [[ln, lc, lq, lm], [an, ac, aq, am], [bn, bc, bq, bm], pls_life, pls_12,
                               first_at, last_at]
        return sums

    def _customer_since(self) -> datetime | None:
        first = self._order_sums()[5]
        if first is None:
            first = self._state.first_event
        return None if first is None else from_seconds(first)

    def _months_as_customer(self) -> int:
        months = self._months
        if months is None:
            since = self._customer_since()
            months = self._months = 0 if since is None else whole_months_between(since, self._now)
        return months

    def _avg_monthly(self, n: int) -> Decimal:
        current = month_of(self._now_s)
        total = self._state.pay_month_sum(current - n, current)
        return (units_to_decimal(total * self._state.unit) / n).quantize(_Q4, rounding=ROUND_HALF_EVEN)

    def _day_window(self, n: int) -> tuple[int, int]:
        """Inclusive UTC day range of the n-day window ending on now's day."""
        today = self._now_s // DAY
        return today - n + 1, today

    def _active_days(self, n: int) -> int:
        st = self._state
        if st.anchor is None or not st.active:
            return 0
        lo, hi = self._day_window(n)
        anchor_day = st.anchor // DAY
        # bit i is day anchor_day - i: the window is bits anchor_day - hi .. anchor_day - lo
        i_lo, i_hi = max(anchor_day - hi, 0), min(anchor_day - lo, SHORT_DAYS - 1)
        if i_hi < i_lo:
            return 0
        return ((st.active >> i_lo) & ((1 << (i_hi - i_lo + 1)) - 1)).bit_count()

    def _logins(self, n: int) -> int:
        lo, hi = self._day_window(n)
        return self._state.logins.count_days(lo, hi)

    def _paid_12m(self) -> Decimal:
        lo, hi = self._day_window(365)
        total = sum(v for d, v in self._state.pay_day.items() if lo <= d <= hi)
        return units_to_decimal(total * self._state.unit)

    def _overdue(self) -> Decimal:
        st = self._state
        now = self._now_s - st.base
        total = st.pay_counters[4]
        for e in st.pay_entries.d.values():
            if len(e) > P_DUE:
                flags = e[P_FLAGS]
                if flags & FAILED and not flags & (PAID | WRITTEN_OFF) and pay_due_at(e) < now:
                    total += pay_amount(e)
        return units_to_decimal(total * st.unit)

    def _failed_90d(self) -> int:
        now = self._now_s - self._state.base
        count = 0
        for e in self._state.pay_entries.d.values():
            failed = pay_failed_at(e)
            if failed is not None and now - 90 * DAY < failed <= now:
                count += 1
        return count

    def _tickets(self, category: int | None, min_sev: int = 0) -> int:
        now = self._now_s - self._state.base
        count = 0
        for e in self._state.tickets.d.values():
            opened = ticket_opened_at(e)
            if opened is not None and now - 90 * DAY < opened <= now and (category is None or e[T_CAT] == category) \
                    and e[T_SEV] >= min_sev:
                count += 1
        return count

    def _open_tickets(self) -> int:
        return sum(1 for e in self._state.tickets.d.values() if e[T_FLAGS] == OPENED)

    @staticmethod
    def _ratio(num: int, den: int) -> float | None:
        return num / den if den else None

    def _since(self, ts: int | None) -> float | None:
        return None if ts is None else _days(self._now_s - ts)


def _unknown(name: str) -> Any:
    def fail(view: FeatureView) -> Any:
        raise KeyError(name)

    return fail


def _attr(table: str, key: str, name: str, valid: bool) -> Any:
    """Reader of ``attr.<key>`` / ``assess.<key>``: a held value whatever its spelling, else None if the
    name is valid, else KeyError (as before)."""

    def read(view: FeatureView) -> Any:
        entry = getattr(view._state, table).get(key)
        if entry is None:
            if not valid:
                raise KeyError(name)
            return None
        return entry[0]

    return read


def _dynamic(name: str) -> Any:
    """Reader of a pattern feature name, parsed once per valid name and memoized (unknown names raise)."""
    fn = _DYNAMIC.get(name)
    if fn is not None:
        return fn
    valid = True
    if name.startswith("attr."):
        valid = is_feature_name(name)
        fn = _attr("attrs", name[5:], name, valid)
    elif name.startswith("assess."):
        valid = is_feature_name(name)
        fn = _attr("assess", name[7:], name, valid)
    else:
        m = _AVG_RE.match(name)
        if m and 1 <= int(m.group(1)) <= MAX_AVG_MONTHS:
            n = int(m.group(1))
            fn = lambda v: v._avg_monthly(n)  # noqa: E731
        else:
            m = _MONTHLY_RE.match(name)
            month = parse_month_label(m.group(1)) if m else None
            if month is None:
                return _unknown(name)
            fn = lambda v: units_to_decimal(v._state.pay_month.get(month, 0) * v._state.unit)  # noqa: E731
    if valid and len(_DYNAMIC) < _DYNAMIC_MAX:  # arbitrary invalid names must not grow the table
        _DYNAMIC[name] = _READERS[name] = fn
    return fn


#: Parsed pattern names (a policy set reads a fixed, small set of them).
_DYNAMIC: Final[dict[str, Any]] = {}
_DYNAMIC_MAX: Final = 4096


def _order_int(index: int, span: int) -> Any:
    return lambda v: v._order_sums()[span][index]


def _order_money(index: int, span: int) -> Any:
    return lambda v: units_to_decimal(v._order_sums()[span][index])


def _at(ts: int | None) -> datetime | None:
    return None if ts is None else from_seconds(ts)


_SPAN_INDEX: Final = {"lifetime": 0, "12m": 1, "36m": 2}
_STATIC_FNS: Final[dict[str, Any]] = {}
for _span, _i in _SPAN_INDEX.items():
    _STATIC_FNS[f"spend_{_span}"] = _order_money(0, _i)
    _STATIC_FNS[f"orders_{_span}"] = _order_int(1, _i)
    _STATIC_FNS[f"quantity_{_span}"] = _order_int(2, _i)
    _STATIC_FNS[f"margin_{_span}"] = _order_money(3, _i)
_STATIC_FNS.update({
    "product_lines_lifetime": lambda v: len(v._order_sums()[3]),
    "product_lines_12m": lambda v: len(v._order_sums()[4]),
    "first_purchase_at": lambda v: _at(v._order_sums()[5]),
    "last_purchase_at": lambda v: _at(v._order_sums()[6]),
    "days_since_last_purchase": lambda v: v._since(v._order_sums()[6]),
    "repurchase": lambda v: v._order_sums()[0][1] >= 2,
    "months_as_customer": lambda v: v._months_as_customer(),
    "years_as_customer": lambda v: v._months_as_customer() / 12,
    "paid_12m": lambda v: v._paid_12m(),
    "on_time_ratio": lambda v: v._ratio(v._state.pay_counters[1], v._state.pay_counters[0]),
    "overdue_amount": lambda v: v._overdue(),
    "charged_back_amount": lambda v: units_to_decimal(v._state.pay_counters[2] * v._state.unit),
    "written_off_amount": lambda v: units_to_decimal(v._state.pay_counters[3] * v._state.unit),
    "failed_payments_90d": lambda v: v._failed_90d(),
    "bad_debt": lambda v: v._state.pay_counters[3] > 0,
    "active_days_30d": lambda v: v._active_days(30),
    "active_days_90d": lambda v: v._active_days(90),
    "logins_30d": lambda v: v._logins(30),
    "logins_90d": lambda v: v._logins(90),
    "last_login_at": lambda v: _at(v._state.last_login),
    "tickets_opened_90d": lambda v: v._tickets(None),
    "complaints_90d": lambda v: v._tickets(1),
    "severe_complaints_90d": lambda v: v._tickets(1, 3),
    "open_tickets": lambda v: v._open_tickets(),
    "avg_satisfaction": lambda v: v._ratio(v._state.sat[0], v._state.sat[1]),
    "last_event_at": lambda v: v._state.last_event_at,
    "days_since_last_event": lambda v: v._since(v._state.anchor),
    "days_since_last_activity": lambda v: v._since(v._state.last_activity),
})
assert set(_STATIC_FNS) == set(STATIC_FEATURES)
#: Every reader known so far: the static ones and the pattern names parsed (see _dynamic). A view's first
#: read of a name is one lookup here (a policy set reads a fixed, small set of names).
_READERS: Final[dict[str, Any]] = dict(_STATIC_FNS)


def to_json_safe(value: Any) -> Any:
    """A feature value as JSON: Decimal -> string (exact), datetime -> ISO 8601, others unchanged."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def features_json(view: Mapping[str, Any]) -> dict[str, Any]:
    """Every listed feature of a view, JSON-safe, in iteration order."""
    return {name: to_json_safe(view[name]) for name in view}


#: What moves features with time alone, by *source* (the candidates :func:`next_change` schedules), and the
#: features each source moves. A feature not listed under any source does not change with time alone
#: (``days_since_*`` change continuously: scoring.timers schedules their threshold crossings instead).
#: ``order_enter``: an order after ``now`` enters every order feature when ``now`` reaches it (customer
#: since, hence months / years as customer, included); ``month_turn``: complete-month averages
#: (``avg_monthly_spend_<N>m``, pattern names) shift at each month turn.
SOURCE_FEATURES: Final[dict[str, tuple[str, ...]]] = {
    "order_enter": ORDER_FEATURES,
    "order_12m": (*(f"{k}_12m" for k in ("spend", "orders", "quantity", "margin")), "product_lines_12m"),
    "order_36m": tuple(f"{k}_36m" for k in ("spend", "orders", "quantity", "margin")),
    "active_30d": ("active_days_30d",),
    "active_90d": ("active_days_90d",),
    "logins_30d": ("logins_30d",),
    "logins_90d": ("logins_90d",),
    "paid_days": ("paid_12m",),
    "failed_90d": ("failed_payments_90d",),
    "overdue": ("overdue_amount",),
    "tickets_90d": ("tickets_opened_90d", "complaints_90d", "severe_complaints_90d"),
    "month_turn": (),  # avg_monthly_spend_<N>m (pattern names, matched in time_sources)
    "anniversary": ("months_as_customer", "years_as_customer"),
}
ALL_SOURCES: Final[frozenset[str]] = frozenset(SOURCE_FEATURES)


def time_sources(names: Iterable[str]) -> frozenset[str]:
    """The sources of :data:`SOURCE_FEATURES` that can change any of the features ``names`` with time alone.

    Input: feature names (e.g. the union of the loaded policies' ``features_used``). Output: a subset of
    :data:`ALL_SOURCES`; every source when a name is not a known feature (conservative: an unknown name
    might be time-dependent). Pass it to :func:`next_change` to schedule only wake-ups that can move a
    feature some policy reads.
    """
    found: set[str] = set()
    for name in names:
        if name in _STATIC:
            found.update(_SOURCES_OF.get(name, ()))
        elif _AVG_RE.match(name) and is_feature_name(name):
            found.add("month_turn")
        elif not is_feature_name(name):
            return ALL_SOURCES
        # monthly_spend_<YYYY-MM>, attr.*, assess.*: values change only with events
    return frozenset(found)


#: The state parts (scoring.state IN_* bits) each static feature reads at the anchor. Customer since (months /
#: years as customer) is the first purchase, else the first event.
FEATURE_INPUTS: Final[dict[str, int]] = {
    **dict.fromkeys(ORDER_FEATURES, IN_ORDERS),
    "months_as_customer": IN_ORDERS | IN_FIRST,
    "years_as_customer": IN_ORDERS | IN_FIRST,
    **dict.fromkeys(PAYMENT_FEATURES, IN_PAYMENTS),
    "active_days_30d": IN_ACTIVE,
    "active_days_90d": IN_ACTIVE,
    "logins_30d": IN_LOGINS,
    "logins_90d": IN_LOGINS,
    "last_login_at": IN_LAST_LOGIN,
    **dict.fromkeys(TICKET_FEATURES, IN_TICKETS),
    "last_event_at": IN_ANCHOR,
    "days_since_last_event": IN_ANCHOR,
    "days_since_last_activity": IN_ACTIVITY,
}
assert set(FEATURE_INPUTS) == set(STATIC_FEATURES)


def feature_inputs(names: Iterable[str]) -> int:
    """The state parts (IN_* bits) the features ``names`` read: if an event or a compaction changed none of
    them (``CustomerState.touched``), each of those features has the value it had at the previous anchor,
    unless time alone moved it (:func:`next_change`, and the threshold crossings of ``days_since_*``).

    Pattern names: ``avg_monthly_spend_<N>m`` and ``monthly_spend_<YYYY-MM>`` read payments, ``attr.*`` and
    ``assess.*`` the profile; an unknown name reads everything (conservative)."""
    bits = 0
    for name in names:
        known = FEATURE_INPUTS.get(name)
        if known is not None:
            bits |= known
        elif name.startswith(("attr.", "assess.")):
            bits |= IN_PROFILE
        elif _AVG_RE.match(name) or _MONTHLY_RE.match(name):
            bits |= IN_PAYMENTS
        else:
            return IN_ALL
    return bits


_SOURCES_OF: Final[dict[str, tuple[str, ...]]] = {}
for _source, _names in SOURCE_FEATURES.items():
    for _name in _names:
        _SOURCES_OF[_name] = (*_SOURCES_OF.get(_name, ()), _source)


def next_change(state: CustomerState, now: datetime, sources: frozenset[str] = ALL_SOURCES) -> datetime | None:
    """See :meth:`scoring.state.CustomerState.next_change_at`; pure function of state, ``now`` and ``sources``.

    Every source contributes increasing candidate instants (e.g. an order's time, +12 months, +36 months);
    only the first one after ``now`` can be the minimum, so each source costs a comparison or two, and the
    day-keyed sources (activity mask, login days) are found by bit arithmetic / binary search.

    ``sources`` (a subset of :data:`ALL_SOURCES`, see :func:`time_sources`) limits the candidates to the
    sources that move features someone reads: the result is then the earliest instant at which one of
    *those* features changes, never earlier than with every source and never past a change of them
    (each source's candidates are exactly the instants its features move).
    """
    if state.anchor is None:
        return None
    n = to_seconds(now)
    best = _NEVER
    base = state.base
    nb = n - base  # entry times are relative to the base
    o_enter = "order_enter" in sources
    o_12 = "order_12m" in sources
    o_36 = "order_36m" in sources
    if o_enter or o_12 or o_36:
        # the first window stage after now that moves a feature read: entering (all order features), leaving
        # 12 months, leaving 36 months
        for entry in state.orders.d.values():
            ts = entry[O_LAST] if len(entry) <= O_DTS else order_placed_at(entry)  # inlined common case
            if ts is None:
                continue
            # an order "in the future" of now enters windows when now reaches it; then leaves 12m, then 36m
            if ts > nb and o_enter:
                t = ts
            elif o_12 and ts + Y1 > nb:
                t = ts + Y1
            elif o_36 and ts + Y3 > nb:
                t = ts + Y3
            else:
                continue
            if t + base < best:
                best = t + base
    if o_12 or o_36:
        for row in state.folded_months:
            start = month_start(row[0])
            if o_12 and start + Y1 > n:
                t = start + Y1
            elif o_36 and start + Y3 > n:
                t = start + Y3
            else:
                continue
            if t < best:
                best = t
    if state.active:
        # bit i = day anchor_day - i; it leaves the W-day window at (anchor_day - i + W) * DAY, which is after
        # now iff i < anchor_day + W - now_day; the soonest such exit is the highest such set bit
        anchor_day, today = state.anchor // DAY, n // DAY
        for width in _widths(sources, "active_30d", "active_90d"):
            limit = anchor_day + width - today
            if limit > 0:
                bits = state.active & ((1 << limit) - 1)
                if bits:
                    t = (anchor_day - (bits.bit_length() - 1) + width) * DAY
                    if t < best:
                        best = t
    if state.logins:
        today = n // DAY
        for width in _widths(sources, "logins_30d", "logins_90d"):
            day = state.logins.first_day_from(today - width + 1)  # (day + W) * DAY > now
            if day is not None and (day + width) * DAY < best:
                best = (day + width) * DAY
    if "paid_days" in sources:
        for day in state.pay_days():
            t = day * DAY if day * DAY > n else (day + 365) * DAY if (day + 365) * DAY > n else None
            if t is not None and t < best:
                best = t
    failed_90d = "failed_90d" in sources
    overdue = "overdue" in sources
    if failed_90d or overdue:
        for e in state.pay_entries.d.values():
            if len(e) <= P_FAILED_TS:
                continue  # never failed (most payments): nothing scheduled
            failed = pay_failed_at(e)
            if failed is not None:
                if failed_90d and failed + 90 * DAY > nb and failed + 90 * DAY + base < best:
                    best = failed + 90 * DAY + base
                if overdue and not e[P_FLAGS] & (PAID | WRITTEN_OFF) and e[P_FLAGS] & FAILED:
                    due = pay_due_at(e) + 1  # overdue once due_at < now, i.e. just after due_at
                    if due > nb and due + base < best:
                        best = due + base
    if "tickets_90d" in sources:
        for e in state.tickets.d.values():
            opened = ticket_opened_at(e)
            if opened is not None and opened + 90 * DAY > nb and opened + 90 * DAY + base < best:
                best = opened + 90 * DAY + base
    if "month_turn" in sources:
        newest_month = state.pay_month_last()
        if newest_month is not None:
            # complete-month averages shift at every month turn while a paid month is within reach
            current = month_of(n)
            if newest_month >= current - MAX_AVG_MONTHS:
                best = min(best, month_start(current + 1))  # always after now
    if "anniversary" in sources:
        view = state.features(now)  # the cached view of this instant (the decision just read it)
        since = view._customer_since()  # type: ignore[attr-defined]
        if since is not None:
            months = view._months_as_customer()  # type: ignore[attr-defined]  # whole_months_between(since, now)
            t = to_seconds(add_months(since, months + 1))
            if n < t < best:
                best = t
    return None if best == _NEVER else from_seconds(best)


_W30_90: Final = (30, 90)
_W30: Final = (30,)
_W90: Final = (90,)


def _widths(sources: frozenset[str], w30: str, w90: str) -> tuple[int, ...]:
    """The day-window widths (30, 90) whose source is in ``sources``."""
    a, b = w30 in sources, w90 in sources
    return _W30_90 if a and b else _W30 if a else _W90 if b else ()


_NEVER: Final = 1 << 62
