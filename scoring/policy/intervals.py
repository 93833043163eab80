"""Intervals with explicit inclusivity, their ordering checks and fast lookup.

A step ladder (points, tiers or counts) is a list of intervals. Ladders are validated once at compile time:
ascending (or, for tier bands, descending) and non-overlapping; gaps are allowed (a value in a gap matches
no step). Lookup is a linear scan, which beats bisect for the 2-6 steps real ladders have.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from schemas.policy import Bound
from scoring.policy.context import CompileContext, to_number
from scoring.policy.errors import join_path

Num = Decimal | float
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Interval:
    """``lo``/``hi`` None means unbounded; ``*_incl`` says whether the bound itself belongs."""

    lo: Num | None
    lo_incl: bool
    hi: Num | None
    hi_incl: bool

    def contains(self, x: Any) -> bool:
        """True when ``x`` lies in the interval (x must be comparable with the bounds)."""
        lo, hi = self.lo, self.hi
        if lo is not None and (x < lo or (not self.lo_incl and x == lo)):
            return False
        return not (hi is not None and (x > hi or (not self.hi_incl and x == hi)))

    def text(self) -> str:
        """Mathematical notation, e.g. ``[100000, 500000)`` or ``(90, inf)``."""
        lo = "-inf" if self.lo is None else fmt_number(self.lo)
        hi = "inf" if self.hi is None else fmt_number(self.hi)
        left = "[" if self.lo_incl and self.lo is not None else "("
        right = "]" if self.hi_incl and self.hi is not None else ")"
        return f"{left}{lo}, {hi}{right}"


def fmt_number(n: Num) -> str:
    """Short rendering of a bound: ``100000`` rather than ``100000.0``."""
    f = float(n)
    return str(int(f)) if f == int(f) and abs(f) < 1e15 else str(n)


def make_interval(bound: Bound, kind: str) -> Interval:
    """Compile a schema ``Bound`` for a feature of ``kind`` (money -> Decimal bounds)."""
    lo = bound.gt if bound.gt is not None else bound.ge
    hi = bound.lt if bound.lt is not None else bound.le
    return Interval(
        lo=None if lo is None else to_number(kind, lo),
        lo_incl=bound.ge is not None,
        hi=None if hi is None else to_number(kind, hi),
        hi_incl=bound.le is not None,
    )


def _before(a: Interval, b: Interval) -> bool:
    """True when every value of ``a`` is below every value of ``b`` (no overlap, a first)."""
    if a.hi is None or b.lo is None:
        return False
    return a.hi < b.lo or (a.hi == b.lo and not (a.hi_incl and b.lo_incl))


def check_ascending(ctx: CompileContext, path: str, intervals: Sequence[Interval], descending: bool = False) -> None:
    """Refuse overlapping or unordered steps; ``path`` is the list's path, items are reported by index.

    ``descending`` is for tier bands, listed highest tier (highest values) first."""
    order = "descending (highest first)" if descending else "ascending"
    for i in range(1, len(intervals)):
        prev, cur = intervals[i - 1], intervals[i]
        first, second = (cur, prev) if descending else (prev, cur)
        if _before(first, second):
            continue
        where = join_path(path, i)
        if _before(second, first):
            ctx.fail(where, f"steps are not in {order} order: {cur.text()} must come before {prev.text()}")
        ctx.fail(where, f"step {cur.text()} overlaps the previous step {prev.text()}")


def find(intervals: Sequence[Interval], x: Any) -> int:
    """Index of the interval containing ``x``, or -1 (also -1 when ``x`` is not comparable)."""
    try:
        for i, iv in enumerate(intervals):
            if iv.contains(x):
                return i
    except TypeError:
        return -1
    return -1


def compile_lookup(intervals: Sequence[Interval], results: Sequence[T], miss: T, nan: T) -> Callable[[Any], T]:
    """A closure mapping a value to the result of the ascending, non-overlapping interval containing it,
    ``miss`` when none does, ``nan`` when the value is not comparable with the bounds.

    The intervals are flattened once into sorted boundary values with the result for a value equal to each
    boundary and for each open segment between consecutive boundaries, so a lookup is one C-level bisect
    and one equality test."""
    bounds: list[Any] = []
    for iv in intervals:
        for v in (iv.lo, iv.hi):
            if v is not None and (not bounds or v != bounds[-1]):
                bounds.append(v)

    def result_where(probe: Callable[[Interval], bool]) -> T:
        for iv, res in zip(intervals, results, strict=True):
            if probe(iv):
                return res
        return miss

    def containing(b: Any) -> Callable[[Interval], bool]:
        return lambda iv: iv.contains(b)

    at = tuple(result_where(containing(b)) for b in bounds)
    between: list[T] = []
    for i in range(len(bounds) + 1):
        lo = bounds[i - 1] if i > 0 else None
        hi = bounds[i] if i < len(bounds) else None

        def covers(iv: Interval, lo: Any = lo, hi: Any = hi) -> bool:
            # every value strictly between lo and hi lies in iv
            return (iv.lo is None or (lo is not None and iv.lo <= lo)) and (
                iv.hi is None or (hi is not None and iv.hi >= hi)
            )

        between.append(result_where(covers))
    b, seg, n = tuple(bounds), tuple(between), len(bounds)

    def lookup(x: Any) -> T:
        try:
            i = bisect_left(b, x)
            if i < n and x == b[i]:
                return at[i]
        except TypeError:
            return nan
        return seg[i]

    return lookup
