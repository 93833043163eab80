"""Review dates: calendar-aligned UTC midnights, so every worker and every replay agrees on them.

``monthly``: the 1st of every month; ``quarterly``: Jan 1, Apr 1, Jul 1, Oct 1; ``half_yearly``: Jan 1 and
Jul 1; ``yearly``: Jan 1 (all 00:00:00 UTC). A review *at* an instant ``b`` happens at ``b`` exactly: a
decision made at ``b`` is the review's decision.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

PERIOD_MONTHS: Final[dict[str, int]] = {"monthly": 1, "quarterly": 3, "half_yearly": 6, "yearly": 12}


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t.isoformat()}: lifecycle times must be timezone-aware")
    return t.astimezone(UTC)


def _add_months(t: datetime, months: int) -> datetime:
    index = t.year * 12 + (t.month - 1) + months
    return t.replace(year=index // 12, month=index % 12 + 1)


def review_floor(period: str, t: datetime) -> datetime:
    """The latest review date at or before ``t``."""
    t = _utc(t)
    step = PERIOD_MONTHS[period]
    month0 = (t.month - 1) // step * step
    return datetime(t.year, month0 + 1, 1, tzinfo=UTC)


def review_on_or_after(period: str, t: datetime) -> datetime:
    """The first review date at or after ``t`` (``t`` itself when it is one)."""
    floor = review_floor(period, t)
    return floor if floor == _utc(t) else _add_months(floor, PERIOD_MONTHS[period])


def review_after(period: str, t: datetime) -> datetime:
    """The first review date strictly after ``t``."""
    return _add_months(review_floor(period, t), PERIOD_MONTHS[period])


def is_review(period: str, t: datetime) -> bool:
    """Whether ``t`` is exactly a review date."""
    return review_floor(period, t) == _utc(t)
