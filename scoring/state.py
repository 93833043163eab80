"""Per-customer state in event time: fold typed events, read features, serialize compactly. Pure.

``CustomerState`` is what the stream keeps per customer (in a table) and what replay folds in memory.
It is deterministic and order independent: applying any permutation of the same event set whose events
are all within the lateness horizon gives byte-identical :meth:`CustomerState.to_bytes` output (apart
from ``tiers``, which the caller owns) and identical features.

Horizon reference (decided here, used by stream and replay alike): the reference time is the
**customer's newest event time** including the event being applied, ``max(last_event_at, occurred_at)``,
not a partition watermark. Callers pass ``horizon_start = state.horizon_start(horizon, occurred_at)``.
A per-customer reference makes the too-late decision depend only on that customer's own events, so
replay (which folds events in file order) and the stream (arrival order) decide identically, whatever
the partitioning or watermark. The horizon must be fixed per deployment (the state derives its
retention from it; the stream's default is the longest window of the loaded policies).

Contents, every part keyed by event time only, retention cut-offs relative to the anchor (the newest
event time) only:
- orders: one entry per order id (hash) for orders whose newest event (placed/cancel/refund) is within
  the retention ``h`` of the anchor: exact timestamp, amount, quantity, margin, product line, cancelled,
  refunded amount and refund event hashes. Older entries are folded into monthly aggregates (long
  windows) and lifetime sets, and the folded order's id is remembered (:data:`FOLDED_ID_BYTES`-byte
  hash) for another ``h``: a later cancel/refund of it is ``too_late`` (its order is beyond the horizon)
  and a second, conflicting "placed" is ``duplicate``. A cancel/refund of an unknown order (its order may
  still come) is kept as a pending placeholder until it leaves ``h``.
- payments: net paid per calendar month (41 months kept) and per UTC day (366 days kept, for
  ``paid_12m``); one entry per payment id (hash) within ``h`` with a status bitmask (dedup by
  payment id and status) and, for failed ones, due time and amount (for ``overdue_amount``).
- activity: a 90-bit mask of active UTC days and the login event hashes per day for the last 90 days.
- tickets: one entry per ticket id within ``h`` (open tickets are kept until closed).
- profile: latest value per attribute / assessment with its (occurred_at µs, event-id hash) stamp.

De-duplication guarantee (exact, bounded by time): orders, payments and tickets are de-duplicated by
their natural keys (order id; order id + cancel; refund event id within its order; payment id +
status; ticket id + action), kept as long as the entry is within ``h`` of the anchor. Login event ids
are remembered for their UTC day while that day is within the last 90 days of the anchor; profile
event ids while their day is within ``h``. Any event older than what is remembered is ``too_late``
(logins older than 90 days before the anchor are too late whatever the horizon: they cannot affect any
login window), so no duplicate can be double-counted. Retention ``h`` is the caller's horizon clamped to
[100, 1100] days.

Exception to order independence (by design): two *different* events for the same natural key (a second
"placed" of an order id, a second cancel, two "paid" events for one payment id, two "opened" for one
ticket id) are conflicting facts from a faulty producer; the first applied wins and the other is reported
``duplicate``.

Serialized form (format :data:`FORMAT_VERSION`, field ``"f"``; documented at :meth:`CustomerState.to_bytes`):
one orjson object whose sections *are* the in-memory structures (entry times relative to a canonical base,
id hashes as base64 text, entry tables in canonical order, dedup memories as sorted binary records, money in
cents unless an amount needed 10^-4), so loading and saving do no per-entry Python work. A state of another
format is refused by :meth:`CustomerState.from_bytes` (format 1 was never persisted); a future format bumps
the version and migrates there.

Performance notes (why the code looks the way it does): entry tables are kept in ``(newest time, id)``
order (:mod:`scoring.state_tables`), so folding costs only the folded entries; each part of the state
(entries, dedup memories, per-day / per-month detail, the time base) has a *due time*, the anchor at which
its oldest item passes its retention, so apply() compacts only when something is due; detail that apply's
decisions never read (login / profile id days, paid months / days) may be evicted up to a week late during
apply and is brought up to date before any read or save, so results never depend on when that ran; the
dedup memories and paid detail are decoded lazily; :meth:`CustomerState.features` keeps its view until the
next apply.
"""

from __future__ import annotations

import binascii
from bisect import bisect_left, insort
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from hashlib import blake2b
from typing import Any, Final

import orjson

from schemas.events import AnyEvent, LoginEvent, OrderEvent, PaymentEvent, ProfileEvent, TicketEvent
from scoring.buckets import DAY, from_seconds, money_units, month_of, month_start, to_micros, to_seconds
from scoring.dedup import DayRecords, id_text
from scoring.state_tables import EntryTable

#: Serialized format version (field ``"f"``). 1: the original relative-time layout (not readable any
#: more: nothing was persisted with it). 2: this layout. Bump on any change and migrate in from_bytes.
FORMAT_VERSION: Final = 2
#: Retention of id-keyed entries is the caller's horizon clamped to this range (days). The minimum
#: keeps every 90-day window exact; the maximum bounds the state (36-month window + slack).
MIN_RETENTION_DAYS: Final = 100
MAX_RETENTION_DAYS: Final = 1100
#: Days of per-day activity / login detail kept before the anchor's day (the longest short window).
SHORT_DAYS: Final = 90
#: Days of per-day paid amounts kept (for ``paid_12m``) and months of monthly spend kept.
PAY_DAYS: Final = 366
PAY_MONTHS: Final = 41
#: Hash widths: login event ids (per day, 90 days), profile event ids, folded order ids.
LOGIN_ID_BYTES: Final = 4
PROFILE_ID_BYTES: Final = 6
FOLDED_ID_BYTES: Final = 4
#: Money units: stored money x ``unit`` = integer 10^-4 units. A state stores cents (unit 100: two digits
#: shorter on the wire) until an applied amount has a third or fourth decimal, then 10^-4 units for good.
CENTS: Final = 100
UNITS: Final = 1
#: Granularity of the entry time base (see :func:`base_for`).
BASE_DAYS: Final = 64
_SHORT_MASK: Final = (1 << SHORT_DAYS) - 1

# Entry times (element 0 of every entry, "last") are seconds since the state's ``base`` (see base_for);
# other times in an entry are deltas back from it, so they never change when the base moves.
# Order entry fields: [newest event time, amount, quantity, product line index, margin, newest - placed
# time (None: not placed yet, a pending cancel/refund), cancelled 0/1, refunded amount, refund event id
# hashes (sorted)]. The first 5 are always present; trailing fields equal to their default are dropped
# (in memory too, so memory and wire are the same lists): a plain placed order is 5 numbers.
O_LAST: Final = 0
O_AMT: Final = 1
O_QTY: Final = 2
O_PL: Final = 3
O_MRG: Final = 4
O_DTS: Final = 5
O_CAN: Final = 6
O_REF: Final = 7
O_RIDS: Final = 8
_ORDER_DEFAULTS: Final[tuple] = (None, 0, 0, -1, None, 0, 0, 0, None)
_ORDER_MIN: Final = 5
# Payment entry fields: [newest event time, status bits, newest - failed event time, newest - due time,
# failed amount]; only the time is mandatory (a plain "paid" entry is [time]).
P_LAST: Final = 0
P_FLAGS: Final = 1
P_FAILED_TS: Final = 2
P_DUE: Final = 3
P_AMT: Final = 4
_PAY_DEFAULTS: Final[tuple] = (None, 1, None, None, 0)
PAID: Final = 1
FAILED: Final = 2
CHARGED_BACK: Final = 4
WRITTEN_OFF: Final = 8
PAY_BITS: Final = {"paid": PAID, "failed": FAILED, "charged_back": CHARGED_BACK, "written_off": WRITTEN_OFF}
# Ticket entry fields (always all present): [newest event time, action bits, newest - opened time (None: not
# opened yet), category, severity].
T_LAST: Final = 0
T_FLAGS: Final = 1
T_OPENED: Final = 2
T_CAT: Final = 3
T_SEV: Final = 4
OPENED: Final = 1
CLOSED: Final = 2
TICKET_CATEGORIES: Final = ("inquiry", "complaint", "other")
_CAT_CODE: Final = {name: i for i, name in enumerate(TICKET_CATEGORIES)}
# Folded-month row: [month, net amount, orders, quantity, margin].
M_MONTH: Final = 0
M_NET: Final = 1
M_COUNT: Final = 2
M_QTY: Final = 3
M_MRG: Final = 4


class ApplyResult(StrEnum):
    """Outcome of :meth:`CustomerState.apply`; compares equal to its string value."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"

    @property
    def outcome(self) -> str:
        """The outcome string (``docs/interfaces.md`` spelling)."""
        return self.value


_APPLIED: Final = ApplyResult.APPLIED
_DUPLICATE: Final = ApplyResult.DUPLICATE
_TOO_LATE: Final = ApplyResult.TOO_LATE

# Feature inputs (bits of CustomerState.touched): the parts of the state features read. apply() and
# compaction set the bit of every part whose content they changed, so a reader that knows which parts a
# feature reads (scoring.features.FEATURE_INPUTS) knows, without computing it, that the feature kept its value
# at the anchor. A bit may be set without a change (conservative), never the other way round.
IN_ORDERS: Final = 1 << 0  # order entries, folded months / product lines / first and last folded order
IN_PAYMENTS: Final = 1 << 1  # payment entries, counters, paid months and days
IN_ACTIVE: Final = 1 << 2  # the set of active days (not its shift as the anchor's day moves)
IN_LOGINS: Final = 1 << 3  # login records per day
IN_LAST_LOGIN: Final = 1 << 4
IN_TICKETS: Final = 1 << 5  # ticket entries, satisfaction
IN_PROFILE: Final = 1 << 6  # attributes, assessments
IN_ANCHOR: Final = 1 << 7  # the newest event time
IN_ACTIVITY: Final = 1 << 8  # the newest non-profile event time
IN_FIRST: Final = 1 << 9  # the first event time
IN_ALL: Final = (1 << 10) - 1
_KIND_INPUT: Final = {"login": IN_LOGINS, "order": IN_ORDERS, "payment": IN_PAYMENTS, "ticket": IN_TICKETS,
                      "profile": IN_PROFILE}
# Compaction parts, each with its own due time (CustomerState._dues).
_P_BASE: Final = 0
_P_ORDERS: Final = 1
_P_PAYS: Final = 2
_P_TICKETS: Final = 3
_P_LOGINS: Final = 4
_P_PROFILE: Final = 5
_P_FOLDED: Final = 6
_P_MONTHS: Final = 7
_P_DAYS: Final = 8
_PARTS: Final = 9
#: Parts only read by features / serialization, never by apply's decisions (too-late checks are explicit):
#: apply evicts them up to _SLACK late (fewer compactions); reads and saves catch up exactly (_canonical).
_LAZY_PARTS: Final = (_P_LOGINS, _P_PROFILE, _P_MONTHS, _P_DAYS)
_SLACK: Final = 7 * DAY
_EXACT_PARTS: Final = tuple(i for i in range(_PARTS) if i not in _LAZY_PARTS)
assert _EXACT_PARTS == (_P_BASE, _P_ORDERS, _P_PAYS, _P_TICKETS, _P_FOLDED)  # spelled out in _compact (hot)
_NEVER: Final = 1 << 62
_FeatureView: Any = None  # scoring.features.FeatureView, imported on first use
_MIN_US: Final = to_micros(datetime(1, 1, 2, tzinfo=UTC))  # horizon starts at or before this: no horizon
_H_MIN: Final = MIN_RETENTION_DAYS * DAY
_H_MAX: Final = MAX_RETENTION_DAYS * DAY


def order_placed_at(entry: list) -> int | None:
    """Placed time of an order entry (epoch seconds), None for a pending cancel/refund placeholder."""
    if len(entry) > O_DTS:
        delta = entry[O_DTS]
        return None if delta is None else entry[O_LAST] - delta
    return entry[O_LAST]


def order_net(entry: list, unit: int = 1) -> tuple[int, int, int, int]:
    """Net effect of a placed order entry: ``(amount, counted 0/1, quantity, margin)`` in 10^-4 units.

    ``unit`` is the state's money unit (stored money x unit = 10^-4 units, see ``CustomerState.unit``).
    Cancelled or fully refunded orders count nothing; a partial refund reduces amount and margin pro rata
    (margin rounded half-even to 10^-4) and keeps the order and its quantity.
    """
    amount = entry[O_AMT] * unit
    if len(entry) <= O_CAN:  # no cancel / refund recorded: the common, fast case
        return amount, 1, entry[O_QTY], (entry[O_MRG] or 0) * unit
    if entry[O_CAN]:
        return 0, 0, 0, 0
    refunded = entry[O_REF] * unit if len(entry) > O_REF else 0
    net = amount - refunded
    if net <= 0 and (amount > 0 or refunded > 0):
        return 0, 0, 0, 0
    margin = (entry[O_MRG] or 0) * unit
    if refunded and margin:
        margin = round(Fraction(margin * net, amount))
    return net, 1, entry[O_QTY], margin


def pay_failed_at(entry: list) -> int | None:
    """Failed event time of a payment entry (relative to the state's ``base``), None if never failed."""
    if len(entry) > P_FAILED_TS and entry[P_FAILED_TS] is not None:
        return entry[P_LAST] - entry[P_FAILED_TS]
    return None


def pay_due_at(entry: list) -> int:
    """Due time of a failed payment entry (relative to the state's ``base``)."""
    return entry[P_LAST] - entry[P_DUE]


def ticket_opened_at(entry: list) -> int | None:
    """Opened time of a ticket entry (relative to the state's ``base``), None if only its close is known."""
    delta = entry[T_OPENED]
    return None if delta is None else entry[T_LAST] - delta


def base_for(anchor: int, h: int) -> int:
    """Canonical time base of entry times: the retention cut's day rounded down to :data:`BASE_DAYS` days.

    A pure function of the anchor and ``h`` that changes at most every ``BASE_DAYS`` days (then every entry
    time is shifted once); every entry is at or after it (entries older than the cut are folded), so
    entry times are small non-negative numbers (2 digits shorter than epoch seconds on the wire).
    """
    cut_day = (anchor - h) // DAY
    return (cut_day - cut_day % BASE_DAYS) * DAY


def pay_flags(entry: list) -> int:
    """Status bits of a payment entry."""
    return entry[P_FLAGS] if len(entry) > P_FLAGS else PAID


def pay_amount(entry: list) -> int:
    """Failed amount of a payment entry (0 when none recorded)."""
    return entry[P_AMT] if len(entry) > P_AMT else 0


def _grow(entry: list, n: int, defaults: tuple) -> None:
    """Pad a trimmed entry with defaults to at least ``n`` fields (before writing a trailing field)."""
    if len(entry) < n:
        entry.extend(defaults[len(entry) : n])


def _trim(entry: list, minimum: int, defaults: tuple) -> None:
    """Drop trailing fields equal to their default (same type), keeping ``minimum`` fields: canonical form."""
    n = len(entry)
    while n > minimum and entry[n - 1] == defaults[n - 1] and type(entry[n - 1]) is type(defaults[n - 1]):
        n -= 1
    del entry[n:]


def _digest_text(value: str, size: int) -> tuple[bytes, str]:
    digest = blake2b(value.encode(), digest_size=size).digest()
    return digest, binascii.b2a_base64(digest, newline=False).decode()


def _open_ticket(entry: list) -> bool:
    return entry[T_FLAGS] == OPENED


class CustomerState:
    """All a customer's event-derived state; see the module docstring for contents and guarantees.

    Public attributes: ``customer_id``; ``version`` (+1 per applied event, not on duplicates or too-late);
    ``tiers`` (opaque per-policy bookkeeping owned by the stream, round-tripped unchanged). The other
    attributes are read by :mod:`scoring.features`; their layouts are the module constants above.
    """

    __slots__ = (
        "_due_at",
        "_due_exact",
        "_due_h",
        "_dues",
        "_fo",
        "_led",
        "_lg",
        "_pd",
        "_pd_wire",
        "_pls_dirty",
        "_pm",
        "_pm_dirty",
        "_pm_wire",
        "_profile_ids",
        "_stamps_dirty",
        "_view",
        "active",
        "anchor",
        "assess",
        "attrs",
        "base",
        "customer_id",
        "first_event",
        "folded_first",
        "folded_last",
        "folded_months",
        "folded_pls",
        "h",
        "last_activity",
        "last_login",
        "orders",
        "pay_counters",
        "pay_entries",
        "pls",
        "sat",
        "stamps",
        "tickets",
        "tiers",
        "touched",
        "unit",
        "version",
    )

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.version = 0
        self.tiers: dict[str, dict] = {}
        self.anchor: int | None = None  # newest occurred_at applied, epoch seconds
        self.h = _H_MAX  # retention (seconds), from the caller's horizon
        self.base = 0  # epoch seconds that entry times count from (base_for(anchor, h))
        self.unit = CENTS  # stored money x unit = 10^-4 units (CENTS or UNITS, see _money)
        self.first_event: int | None = None
        self.last_activity: int | None = None
        self.last_login: int | None = None
        self.pls: list[str] = []  # product line names; entries and folded_pls hold indices into it
        self._pls_dirty = False  # pls may be unsorted or hold an unused name (canonicalized when saving)
        self.orders = EntryTable()
        self.folded_months: list[list[int]] = []  # rows [month, net, count, qty, margin], by month
        self.folded_pls: list[int] = []  # sorted product line indices of folded orders
        self.folded_first: int | None = None
        self.folded_last: int | None = None
        self._fo = DayRecords(FOLDED_ID_BYTES)  # folded order ids by the day of their newest event
        self._pm: dict[int, int] | None = {}  # month -> net paid (decoded lazily from _pm_wire)
        self._pm_wire: list | None = None
        self._pm_dirty = False
        self._pd: dict[int, int] | None = {}  # UTC day -> net paid (decoded lazily from _pd_wire)
        self._pd_wire: list | None = None
        self.pay_entries = EntryTable()
        self.pay_counters = [0, 0, 0, 0, 0]  # paid_n, on_time_n, charged_back, written_off, overdue_folded
        self.active = 0  # bit i: UTC day (anchor_day - i) had activity
        self._lg = DayRecords(LOGIN_ID_BYTES)
        self.tickets = EntryTable()
        self.sat = [0, 0]  # satisfaction sum, count (closed tickets, lifetime)
        self.attrs: dict[str, list] = {}  # name -> [value, index into stamps]
        self.assess: dict[str, list] = {}
        self.stamps: list[list] = []  # [occurred_at µs, event hash text] of the latest values, sorted
        self._stamps_dirty = False  # stamps may be unsorted / hold unused stamps (canonicalized when saving)
        self._profile_ids = DayRecords(PROFILE_ID_BYTES)
        # Compaction (folding, eviction, rebasing) has work only once the anchor reaches _due_at: the
        # earliest anchor at which any held item passes its retention (None: not computed yet, e.g. after
        # from_bytes). Adding an item lowers it; a change of h forces a compaction. Skipping compactions that
        # would do nothing is what keeps apply() O(1) for customers with fewer than one event a day.
        self._due_at: int | None = None
        self._due_exact: int | None = None  # min of _dues: the state is canonical while the anchor is below it
        self._due_h = 0
        self._dues: list[int] | None = None  # per part (_P_*), see _compact
        self._led: datetime | None = None  # cached last_event_at (datetime of anchor)
        self._view: Any = None  # FeatureView of the last features() call, until the next apply
        #: IN_* bits of the parts changed since the state was made or loaded, or since the reader last
        #: cleared it (streams.decide does after each decision). Not serialized.
        self.touched = 0

    # ------------------------------------------------------------------ lazily decoded parts
    @property
    def pay_month(self) -> dict[int, int]:
        """Net paid per month index (paid minus charged back), months within :data:`PAY_MONTHS`."""
        pm = self._pm
        if pm is None:
            pm = self._pm = {}
            wire = self._pm_wire or ()
            for i in range(0, len(wire), 2):  # runs: first month, values of consecutive months
                pm.update(zip(range(wire[i], wire[i] + len(wire[i + 1])), wire[i + 1], strict=True))
        return pm

    def pay_month_sum(self, lo: int, hi: int) -> int:
        """Net paid over months ``lo <= month < hi`` (read from the encoded runs when not decoded)."""
        pm = self._pm
        if pm is not None:
            return sum(pm.get(m, 0) for m in range(lo, hi)) if pm else 0
        wire, total = self._pm_wire or (), 0
        for i in range(0, len(wire), 2):
            start, values = wire[i], wire[i + 1]
            a, b = max(lo, start), min(hi, start + len(values))
            if a < b:
                total += sum(values[a - start : b - start])
        return total

    def pay_month_last(self) -> int | None:
        """Newest month with a net-paid entry, None if none."""
        pm = self._pm
        if pm is not None:
            return max(pm) if pm else None
        wire = self._pm_wire
        return wire[-2] + len(wire[-1]) - 1 if wire else None

    def pay_days(self) -> list[int]:
        """The UTC days holding a net-paid amount (unordered; no decoding of the amounts)."""
        pd = self._pd
        if pd is not None:
            return list(pd)
        base_day = self.base // DAY
        return [d + base_day for d in (self._pd_wire or [])[::2]]

    @property
    def pay_day(self) -> dict[int, int]:
        """Net paid per UTC day index, days within :data:`PAY_DAYS`."""
        pd = self._pd
        if pd is None:
            wire = self._pd_wire or []
            base_day = self.base // DAY  # encoded days are relative to it (3 digits instead of 5)
            pd = self._pd = dict(zip([d + base_day for d in wire[::2]], wire[1::2], strict=True))
        return pd

    @property
    def logins(self) -> DayRecords:
        """Login event id hashes by UTC day (last :data:`SHORT_DAYS` days)."""
        return self._lg

    @property
    def profile_ids(self) -> DayRecords:
        """Profile event id hashes by UTC day (within ``h``)."""
        return self._profile_ids

    # ------------------------------------------------------------------ construction
    @classmethod
    def new(cls, customer_id: str) -> CustomerState:
        """An empty state (version 0, no events)."""
        return cls(customer_id)

    @property
    def last_event_at(self) -> datetime | None:
        """Newest ``occurred_at`` applied (second resolution), None before the first event."""
        led = self._led
        if led is None and self.anchor is not None:
            led = self._led = from_seconds(self.anchor)
        return led

    def horizon_start(self, horizon: timedelta, occurred_at: datetime) -> datetime:
        """The ``horizon_start`` to pass to :meth:`apply` for an event at ``occurred_at``:
        ``max(last_event_at, occurred_at) - horizon`` (the stream worker computes exactly this)."""
        newest = self.last_event_at
        if newest is None or occurred_at > newest:
            newest = occurred_at
        return newest - horizon

    # ------------------------------------------------------------------ apply
    def apply(self, event: AnyEvent, horizon_start: datetime) -> ApplyResult:
        """Fold one validated event into the state.

        Inputs: the event (``schemas.events``) for this customer and ``horizon_start`` (=
        :meth:`horizon_start` ``(horizon, event.occurred_at)``; a fixed horizon per deployment).
        Output: ``applied``, ``duplicate`` (already counted; state unchanged) or ``too_late``
        (``occurred_at < horizon_start``, older than the state remembers, or a cancel/refund of an order
        already folded; state unchanged, the caller dead-letters it). ``version`` grows by one iff applied.
        :meth:`apply_micros` with both times as epoch microseconds (exact: the same result).
        """
        return self.apply_micros(event, to_micros(event.occurred_at), to_micros(horizon_start))

    def apply_micros(self, event: AnyEvent, at: int, horizon_start: int) -> ApplyResult:
        """:meth:`apply` with ``event.occurred_at`` as ``at`` and ``horizon_start`` both given as integer epoch
        microseconds (:func:`scoring.buckets.to_micros`), which is what the stream worker passes.

        Why integers: event times carry their producer's UTC offset (pydantic's own ``TzInfo``), and every
        comparison or subtraction of two datetimes with different ``tzinfo`` objects calls ``utcoffset`` on
        both through a method lookup by name: about a sixth of the batch core's instructions went to that
        (callgrind, session 16). Microseconds compare exactly as the datetimes did."""
        self._view = None  # any change invalidates the cached feature view
        if at < horizon_start:
            return _TOO_LATE
        ts = at // 1_000_000  # floored epoch seconds, as to_seconds
        anchor = self.anchor
        if horizon_start > _MIN_US:
            # The caller's horizon, recovered from its reference max(newest, occurred_at): retention follows it.
            derived = (ts if anchor is None or ts > anchor else anchor) - horizon_start // 1_000_000
            self.h = _H_MIN if derived < _H_MIN else _H_MAX if derived > _H_MAX else derived
        if anchor is None:
            self.base = base_for(ts, self.h)
        elif ts < anchor - self.h:
            return _TOO_LATE
        kind = event.type
        active, last_login = self.active, self.last_login  # before: what the event touched (self.touched)
        if kind == "login":
            result = self._login(event, ts)  # type: ignore[arg-type]
        elif kind == "order":
            result = self._order(event, ts)  # type: ignore[arg-type]
        elif kind == "payment":
            result = self._payment(event, ts)  # type: ignore[arg-type]
        elif kind == "ticket":
            result = self._ticket(event, ts)  # type: ignore[arg-type]
        else:
            result = self._profile(event, ts)  # type: ignore[arg-type]
        if result is _APPLIED:
            self.version += 1
            touched = self.touched | _KIND_INPUT[kind]
            if self.first_event is None or ts < self.first_event:
                self.first_event = ts
                touched |= IN_FIRST
            if kind != "profile" and (self.last_activity is None or ts > self.last_activity):
                self.last_activity = ts
                touched |= IN_ACTIVITY
            if self.last_login != last_login:
                touched |= IN_LAST_LOGIN
            now_anchor = self.anchor
            if anchor is None:
                touched = IN_ALL
            elif now_anchor != anchor:
                touched |= IN_ANCHOR
                shift = now_anchor // DAY - anchor // DAY  # type: ignore[operator]
                if shift:  # the mask moved with the anchor's day: compare the moved old mask
                    active = (active << shift) & _SHORT_MASK if shift < SHORT_DAYS else 0
            if self.active != active:
                touched |= IN_ACTIVE
            self.touched = touched
        anchor = self.anchor
        if anchor is not None:
            due = self._due_at
            if due is None or anchor >= due or self.h != self._due_h:
                self._compact()
        return result

    def _advance(self, ts: int) -> None:
        """Move the anchor to ``ts`` if newer, shifting the per-day activity mask (day-relative)."""
        anchor = self.anchor
        if anchor is None:
            self.anchor = ts
            self._led = None
        elif ts > anchor:
            shift = ts // DAY - anchor // DAY
            if shift:
                self.active = (self.active << shift) & _SHORT_MASK if shift < SHORT_DAYS else 0
            self.anchor = ts
            self._led = None

    def _mark_active(self, ts: int) -> None:
        i = self.anchor // DAY - ts // DAY  # type: ignore[operator]
        if 0 <= i < SHORT_DAYS:
            self.active |= 1 << i

    def _login(self, event: LoginEvent, ts: int) -> ApplyResult:
        # The most frequent event: _advance / _mark_active / _lower_due are inlined here.
        day = ts // DAY
        anchor = self.anchor
        if anchor is not None and day <= anchor // DAY - SHORT_DAYS:
            # Logins only feed 30/90-day windows; older ones cannot be de-duplicated any more.
            return _TOO_LATE
        digest = blake2b(event.event_id.encode(), digest_size=LOGIN_ID_BYTES).digest()
        if not self._lg.add(day, digest):
            return _DUPLICATE
        dues = self._dues
        if dues is not None and (day + SHORT_DAYS) * DAY < dues[_P_LOGINS]:
            self._lower_due(_P_LOGINS, (day + SHORT_DAYS) * DAY)
        if anchor is None or ts > anchor:
            self._advance(ts)
            self.active |= 1  # the anchor's own day
        else:
            i = anchor // DAY - day
            if i < SHORT_DAYS:
                self.active |= 1 << i
        if self.last_login is None or ts > self.last_login:
            self.last_login = ts
        return _APPLIED

    def _pl_index(self, name: str | None) -> int:
        """Index of a product line name in ``pls`` (appended if new; canonicalized when serializing)."""
        if name is None:
            return -1
        pls = self.pls
        try:
            return pls.index(name)
        except ValueError:
            pls.append(name)
            self._pls_dirty = True
            return len(pls) - 1

    def _order(self, event: OrderEvent, ts: int) -> ApplyResult:
        key = id_text(event.order_id)
        table = self.orders
        entry = table.d.get(key)
        status = event.status
        if entry is None:
            if self._fo and self._folded_order(key):
                # Its order is folded (beyond the horizon): a cancel/refund comes too late to net it; a
                # second "placed" is a conflicting fact (the first, folded one, won).
                return _DUPLICATE if status == "placed" else _TOO_LATE
        elif status == "placed":
            if order_placed_at(entry) is not None:
                return _DUPLICATE
        elif status == "cancelled" and len(entry) > O_CAN and entry[O_CAN]:
            return _DUPLICATE
        rid = ""
        if status == "refunded":
            rid = id_text(event.event_id)
            if entry is not None and len(entry) > O_RIDS and rid in entry[O_RIDS]:
                return _DUPLICATE
        # money first: if an amount switches the state's unit, that must happen before any value is read
        if status == "placed":
            amount, margin = self._money(event.amount, event.margin)
        elif status == "refunded":
            amount, margin = self._money(event.amount, None)
        self._advance(ts)
        t = ts - self.base
        if entry is None:
            entry = [t, 0, 0, -1, None, None]  # placeholder until "placed" arrives
            placed = None
            is_new, moved = True, False
        else:
            placed = order_placed_at(entry)
            is_new, moved = False, t > entry[O_LAST]
            if moved:
                entry[O_LAST] = t
        if status == "placed":
            placed = t
            entry[O_AMT] = amount
            entry[O_QTY] = event.quantity
            entry[O_PL] = self._pl_index(event.product_line)
            entry[O_MRG] = margin
        elif status == "cancelled":
            _grow(entry, O_CAN + 1, _ORDER_DEFAULTS)
            entry[O_CAN] = 1
        else:
            _grow(entry, O_RIDS + 1, _ORDER_DEFAULTS)
            entry[O_REF] += amount
            if entry[O_RIDS] is None:
                entry[O_RIDS] = [rid]
            else:
                insort(entry[O_RIDS], rid)
        dts = None if placed is None else entry[O_LAST] - placed
        if dts != 0 or len(entry) > O_DTS:
            _grow(entry, O_DTS + 1, _ORDER_DEFAULTS)
            entry[O_DTS] = dts
        _trim(entry, _ORDER_MIN, _ORDER_DEFAULTS)
        if is_new:
            table.insert(key, entry)
            self._lower_due(_P_ORDERS, (ts // DAY + 1) * DAY + self.h)
        elif moved:
            table.touch(key)
        self._mark_active(ts)
        return _APPLIED

    def _money(self, amount: Any, other: Any) -> tuple[int, int | None]:
        """The money amounts of an applied event (``other`` may be None) in the state's unit, switching the
        state to 10^-4 units, for good, if one has a third or fourth decimal. Call it before reading stored
        money. Called for every amount an applied event carries, stored or not, so the unit is a function of
        the applied event set: order independent."""
        units = money_units(amount)
        more = None if other is None else money_units(other)
        if self.unit == CENTS:
            if units % CENTS or (more is not None and more % CENTS):
                self._to_units()
                return units, more
            return units // CENTS, None if more is None else more // CENTS
        return units, more

    def _to_units(self) -> None:
        """Convert every stored money value from cents to 10^-4 units (once in a state's life)."""
        factor = CENTS
        self.unit = UNITS
        for entry in self.orders.d.values():
            entry[O_AMT] *= factor
            if entry[O_MRG] is not None:
                entry[O_MRG] *= factor
            if len(entry) > O_REF:
                entry[O_REF] *= factor
        for entry in self.pay_entries.d.values():
            if len(entry) > P_AMT:
                entry[P_AMT] *= factor
        for row in self.folded_months:
            row[M_NET] *= factor
            row[M_MRG] *= factor
        pm = self.pay_month
        for month in pm:
            pm[month] *= factor
        self._pm_dirty = True
        pd = self.pay_day
        for day in pd:
            pd[day] *= factor
        self._pd_wire = None
        counters = self.pay_counters
        for i in (2, 3, 4):
            counters[i] *= factor

    def _folded_order(self, key: str) -> bool:
        """True if the order id hash text ``key`` was folded (and is still remembered)."""
        return self._fo.has_hash(binascii.a2b_base64(key)[:FOLDED_ID_BYTES])

    def _payment(self, event: PaymentEvent, ts: int) -> ApplyResult:
        key = id_text(event.payment_id)
        bit = PAY_BITS[event.status]
        table = self.pay_entries
        entry = table.d.get(key)
        if entry is not None and pay_flags(entry) & bit:
            return _DUPLICATE
        units = self._money(event.amount, None)[0]  # before reading any stored money (may switch the unit)
        self._advance(ts)
        t = ts - self.base
        if entry is None:
            entry = [t, bit]
            is_new, moved = True, False
        else:
            _grow(entry, P_FLAGS + 1, _PAY_DEFAULTS)
            entry[P_FLAGS] |= bit
            is_new, moved = False, t > entry[P_LAST]
            if moved:
                shift = t - entry[P_LAST]
                entry[P_LAST] = t
                if len(entry) > P_DUE and entry[P_FAILED_TS] is not None:  # deltas back from the newest time
                    entry[P_FAILED_TS] += shift
                    entry[P_DUE] += shift
        counters = self.pay_counters
        if bit in (PAID, CHARGED_BACK):
            money_ts = to_seconds(event.paid_at) if event.paid_at is not None else ts
            signed = units if bit == PAID else -units
            month = month_of(money_ts)
            if month >= month_of(self.anchor) - PAY_MONTHS + 1:  # type: ignore[arg-type]
                pm = self.pay_month
                if month not in pm:
                    self._lower_due(_P_MONTHS, month_start(month + PAY_MONTHS))
                pm[month] = pm.get(month, 0) + signed
                self._pm_dirty = True
            day = money_ts // DAY
            if day > self.anchor // DAY - PAY_DAYS:  # type: ignore[operator]
                pd = self.pay_day
                if day not in pd:
                    self._lower_due(_P_DAYS, (day + PAY_DAYS) * DAY)
                pd[day] = pd.get(day, 0) + signed
                self._pd_wire = None  # re-encode from the dict
            if bit == PAID:
                counters[0] += 1
                if event.due_at is None or money_ts <= to_seconds(event.due_at):
                    counters[1] += 1
            else:
                counters[2] += units
        elif bit == WRITTEN_OFF:
            counters[3] += units
        else:  # failed
            _grow(entry, P_AMT + 1, _PAY_DEFAULTS)
            last = entry[P_LAST]
            entry[P_FAILED_TS] = last - t
            entry[P_DUE] = last - (to_seconds(event.due_at) - self.base if event.due_at is not None else t)
            entry[P_AMT] = units
        _trim(entry, 1, _PAY_DEFAULTS)
        if is_new:
            table.insert(key, entry)
            self._lower_due(_P_PAYS, (ts // DAY + 1) * DAY + self.h)
        elif moved:
            table.touch(key)
        self._mark_active(ts)
        return _APPLIED

    def _ticket(self, event: TicketEvent, ts: int) -> ApplyResult:
        key = id_text(event.ticket_id)
        bit = OPENED if event.action == "opened" else CLOSED
        table = self.tickets
        entry = table.d.get(key)
        if entry is not None and entry[T_FLAGS] & bit:
            return _DUPLICATE
        self._advance(ts)
        t = ts - self.base
        if entry is None:
            entry = [t, 0, None, _CAT_CODE[event.category], 0]
            is_new, moved = True, False
        else:
            is_new, moved = False, t > entry[T_LAST]
            if moved:
                if entry[T_OPENED] is not None:  # a delta back from the newest time
                    entry[T_OPENED] += t - entry[T_LAST]
                entry[T_LAST] = t
        entry[T_FLAGS] |= bit
        if bit == OPENED:
            entry[T_OPENED] = entry[T_LAST] - t
            entry[T_CAT] = _CAT_CODE[event.category]
            entry[T_SEV] = event.severity or 0
        elif event.satisfaction is not None:
            self.sat[0] += event.satisfaction
            self.sat[1] += 1
        if is_new:
            table.insert(key, entry)
        elif moved:
            table.touch(key)
        if entry[T_FLAGS] != OPENED:  # closed (or close-only): folds once its newest event leaves h
            self._lower_due(_P_TICKETS, ((entry[T_LAST] + self.base) // DAY + 1) * DAY + self.h)
        self._mark_active(ts)
        return _APPLIED

    def _profile(self, event: ProfileEvent, ts: int) -> ApplyResult:
        digest, text = _digest_text(event.event_id, PROFILE_ID_BYTES)
        if not self._profile_ids.add(ts // DAY, digest):
            return _DUPLICATE
        self._lower_due(_P_PROFILE, (ts // DAY + 1) * DAY + self.h)
        self._advance(ts)
        stamp = to_micros(event.occurred_at)
        if event.attributes is not None:
            attrs = self.attrs
            if self._latest_all(attrs, event.attributes.model_dump(exclude_unset=True).items(), stamp, digest, text):
                self.attrs = dict(sorted(attrs.items()))  # a new name: keep the canonical (sorted) order
        if event.assessments:
            scores = ((name, float(score)) for name, score in event.assessments.items())
            if self._latest_all(self.assess, scores, stamp, digest, text):
                self.assess = dict(sorted(self.assess.items()))
        return _APPLIED

    def _latest_all(self, table: dict[str, list], items: Any, stamp: int, digest: bytes, text: str) -> bool:
        """Latest-wins per name by (occurred_at µs, event-id hash bytes): commutative, so arrival order does
        not matter. Returns True if a name was added (the caller re-sorts the table)."""
        stamps = self.stamps
        added = False
        index = -1
        for name, value in items:
            cur = table.get(name)
            if cur is None:
                added = True
            else:
                old = stamps[cur[1]]
                if (stamp, digest) <= (old[0], binascii.a2b_base64(old[1])):
                    continue
            if index < 0:
                index = len(stamps)
                stamps.append([stamp, text])
                self._stamps_dirty = True
            table[name] = [value, index]
        return added

    def _canonical_stamps(self) -> None:
        """Keep only referenced stamps, sorted, and re-point the attribute / assessment indices."""
        self._stamps_dirty = False
        stamps = self.stamps
        used = sorted({(stamps[v[1]][0], stamps[v[1]][1]) for t in (self.attrs, self.assess) for v in t.values()})
        position = {item: i for i, item in enumerate(used)}
        for table in (self.attrs, self.assess):
            for v in table.values():
                old = stamps[v[1]]
                v[1] = position[(old[0], old[1])]
        self.stamps = [list(item) for item in used]

    # ------------------------------------------------------------------ compaction
    def _compact(self) -> None:
        """Fold / forget everything older than the cut-offs (functions of anchor and ``h`` only).

        Id-keyed entries whose newest event is on a day before the cut's day are folded; per-day and
        per-month detail beyond its window is dropped. Nothing within the horizon is touched, which is
        why intermediate compactions never change the final state of an in-horizon event set. Runs (from
        apply) as soon as any part holds an item past its retention, and then only the parts that do (each
        has its own due time), so the state is always canonical: no catch-up before reading or saving.
        """
        anchor, h = self.anchor, self.h
        assert anchor is not None
        self._view = None  # the content may change
        dues = self._dues
        if dues is None or h != self._due_h:
            dues = self._dues = [anchor] * _PARTS  # h changed (or first time): every part is due
        self._due_h = h
        anchor_day = anchor // DAY
        cut_day = (anchor - h) // DAY
        if anchor >= dues[_P_BASE]:
            base = base_for(anchor, h)
            if base != self.base:
                self._rebase(base)
            dues[_P_BASE] = (self.base // DAY + BASE_DAYS) * DAY + h  # when the cut's day reaches the next base
        cut = cut_day * DAY - self.base
        if anchor >= dues[_P_ORDERS]:
            folded = self.orders.pop_older(cut)
            if folded:
                # nets in 10^-4 units first: if one (a pro-rata margin) needs them, switch the state's unit
                # before folding any (the popped entries are no longer in the table the switch converts)
                unit = self.unit
                nets = [order_net(entry, unit) for _, entry in folded]
                if unit != UNITS and any(net % CENTS or margin % CENTS for net, _, _, margin in nets):
                    self._to_units()
                for (key, entry), net in zip(folded, nets, strict=True):
                    self._fold_order(key, entry, net)  # adds folded ids: their part is recomputed below
                self.touched |= IN_ORDERS  # a folded order counts by its month in windows: values may move
            dues[_P_ORDERS] = self._entry_due(self.orders.oldest())
            dues[_P_FOLDED] = anchor
        if anchor >= dues[_P_PAYS]:
            for _, entry in self.pay_entries.pop_older(cut):
                flags = pay_flags(entry)
                if flags & FAILED and not flags & (PAID | WRITTEN_OFF):
                    self.pay_counters[4] += pay_amount(entry)  # still unpaid: overdue for good
                self.touched |= IN_PAYMENTS
            dues[_P_PAYS] = self._entry_due(self.pay_entries.oldest())
        if anchor >= dues[_P_TICKETS]:
            if self.tickets.pop_older(cut, keep=_open_ticket):  # open tickets stay until closed
                self.touched |= IN_TICKETS
            dues[_P_TICKETS] = self._entry_due(self._oldest_closed_ticket())
        # Login days, profile / folded ids and paid days evicted below change no feature at the anchor (the
        # longest login window is SHORT_DAYS, paid_12m 365 of the PAY_DAYS kept; ids only de-duplicate):
        # no touched bit. Paid months do (monthly_spend_<YYYY-MM>): _evict_months sets its bit.
        if anchor >= dues[_P_LOGINS]:
            self._lg.evict(anchor_day - SHORT_DAYS + 1)
            day = self._lg.first_day()
            dues[_P_LOGINS] = _NEVER if day is None else (day + SHORT_DAYS) * DAY
        if anchor >= dues[_P_PROFILE]:
            self._profile_ids.evict(cut_day)
            day = self._profile_ids.first_day()
            dues[_P_PROFILE] = _NEVER if day is None else (day + 1) * DAY + h
        if anchor >= dues[_P_FOLDED]:
            self._fo.evict(cut_day - h // DAY)
            day = self._fo.first_day()
            dues[_P_FOLDED] = _NEVER if day is None else (day + h // DAY + 1) * DAY + h
        if anchor >= dues[_P_MONTHS]:
            self._evict_months(month_of(anchor) - PAY_MONTHS + 1)
            # oldest month: the still-encoded runs start with it (sorted), no need to decode them for that
            pm, wire = self._pm, self._pm_wire
            month = min(pm, default=None) if pm is not None else wire[0] if wire else None
            dues[_P_MONTHS] = _NEVER if month is None else month_start(month + PAY_MONTHS)
        if anchor >= dues[_P_DAYS]:
            self._evict_days(anchor_day - PAY_DAYS)
            # oldest day: likewise the first of the still-encoded (sorted, base-day relative) days
            pd, wire = self._pd, self._pd_wire
            day = min(pd, default=None) if pd is not None else wire[0] + self.base // DAY if wire else None
            dues[_P_DAYS] = _NEVER if day is None else (day + PAY_DAYS) * DAY
        self._due_exact = min(dues)
        exact = min(dues[_P_BASE], dues[_P_ORDERS], dues[_P_PAYS], dues[_P_TICKETS], dues[_P_FOLDED])
        lazy = min(dues[_P_LOGINS], dues[_P_PROFILE], dues[_P_MONTHS], dues[_P_DAYS])
        self._due_at = min(exact, lazy + _SLACK)

    def _canonical(self) -> None:
        """Catch up on deferred evictions (before reading features or serializing): then the state is exactly
        what compacting after every event would give, whatever the batch boundaries."""
        due = self._due_exact
        if due is not None and self.anchor is not None and (self.anchor >= due or self.h != self._due_h):
            self._compact()

    def _entry_due(self, oldest: int | None) -> int:
        """Anchor at which an entry with newest time ``oldest`` (relative to base) folds (cut day after its day)."""
        return _NEVER if oldest is None else ((oldest + self.base) // DAY + 1) * DAY + self.h

    def _oldest_closed_ticket(self) -> int | None:
        """Smallest time of a foldable (not open) ticket: the first in order past the leading open ones."""
        oldest = self.tickets.stray
        for entry in self.tickets.d.values():
            if entry[T_FLAGS] != OPENED:
                return entry[0] if oldest is None or entry[0] < oldest else oldest
        return oldest

    def _lower_due(self, part: int, at: int) -> None:
        """An item was added to ``part`` that passes its retention once the anchor reaches ``at``."""
        dues = self._dues
        if dues is not None and at < dues[part]:
            dues[part] = at
            if at < self._due_exact:  # type: ignore[operator]
                self._due_exact = at
            if part in _LAZY_PARTS:
                at += _SLACK
            if at < self._due_at:  # type: ignore[operator]
                self._due_at = at

    def _rebase(self, base: int) -> None:
        """Move the entry time base (every ``BASE_DAYS`` days at most): shift every entry's newest time."""
        if self._pd is None:
            self.pay_day  # noqa: B018 -- decode (days relative to the old base day) before the base changes
        self._pd_wire = None  # the encoded days are relative to the base day: re-encode
        shift = base - self.base
        self.base = base
        for table in (self.orders, self.pay_entries, self.tickets):
            table.shift(shift)

    def _fold_order(self, key: str, entry: list, nets: tuple[int, int, int, int]) -> None:
        """Fold one order entry (``nets``: its :func:`order_net` in 10^-4 units) into its month."""
        placed = order_placed_at(entry)
        if placed is None:
            return  # a cancel/refund whose order never came: no effect
        placed += self.base
        # Remember the id for another h: a later cancel/refund of this order is too late.
        self._fo.add((entry[O_LAST] + self.base) // DAY, binascii.a2b_base64(key)[:FOLDED_ID_BYTES])
        net, count, qty, margin = nets
        net //= self.unit  # exact: _compact switched to UNITS if any value needed it
        margin //= self.unit
        if not count:
            if entry[O_PL] >= 0:
                self._pls_dirty = True  # its product line name may be unused now
            return
        rows = self.folded_months
        month = month_of(placed)
        i = bisect_left(rows, month, key=_row_month)
        if i == len(rows) or rows[i][M_MONTH] != month:
            rows.insert(i, [month, 0, 0, 0, 0])
        row = rows[i]
        row[M_NET] += net
        row[M_COUNT] += count
        row[M_QTY] += qty
        row[M_MRG] += margin
        pl = entry[O_PL]
        if pl >= 0 and pl not in self.folded_pls:
            insort(self.folded_pls, pl)
        if self.folded_first is None or placed < self.folded_first:
            self.folded_first = placed
        if self.folded_last is None or placed > self.folded_last:
            self.folded_last = placed

    def _evict_months(self, min_month: int) -> None:
        """Drop net-paid months before ``min_month`` (the 41 months kept end at the anchor's month)."""
        wire = self._pm_wire
        if self._pm is None and wire and wire[0] >= min_month:
            return  # still-encoded runs start after the limit: nothing to drop, stay encoded
        pm = self.pay_month
        if pm and min(pm) < min_month:
            for month in [m for m in pm if m < min_month]:
                del pm[month]
            self._pm_dirty = True
            self.touched |= IN_PAYMENTS  # monthly_spend_<YYYY-MM> of a dropped month reads 0 from now on

    def _evict_days(self, limit: int) -> None:
        """Drop net-paid days ``<= limit`` (366 days kept up to the anchor's day)."""
        wire = self._pd_wire
        if self._pd is None and wire and wire[0] + self.base // DAY > limit:
            return
        pd = self.pay_day
        if pd and min(pd) <= limit:
            for day in [d for d in pd if d <= limit]:
                del pd[day]
            self._pd_wire = None

    # ------------------------------------------------------------------ reading
    def features(self, now: datetime) -> Mapping[str, Any]:
        """Lazy read-only mapping of the features of ``docs/features.md`` at evaluation time ``now``.

        The view is kept until the next :meth:`apply`: asking again for the same ``now`` (same instant and
        UTC offset; calendar features depend on the offset) returns it with the values already computed
        (the stream reads features, then :meth:`next_change_at`, at the same time).
        """
        self._canonical()
        view = self._view
        if view is not None:
            at = view._now
            if at is now or (at == now and at.utcoffset() == now.utcoffset()):
                return view
        global _FeatureView
        if _FeatureView is None:
            from scoring.features import FeatureView  # late: features imports this module's constants

            _FeatureView = FeatureView
        view = self._view = _FeatureView(self, now)
        return view

    def next_change_at(self, now: datetime, sources: frozenset[str] | None = None) -> datetime | None:
        """Earliest instant after ``now`` at which a feature changes without a new event, or None.

        Covers window exits (12/36-month orders, 30/90-day activity, logins and tickets, 12-month paid,
        90-day failed payments), due dates passing (overdue), month turns (complete-month averages) and
        ``months_as_customer``. The continuous ``days_since_*`` floats are excluded (they change always).
        ``sources`` (:func:`scoring.features.time_sources` of the features read) limits it to changes of
        those features; None: every feature.
        """
        from scoring.features import ALL_SOURCES, next_change

        self._canonical()
        return next_change(self, now, ALL_SOURCES if sources is None else sources)

    # ------------------------------------------------------------------ serialization
    def to_bytes(self) -> bytes:
        """Compact canonical orjson of the state. Equal states give equal bytes.

        Format 2 (:data:`FORMAT_VERSION`), one JSON object; keys are omitted when empty / None:

        - ``f`` format version, ``c`` customer id, ``v`` version, ``a`` anchor (epoch s), ``h`` retention
          days; ``fe`` / ``la`` / ``ll`` / ``of`` / ``ol`` first event, last activity, last login, first and
          last folded order, each as seconds *before* the anchor.
        - Entry times (the first element of every ``o`` / ``pe`` / ``t`` entry) are seconds since the base
          ``base_for(a, h)`` (derived, not stored); other entry times are deltas back from the entry's own.
        - ``pl`` product line names (sorted; entries refer to them by index); ``o`` orders
          ``{id hash: [last, amount, qty, pl, margin, last - placed (null: not placed), cancelled, refunded,
          [refund event hashes]]}`` (trailing defaults dropped); ``om`` folded months
          ``[[month, net, count, qty, margin], ...]``; ``opl`` folded product line indices; ``fo`` folded
          order ids (base64 of sorted 6-byte records: 2-byte UTC day of the order's last event, 4-byte hash).
        - ``pm`` net paid per month as runs ``[first month, [values of consecutive months], ...]``; ``pd`` net
          paid per day ``[day - base day, value, ...]``; ``pe`` payments ``{id hash: [last, status bits,
          last - failed, last - due, failed amount]}``; ``pc`` counters ``[paid, on time, charged back,
          written off, overdue folded]`` (trailing zeros dropped).
        - ``ad`` active-day mask (hex, bit i = anchor day - i); ``lg`` login ids (base64 of sorted records:
          2-byte UTC day, 4-byte hash); ``t`` tickets ``{id hash: [last, bits, last - opened, category,
          severity]}``; ``ts`` satisfaction ``[sum, count]``.
        - ``pa`` / ``ps`` attributes / assessments ``{name: [value, stamp index]}`` with ``st`` the stamps
          ``[[occurred_at µs, event hash], ...]`` (sorted, each used); ``dp`` profile event ids (records:
          2-byte UTC day, 6-byte hash); ``tiers`` as given.

        Money is integers in the state's unit: cents, or 10^-4 units when ``u`` is 1 (stored x ``u`` (default
        100) = 10^-4 units; see ``_money``); days are UTC day indices, months ``year * 12 + month - 1``, id
        hashes 6-byte blake2b in base64. Id-keyed objects are ordered by ``(last, id hash)``; sorted lists
        and tables are canonical, so equal states give equal bytes.
        """
        self._view = None  # drop the cached view (and its reference back to this state) once saved
        self._canonical()
        doc: dict[str, Any] = {"f": FORMAT_VERSION, "c": self.customer_id, "v": self.version}
        anchor = self.anchor
        if anchor is not None:
            doc["a"] = anchor
            for name, value in (("fe", self.first_event), ("la", self.last_activity), ("ll", self.last_login),
                                ("of", self.folded_first), ("ol", self.folded_last)):
                if value is not None:
                    doc[name] = anchor - value  # top-level times: seconds before the anchor (usually small)
        doc["h"] = self.h // DAY
        if self.unit != CENTS:
            doc["u"] = self.unit
        if self._pls_dirty:
            self._canonical_pls()
        if self.pls:
            doc["pl"] = self.pls
        if self.orders.d:
            doc["o"] = self.orders.canonical()
        if self.folded_months:
            doc["om"] = self.folded_months
        if self.folded_pls:
            doc["opl"] = self.folded_pls
        text = self._fo.encode()
        if text:
            doc["fo"] = text
        wire = self._pm_encoded()
        if wire:
            doc["pm"] = wire
        wire = self._pd_encoded()
        if wire:
            doc["pd"] = wire
        if self.pay_entries.d:
            doc["pe"] = self.pay_entries.canonical()
        counters = self.pay_counters
        if any(counters):
            n = 5
            while not counters[n - 1]:
                n -= 1
            doc["pc"] = counters[:n]
        if self.active:
            doc["ad"] = format(self.active, "x")  # 90 bits: beyond JSON-safe integers
        text = self._lg.encode()
        if text:
            doc["lg"] = text
        if self.tickets.d:
            doc["t"] = self.tickets.canonical()
        if self.sat[1] or self.sat[0]:
            doc["ts"] = self.sat
        if self._stamps_dirty:
            self._canonical_stamps()
        if self.attrs:
            doc["pa"] = self.attrs
        if self.assess:
            doc["ps"] = self.assess
        if self.stamps:
            doc["st"] = self.stamps
        text = self._profile_ids.encode()
        if text:
            doc["dp"] = text
        if self.tiers:
            doc["tiers"] = self.tiers
        # Copied to its exact size: orjson (3.12 on) returns a buffer with a power-of-two capacity, never
        # shrunk, and a batch holds up to 20,000 of these until they are written (4,115 states of 5.5 MB
        # held 33.9 MB; streams.encoded.exact).
        return bytes(memoryview(orjson.dumps(doc)))

    def _canonical_pls(self) -> None:
        """Make ``pls`` sorted and exactly the names in use, remapping indices (only when it is not)."""
        self._pls_dirty = False
        pls = self.pls
        used = set(self.folded_pls)
        for entry in self.orders.d.values():
            used.add(entry[O_PL])
        used.discard(-1)
        if len(used) == len(pls) and all(pls[i] < pls[i + 1] for i in range(len(pls) - 1)):
            return  # every name used (indices are < len) and sorted: already canonical
        names = sorted(pls[i] for i in used)
        remap = {i: names.index(pls[i]) for i in used}
        remap[-1] = -1
        for entry in self.orders.d.values():
            entry[O_PL] = remap[entry[O_PL]]
        self.folded_pls = sorted(remap[i] for i in self.folded_pls)
        self.pls = names

    def _pm_encoded(self) -> list:
        if not self._pm_dirty and self._pm_wire is not None:
            return self._pm_wire
        runs: list = []
        values: list[int] = []
        prev = None
        for month, value in sorted(self.pay_month.items()):
            if prev is None or month != prev + 1:
                values = []
                runs += (month, values)
            values.append(value)
            prev = month
        self._pm_wire = runs
        self._pm_dirty = False
        return runs

    def _pd_encoded(self) -> list:
        wire = self._pd_wire
        if wire is None:
            base_day = self.base // DAY
            wire = self._pd_wire = [x for d, v in sorted(self.pay_day.items()) for x in (d - base_day, v)]
        return wire

    @classmethod
    def from_bytes(cls, data: bytes) -> CustomerState:
        """Inverse of :meth:`to_bytes`: ``from_bytes(b).to_bytes() == b``.

        Raises ``ValueError`` for another format version (there is no persisted older format to migrate).
        """
        # typed: mypyc then calls dict.get natively (a bound ``get`` would be a generic call, ~27 a state)
        doc: dict[str, Any] = orjson.loads(data)
        fmt = doc.get("f")
        if fmt != FORMAT_VERSION:
            raise ValueError(f"customer state format {fmt!r} is not supported (expected {FORMAT_VERSION})")
        self = cls(doc["c"])
        self.version = doc["v"]
        anchor = self.anchor = doc.get("a")
        self.h = doc["h"] * DAY
        self.unit = doc.get("u", CENTS)
        if anchor is not None:
            self.base = base_for(anchor, self.h)
            for name, attr in (("fe", "first_event"), ("la", "last_activity"), ("ll", "last_login"),
                               ("of", "folded_first"), ("ol", "folded_last")):
                rel = doc.get(name)
                if rel is not None:
                    setattr(self, attr, anchor - rel)
        self.pls = doc.get("pl", [])
        orders = doc.get("o")
        if orders:
            self.orders = EntryTable(orders)
        self.folded_months = doc.get("om", [])
        self.folded_pls = doc.get("opl", [])
        text = doc.get("fo")
        if text:
            self._fo = DayRecords(FOLDED_ID_BYTES, text)
        wire = doc.get("pm")
        if wire:
            self._pm, self._pm_wire = None, wire
        wire = doc.get("pd")
        if wire:
            self._pd, self._pd_wire = None, wire
        pays = doc.get("pe")
        if pays:
            self.pay_entries = EntryTable(pays)
        counters = doc.get("pc")
        if counters:
            self.pay_counters = counters + [0] * (5 - len(counters))
        text = doc.get("ad")
        if text:
            self.active = int(text, 16)
        text = doc.get("lg")
        if text:
            self._lg = DayRecords(LOGIN_ID_BYTES, text)
        tickets = doc.get("t")
        if tickets:
            self.tickets = EntryTable(tickets)
        sat = doc.get("ts")
        if sat:
            self.sat = sat
        self.attrs = doc.get("pa", {})
        self.assess = doc.get("ps", {})
        self.stamps = doc.get("st", [])
        text = doc.get("dp")
        if text:
            self._profile_ids = DayRecords(PROFILE_ID_BYTES, text)
        self.tiers = doc.get("tiers", {})
        # _dues / _due_at stay None: the first apply compacts every part once (cheap: each checks its oldest
        # item) and computes them
        return self

    def __repr__(self) -> str:
        return f"CustomerState({self.customer_id!r}, version={self.version}, last_event_at={self.last_event_at})"


def _row_month(row: list[int]) -> int:
    return row[M_MONTH]



