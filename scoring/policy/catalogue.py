"""The feature catalogue: every name a policy may read, its kind and its window (mirrors docs/features.md).

A policy naming a feature that is not here is refused at load time. ``window_days`` is how far back an
event can still change the feature; a policy's ``max_window_days`` (the lateness horizon) is the largest
window among its features. Lifetime features can be changed by an event of any age: they report
:data:`UNBOUNDED_DAYS`. Latest-value features (attributes, assessments, "last ..." timestamps) report 0,
because an event older than the current value cannot change them.

Kinds: ``money`` (Decimal, thresholds compared exactly as Decimal), ``int``, ``float``, ``bool``,
``datetime`` (not comparable in ladders), ``attr`` (str | number | bool | None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["money", "int", "float", "bool", "datetime", "attr"]

#: Window reported for lifetime features (100 years): late events of any age still change them.
UNBOUNDED_DAYS = 36_500


@dataclass(frozen=True, slots=True)
class FeatureInfo:
    """What the catalogue knows about one feature name."""

    name: str
    kind: Kind
    window_days: int


def _fixed() -> dict[str, tuple[Kind, int]]:
    u = UNBOUNDED_DAYS
    table: dict[str, tuple[Kind, int]] = {
        # orders
        "spend_lifetime": ("money", u),
        "spend_12m": ("money", 365),
        "spend_36m": ("money", 1095),
        "orders_lifetime": ("int", u),
        "orders_12m": ("int", 365),
        "orders_36m": ("int", 1095),
        "quantity_lifetime": ("int", u),
        "quantity_12m": ("int", 365),
        "quantity_36m": ("int", 1095),
        "margin_lifetime": ("money", u),
        "margin_12m": ("money", 365),
        "margin_36m": ("money", 1095),
        "product_lines_lifetime": ("int", u),
        "product_lines_12m": ("int", 365),
        "first_purchase_at": ("datetime", u),
        "last_purchase_at": ("datetime", 0),
        "days_since_last_purchase": ("float", 0),
        "months_as_customer": ("int", u),
        "years_as_customer": ("float", u),
        "repurchase": ("bool", u),
        # payments
        "paid_12m": ("money", 365),
        "on_time_ratio": ("float", u),
        "overdue_amount": ("money", u),
        "charged_back_amount": ("money", u),
        "written_off_amount": ("money", u),
        "failed_payments_90d": ("int", 90),
        "bad_debt": ("bool", u),
        # logins / activity
        "active_days_30d": ("int", 30),
        "active_days_90d": ("int", 90),
        "logins_30d": ("int", 30),
        "logins_90d": ("int", 90),
        "last_login_at": ("datetime", 0),
        # tickets
        "tickets_opened_90d": ("int", 90),
        "complaints_90d": ("int", 90),
        "severe_complaints_90d": ("int", 90),
        "open_tickets": ("int", u),
        "avg_satisfaction": ("float", u),
        # recency
        "last_event_at": ("datetime", 0),
        "days_since_last_event": ("float", 0),
        "days_since_last_activity": ("float", 0),
    }
    return table


FIXED_FEATURES: dict[str, FeatureInfo] = {n: FeatureInfo(n, k, w) for n, (k, w) in _fixed().items()}

_AVG_MONTHLY = re.compile(r"^avg_monthly_spend_([1-9][0-9]?)m$")
_MONTHLY = re.compile(r"^monthly_spend_(\d{4})-(0[1-9]|1[0-2])$")
_ATTR = re.compile(r"^attr\.[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ASSESS = re.compile(r"^assess\.[A-Za-z_][A-Za-z0-9_]{0,63}$")


def avg_monthly_window_days(months: int) -> int:
    """Window of ``avg_monthly_spend_<N>m``: N complete months plus the current partial one; 31 days per
    month is a safe upper bound (6 -> 217 days)."""
    return 31 * (months + 1)


def lookup(name: str) -> FeatureInfo | None:
    """Return the catalogue entry for ``name`` (fixed names and the documented patterns), or None."""
    info = FIXED_FEATURES.get(name)
    if info is not None:
        return info
    m = _AVG_MONTHLY.match(name)
    if m is not None:
        months = int(m.group(1))
        return FeatureInfo(name, "money", avg_monthly_window_days(months)) if months <= 36 else None
    if _MONTHLY.match(name):
        # A fixed calendar month can lie arbitrarily far before `now`.
        return FeatureInfo(name, "money", UNBOUNDED_DAYS)
    if _ATTR.match(name):
        return FeatureInfo(name, "attr", 0)
    if _ASSESS.match(name):
        return FeatureInfo(name, "float", 0)
    return None


def unknown_reason(name: str) -> str:
    """Human reason for refusing ``name``, with a hint of close names."""
    import difflib

    close = difflib.get_close_matches(name, list(FIXED_FEATURES), n=2)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown feature {name!r}{hint}; see docs/features.md"
