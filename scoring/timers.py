"""When a customer's tiers can next change with no new event (pure): the decay schedule.

Three sources, earliest wins:
- window boundaries of the state (an order leaving the 12-month window, a month turning, ...):
  :meth:`scoring.state.CustomerState.next_change_at`;
- thresholds on continuous features (``days_since_*``) that a policy compares against: the state cannot
  know them, so they are read from the policy files once (:func:`continuous_thresholds`) and the
  crossing instant is computed from the feature's current value;
- the policies' periodic review dates (``review: quarterly`` ...), calendar-aligned in UTC.

The stream keeps, per partition, an index of these due times and re-scores only customers that are due
(no scan of every customer per tick). Evaluating at the due time (not at "now") makes a decay decision a
pure function of the state, so a worker that crashes and re-runs it decides exactly the same.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import yaml

#: Features that change continuously with time (days since some instant).
CONTINUOUS_PREFIX: Final = "days_since_"

#: Review schedule name -> months between reviews (calendar-aligned from January).
REVIEW_MONTHS: Final = {"monthly": 1, "quarterly": 3, "half_yearly": 6, "yearly": 12}


def _numbers(node: Any) -> Iterable[float]:
    """Every threshold number under a condition / ladder node."""
    if isinstance(node, Mapping):
        for key in ("value", "ge", "gt", "le", "lt"):
            v = node.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                yield float(v)
            elif isinstance(v, list):
                yield from (float(x) for x in v if isinstance(x, int | float) and not isinstance(x, bool))
        for key in ("ladder", "steps"):
            for step in node.get(key) or ():
                yield from _numbers(step)


def _walk(node: Any, found: dict[str, set[float]]) -> None:
    if isinstance(node, Mapping):
        feature = node.get("feature")
        if isinstance(feature, str) and feature.startswith(CONTINUOUS_PREFIX):
            found.setdefault(feature, set()).update(_numbers(node))
        for value in node.values():
            _walk(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk(value, found)


def continuous_thresholds(policy_sources: Iterable[str | Path]) -> dict[str, tuple[float, ...]]:
    """Feature -> sorted thresholds (days) that any of the policy files compares a ``days_since_*``
    feature against (conditions, ladders, bands). Read once at start-up."""
    found: dict[str, set[float]] = {}
    for source in policy_sources:
        _walk(yaml.safe_load(Path(source).read_text()), found)
    return {f: tuple(sorted(v)) for f, v in found.items() if v}


def next_threshold_crossing(
    features: Mapping[str, Any], at: datetime, thresholds: Mapping[str, tuple[float, ...]]
) -> datetime | None:
    """Earliest instant after ``at`` when a ``days_since_*`` feature reaches or passes a threshold.

    Both the instant it equals the threshold (for ``>=``) and one second later (for ``>``) are due times;
    the earlier is returned here and the later follows from the next call.
    """
    best: datetime | None = None
    for feature, values in thresholds.items():
        current = features.get(feature)
        if current is None:
            continue
        for threshold in values:
            if threshold < current:
                continue
            seconds = (threshold - float(current)) * 86400.0
            reach = at + timedelta(seconds=math.ceil(seconds))
            candidate = reach if reach > at else reach + timedelta(seconds=1)
            if best is None or candidate < best:
                best = candidate
    return best


def next_review(at: datetime, schedule: str | None) -> datetime | None:
    """The first review instant strictly after ``at`` (UTC month starts every N months from January)."""
    if schedule is None or schedule not in REVIEW_MONTHS:
        return None
    step = REVIEW_MONTHS[schedule]
    at = at.astimezone(UTC)
    month_index = at.year * 12 + (at.month - 1)
    nxt = (month_index // step + 1) * step
    return datetime(nxt // 12, nxt % 12 + 1, 1, tzinfo=UTC)


def earliest(*candidates: datetime | None) -> datetime | None:
    """The earliest of the given instants (None = never)."""
    present = [c for c in candidates if c is not None]
    return min(present) if present else None
