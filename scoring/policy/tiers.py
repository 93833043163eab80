"""Tier sources: bands over a number, percentile bands, rule ladders, grants, fixed tiers, max/min.

A compiled source is called as ``source(features, scores, population) -> (tier_index | None, detail)``;
tier index 0 is the highest tier, None means "this source grants nothing" (a grant that did not match),
which ``max``/``min`` skip. Sources also answer, after the final tier is known, what it takes to reach
the next tier up and how much margin keeps the current one (:meth:`TierSource.outlook`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from schemas.policy import Bands, Grant, Percentile, Rule
from schemas.policy import TierSource as TierSourceModel
from scoring.policy.conditions import Cond, compile_condition
from scoring.policy.context import CompileContext, jsonable
from scoring.policy.errors import join_path
from scoring.policy.intervals import Interval, check_ascending, compile_lookup, fmt_number, make_interval
from scoring.policy.population import PopulationView

Result = tuple[int | None, dict[str, Any]]
_NUMBER_TYPES: Final = (float, int, Decimal)


class TierSource:
    """Base class of compiled tier sources."""

    tiers: tuple[str, ...]

    def __call__(self, f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None) -> Result:
        raise NotImplementedError

    def outlook(
        self, f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None, tier: int
    ) -> dict[str, Any] | None:
        """``{"next_tier": ..., "keep": ...}`` for the final ``tier``; None when this source cannot tell."""
        return None

    def children(self) -> tuple[TierSource, ...]:
        """Nested sources (for max/min)."""
        return ()


def _check_descending_tiers(ctx: CompileContext, path: str, tiers: list[int], field: str = "tier") -> None:
    for i in range(1, len(tiers)):
        if tiers[i] <= tiers[i - 1]:
            ctx.fail(
                join_path(join_path(path, i), field),
                f"bands must list tiers from highest to lowest in the policy's tier order: "
                f"{ctx.tiers[tiers[i]]!r} cannot follow {ctx.tiers[tiers[i - 1]]!r}",
            )


class BandsSource(TierSource):
    """A number (the score or a feature) mapped to tiers by descending, non-overlapping intervals."""

    def __init__(self, ctx: CompileContext, path: str, spec: Bands) -> None:
        self.tiers = ctx.tiers
        self.of = spec.of
        if spec.of == "score":
            if not ctx.has_score:
                ctx.fail(join_path(path, "of"), "bands of 'score' need a 'score' section")
            kind = ctx.score_kind
        else:
            info = ctx.feature(join_path(path, "of"), spec.of)
            if info.kind in ("datetime", "bool"):
                ctx.fail(join_path(path, "of"), f"cannot band a {info.kind} feature")
            kind = info.kind
        bpath = join_path(path, "bands")
        self.intervals: tuple[Interval, ...] = tuple(make_interval(b, kind) for b in spec.bands)
        check_ascending(ctx, bpath, self.intervals, descending=True)
        self.band_tiers = tuple(
            ctx.tier_index(join_path(join_path(bpath, i), "tier"), b.tier) for i, b in enumerate(spec.bands)
        )
        _check_descending_tiers(ctx, bpath, list(self.band_tiers))
        lowest = len(ctx.tiers) - 1
        self.default = lowest if spec.default is None else ctx.tier_index(join_path(path, "default"), spec.default)
        if self.default in self.band_tiers:
            ctx.fail(join_path(path, "default"), f"default tier {spec.default!r} already has a band")
        # Precomputed for the hot path: lookup value -> band index (-1 none), the "crossed" texts (a value in
        # band k has crossed the lower bounds of bands k, k+1, ...), next band up and own band per tier.
        n = len(self.intervals)
        self._lookup = compile_lookup(tuple(reversed(self.intervals)), tuple(range(n - 1, -1, -1)), -1, -2)
        self._texts = tuple(iv.text() for iv in self.intervals)
        label = "score" if self.of == "score" else self.of
        self._crossed = tuple(
            f"{label} {'>=' if iv.lo_incl else '>'} {fmt_number(iv.lo)} ({ctx.tiers[t]})" if iv.lo is not None else None
            for iv, t in zip(self.intervals, self.band_tiers, strict=True)
        )
        self._crossed_from = tuple(
            tuple(c for c in self._crossed[k:] if c is not None) for k in range(len(self._crossed) + 1)
        )
        self._lows = tuple((iv.lo, iv.lo_incl) for iv in self.intervals)
        self._next: dict[int, tuple[Interval, int] | None] = {}
        self._own: dict[int, Interval | None] = {}
        for tier in range(len(self.tiers)):
            above = [
                (iv, t) for iv, t in zip(self.intervals, self.band_tiers, strict=True) if t < tier and iv.lo is not None
            ]
            self._next[tier] = above[-1] if above else None
            own = [iv for iv, t in zip(self.intervals, self.band_tiers, strict=True) if t == tier and iv.lo is not None]
            self._own[tier] = own[0] if own else None

    def value(self, f: Mapping[str, Any], s: Mapping[str, Any]) -> Any:
        """The number being banded."""
        return s.get("score:total") if self.of == "score" else f.get(self.of)

    def __call__(self, f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None) -> Result:
        x = self.value(f, s)
        tiers = self.tiers
        if x is None:
            return self.default, {
                "kind": "bands",
                "of": self.of,
                "value": None,
                "status": "missing",
                "tier": tiers[self.default],
            }
        idx = self._lookup(x)
        if idx == -2:
            return self.default, {"kind": "bands", "of": self.of, "value": jsonable(x), "status": "not_a_number"}
        # first band whose lower bound the value reaches; all bands below it are crossed too
        k = idx
        if k < 0:
            k = len(self._lows)
            for i, (lo, incl) in enumerate(self._lows):
                if lo is not None and (x > lo or (incl and x == lo)):
                    k = i
                    break
        crossed = list(self._crossed_from[k])
        tier = self.band_tiers[idx] if idx >= 0 else self.default
        detail = {
            "kind": "bands",
            "of": self.of,
            "value": float(x) if type(x) is Decimal else x,
            "band": self._texts[idx] if idx >= 0 else "default",
            "tier": tiers[tier],
            "thresholds_crossed": crossed,
        }
        return tier, detail

    def outlook(
        self, f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None, tier: int
    ) -> dict[str, Any] | None:
        x = s.get("score:total") if self.of == "score" else f.get(self.of)
        if type(x) not in _NUMBER_TYPES:
            return None
        nxt = self._next[tier]
        next_tier = None
        if nxt is not None:
            iv, t = nxt
            gap = iv.lo - x  # type: ignore[operator]
            next_tier = {
                "tier": self.tiers[t],
                "threshold": jsonable(iv.lo),
                "inclusive": iv.lo_incl,
                # gap <= 0: the number already qualifies and an adjustment (or a lower source) holds it back
                "gap": float(gap) if type(gap) is Decimal else gap,
            }
        keep = None
        own = self._own[tier]
        if own is not None and own.contains(x):
            margin = x - own.lo  # type: ignore[operator]
            keep = {
                "tier": self.tiers[tier],
                "threshold": jsonable(own.lo),
                "inclusive": own.lo_incl,
                "margin": float(margin) if type(margin) is Decimal else margin,
            }
        return {"of": self.of, "next_tier": next_tier, "keep": keep}


class PercentileSource(TierSource):
    """Tier by the rank of the policy score in the population: top ``p``% bands, ascending ``p``."""

    def __init__(self, ctx: CompileContext, path: str, spec: Percentile) -> None:
        if not ctx.has_score:
            ctx.fail(path, "percentile bands need a 'score' section")
        ctx.needs_population = True
        self.policy = ctx.policy_id
        self.tiers = ctx.tiers
        self.spec = spec
        bpath = join_path(path, "bands")
        self.tops = tuple(b.top_percent for b in spec.bands)
        for i in range(1, len(self.tops)):
            if self.tops[i] <= self.tops[i - 1]:
                ctx.fail(join_path(join_path(bpath, i), "top_percent"), "top_percent must increase from band to band")
        self.band_tiers = tuple(
            ctx.tier_index(join_path(join_path(bpath, i), "tier"), b.tier) for i, b in enumerate(spec.bands)
        )
        _check_descending_tiers(ctx, bpath, list(self.band_tiers))
        lowest = len(ctx.tiers) - 1
        self.default = lowest if spec.default is None else ctx.tier_index(join_path(path, "default"), spec.default)

    def rank_percent(self, s: Mapping[str, Any], pop: PopulationView | None) -> float | None:
        """Percent of the population scoring at or above this score (the best customer: 100/N)."""
        x = s.get("score:total")
        if pop is None or x is None:
            return None
        total = pop.total(self.policy)
        if total <= 0:
            return None
        return 100.0 * pop.count_at_or_above(self.policy, float(x)) / total

    def __call__(self, f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None) -> Result:
        rank = self.rank_percent(s, pop)
        if rank is None:
            return self.default, {
                "kind": "percentile",
                "status": "population unavailable",
                "tier": self.tiers[self.default],
            }
        tier = self.default
        for top, t in zip(self.tops, self.band_tiers, strict=True):
            if rank <= top + 1e-9:
                tier = t
                break
        crossed = [
            {"tier": self.tiers[t], "top_percent": top}
            for top, t in zip(self.tops, self.band_tiers, strict=True)
            if rank <= top + 1e-9
        ]
        return tier, {
            "kind": "percentile",
            "rank_percent": round(rank, 6),
            "tier": self.tiers[tier],
            "thresholds_crossed": crossed,
        }

    def outlook(
        self, f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None, tier: int
    ) -> dict[str, Any] | None:
        rank = self.rank_percent(s, pop)
        if rank is None:
            return None
        nxt = None
        for top, t in zip(self.tops, self.band_tiers, strict=True):
            if t < tier:
                nxt = {
                    "tier": self.tiers[t],
                    "top_percent": top,
                    "rank_percent": round(rank, 6),
                    "gap_percent": round(rank - top, 6),
                }
        keep = None
        for top, t in zip(self.tops, self.band_tiers, strict=True):
            if t == tier and rank <= top + 1e-9:
                keep = {"tier": self.tiers[t], "top_percent": top, "margin_percent": round(top - rank, 6)}
        return {"of": "rank", "next_tier": nxt, "keep": keep}


class RulesSource(TierSource):
    """Ordered conditions, first match wins; the last rule has no condition (the default)."""

    def __init__(self, ctx: CompileContext, path: str, rules: list[Rule]) -> None:
        self.tiers = ctx.tiers
        compiled: list[tuple[Cond | None, int, str, str | None]] = []
        for i, r in enumerate(rules):
            rpath = join_path(path, i)
            last = i == len(rules) - 1
            if r.when is None and not last:
                ctx.fail(join_path(rpath, "when"), "only the last rule may omit 'when' (it is the default)")
            if r.when is not None and last:
                ctx.fail(rpath, "the last rule must have no 'when': it is the default tier")
            tier = ctx.tier_index(join_path(rpath, "tier"), r.tier)
            fn, text = (
                compile_condition(ctx, join_path(rpath, "when"), r.when) if r.when is not None else (None, "otherwise")
            )
            compiled.append((fn, tier, text, r.name))
        self.rules = tuple(compiled)

    def __call__(self, f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None) -> Result:
        for i, (fn, tier, text, name) in enumerate(self.rules):
            if fn is None or fn(f, s):
                return tier, {
                    "kind": "rules",
                    "tier": self.tiers[tier],
                    "matched_rule": {"index": i, "name": name, "when": text},
                }
        raise AssertionError("unreachable: the last rule always matches")  # pragma: no cover

    def outlook(
        self, f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None, tier: int
    ) -> dict[str, Any] | None:
        # The closest better tier and the condition(s) that would give it.
        better = [(t, text) for fn, t, text, _ in self.rules if fn is not None and t < tier]
        if not better:
            return {"next_tier": None, "keep": None}
        best = max(t for t, _ in better)
        return {
            "next_tier": {"tier": self.tiers[best], "requires": [text for t, text in better if t == best]},
            "keep": None,
        }


class GrantSource(TierSource):
    """Immediate grant from an attribute or feature; grants nothing when no step/value matches."""

    def __init__(self, ctx: CompileContext, path: str, spec: Grant) -> None:
        self.tiers = ctx.tiers
        self.feature = spec.feature
        info = ctx.feature(join_path(path, "feature"), spec.feature)
        self.values: dict[str, int] | None = None
        self.intervals: tuple[Interval, ...] = ()
        self.step_tiers: tuple[int, ...] = ()
        if spec.steps is not None:
            if info.kind in ("datetime", "bool"):
                ctx.fail(join_path(path, "steps"), f"cannot band a {info.kind} feature")
            spath = join_path(path, "steps")
            self.intervals = tuple(make_interval(b, info.kind) for b in spec.steps)
            check_ascending(ctx, spath, self.intervals)
            self.step_tiers = tuple(
                ctx.tier_index(join_path(join_path(spath, i), "tier"), b.tier) for i, b in enumerate(spec.steps)
            )
        else:
            assert spec.values is not None
            vpath = join_path(path, "values")
            self.values = {k: ctx.tier_index(join_path(vpath, k), v) for k, v in spec.values.items()}

    def __call__(self, f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None) -> Result:
        x = f.get(self.feature)
        tier: int | None = None
        matched: str | None = None
        if x is not None:
            if self.values is not None:
                key = x if isinstance(x, str) else str(x)
                tier = self.values.get(key)
                matched = key if tier is not None else None
            else:
                try:  # Decimal vs float comparisons are exact in Python, so no conversion is needed
                    for iv, t in zip(self.intervals, self.step_tiers, strict=True):
                        if iv.contains(x):
                            tier, matched = t, iv.text()
                            break
                except TypeError:
                    tier = None
        detail = {
            "kind": "grant",
            "feature": self.feature,
            "value": jsonable(x),
            "matched": matched,
            "tier": None if tier is None else self.tiers[tier],
        }
        return tier, detail


class FixedSource(TierSource):
    """Always the same tier."""

    def __init__(self, ctx: CompileContext, path: str, tier: str) -> None:
        self.tiers = ctx.tiers
        self.tier = ctx.tier_index(path, tier)

    def __call__(self, f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None) -> Result:
        return self.tier, {"kind": "fixed", "tier": self.tiers[self.tier]}


class CombineSource(TierSource):
    """``max`` (best tier) or ``min`` (worst tier) of several sources; sources granting nothing are skipped."""

    def __init__(
        self, ctx: CompileContext, path: str, mode: str, sources: list[TierSourceModel], names: list[str | None]
    ) -> None:
        self.tiers = ctx.tiers
        self.mode = mode
        self.sources = tuple(compile_tier_source(ctx, join_path(path, i), s) for i, s in enumerate(sources))
        self.names = tuple(n or f"{mode}[{i}]" for i, n in enumerate(names))

    def children(self) -> tuple[TierSource, ...]:
        return self.sources

    def __call__(self, f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None) -> Result:
        best: int | None = None
        chosen = None
        parts = []
        for name, src in zip(self.names, self.sources, strict=True):
            t, d = src(f, s, pop)
            parts.append({"name": name, **d})
            if t is None:
                continue
            if best is None or (t < best if self.mode == "max" else t > best):
                best, chosen = t, name
        detail = {
            "kind": self.mode,
            "tier": None if best is None else self.tiers[best],
            "chosen": chosen,
            "sources": parts,
        }
        return best, detail


def compile_tier_source(ctx: CompileContext, path: str, spec: TierSourceModel) -> TierSource:
    """Compile one ``tier:`` source (recursively for max/min)."""
    if spec.bands is not None:
        return BandsSource(ctx, join_path(path, "bands"), spec.bands)
    if spec.percentile is not None:
        return PercentileSource(ctx, join_path(path, "percentile"), spec.percentile)
    if spec.rules is not None:
        return RulesSource(ctx, join_path(path, "rules"), spec.rules)
    if spec.grant is not None:
        return GrantSource(ctx, join_path(path, "grant"), spec.grant)
    if spec.fixed is not None:
        return FixedSource(ctx, join_path(path, "fixed"), spec.fixed)
    mode, group = ("max", spec.max) if spec.max is not None else ("min", spec.min)
    assert group is not None
    return CombineSource(ctx, join_path(path, mode), mode, group, [g.name for g in group])


def primary_sources(root: TierSource) -> list[TierSource]:
    """Sources that can explain distance to the next tier, in depth-first order (bands/percentile first)."""
    found: list[TierSource] = []

    def walk(src: TierSource) -> None:
        found.append(src)
        for c in src.children():
            walk(c)

    walk(root)
    ranked: list[TierSource] = [s for s in found if isinstance(s, BandsSource | PercentileSource)]
    ranked += [s for s in found if isinstance(s, RulesSource)]
    return ranked
