"""Event-time arithmetic shared by the customer state: seconds, UTC days, UTC months, money units.

Everything here is a pure function of its arguments. The state stores time as integer epoch seconds
(floored: one-second resolution is ample for windows measured in days and keeps the serialized form
small), days as integer days since 1970-01-01 UTC and calendar months as ``year * 12 + month - 1``.
Money is stored as integer units of 10^-4 (``schemas.events.MONEY_PLACES``), so sums are exact.

Bucketing invariant (what makes the state order independent): the bucket an event lands in depends on
its own ``occurred_at`` only, never on arrival order or on a wall clock; retention cut-offs depend only on
the customer's newest event time (the *anchor*), which is the maximum over the applied set.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Final

DAY: Final = 86_400
#: Money scale: integer units per currency unit (10^MONEY_PLACES).
MONEY_SCALE: Final = 10_000
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_seconds(ts: datetime) -> int:
    """Aware datetime -> integer epoch seconds, floored (exact integer arithmetic, no float rounding)."""
    delta = ts - EPOCH
    return delta.days * DAY + delta.seconds


def from_seconds(sec: int) -> datetime:
    """Epoch seconds -> aware UTC datetime (exact for integer seconds)."""
    try:
        return datetime.fromtimestamp(sec, UTC)  # C fast path, ~2x faster than the timedelta sum
    except (OverflowError, OSError, ValueError):  # out of the platform's range: exact arithmetic
        return EPOCH + timedelta(seconds=sec)


def to_micros(ts: datetime) -> int:
    """Aware datetime -> integer epoch microseconds (used where sub-second order matters: latest-wins)."""
    delta = ts - EPOCH
    return (delta.days * DAY + delta.seconds) * 1_000_000 + delta.microseconds


def day_of(sec: int) -> int:
    """UTC day index (days since 1970-01-01) of an epoch second."""
    return sec // DAY


@lru_cache(maxsize=1 << 16)
def month_of_day(day: int) -> int:
    """Month index ``year * 12 + month - 1`` of a UTC day index (memoized: pure, and hot in apply/features)."""
    d = EPOCH.date() + timedelta(days=day)
    return d.year * 12 + d.month - 1


def month_of(sec: int) -> int:
    """Month index of an epoch second."""
    return month_of_day(sec // DAY)


@lru_cache(maxsize=1 << 14)
def month_start(month: int) -> int:
    """Epoch second at which a month index starts (00:00 UTC on the 1st); memoized (pure, hot in features)."""
    year, m0 = divmod(month, 12)
    return to_seconds(datetime(year, m0 + 1, 1, tzinfo=UTC))


def month_label(month: int) -> str:
    """``YYYY-MM`` of a month index."""
    year, m0 = divmod(month, 12)
    return f"{year:04d}-{m0 + 1:02d}"


def parse_month_label(label: str) -> int | None:
    """Month index of ``YYYY-MM`` or None if malformed."""
    if len(label) != 7 or label[4] != "-" or not (label[:4].isdigit() and label[5:].isdigit()):
        return None
    month = int(label[5:])
    if not 1 <= month <= 12:
        return None
    return int(label[:4]) * 12 + month - 1


def money_units(amount: Decimal) -> int:
    """Decimal with ≤ 4 places -> exact integer units of 10^-4 (the schema guarantees ≤ 4 places)."""
    return int(amount * MONEY_SCALE)


def units_to_decimal(units: int) -> Decimal:
    """Integer units -> Decimal with exactly 4 places (e.g. 12345 -> Decimal('1.2345'))."""
    return Decimal(units).scaleb(-4)


def whole_months_between(start: datetime, end: datetime) -> int:
    """Whole calendar months from ``start`` to ``end`` (0 if end < one month after start).

    A month is complete when the same day-of-month and time is reached (clamped to the month's last day).
    """
    if end <= start:
        return 0
    months = (end.year - start.year) * 12 + (end.month - start.month)
    if add_months(start, months) > end:
        months -= 1
    return max(months, 0)


def add_months(ts: datetime, months: int) -> datetime:
    """``ts`` shifted by whole calendar months, day clamped to the target month's length."""
    index = ts.year * 12 + ts.month - 1 + months
    year, m0 = divmod(index, 12)
    if ts.day <= 28:  # every month has the day: no clamping (the common case, and hot: months as customer)
        return ts.replace(year=year, month=m0 + 1)
    nxt_year, nxt_m0 = divmod(index + 1, 12)
    last_day = (datetime(nxt_year, nxt_m0 + 1, 1) - timedelta(days=1)).day
    return ts.replace(year=year, month=m0 + 1, day=min(ts.day, last_day))
