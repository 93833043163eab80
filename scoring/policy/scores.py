"""Score compilers: weighted scorecards, single ladders, raw features, blends and bonus multipliers.

A compiled score is ``run(features, scores) -> (value, detail)``. ``value`` is a float rounded to 6 decimal
places (so hand arithmetic like 8 × 15% + ... lands exactly on band edges), or the raw feature value (a
Decimal for money, compared exactly by the bands) for ``score: {feature: ...}``, or None when that
feature is missing. ``run`` also writes ``dim:<name>`` and ``pts:<name>`` into ``scores`` for conditions.
``detail`` is JSON-safe and names every dimension and indicator with its value, points and weight.

Missing data is explicit: an indicator whose feature is missing scores 0 points, status ``missing``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from schemas.policy import Ladder, PointsStep, Score, Scorecard
from scoring.policy.conditions import Cond, compile_condition
from scoring.policy.context import CompileContext, jsonable
from scoring.policy.errors import join_path
from scoring.policy.intervals import Interval, check_ascending, compile_lookup, make_interval

ScoreFn = Callable[[Mapping[str, Any], dict[str, Any]], tuple[Any, dict[str, Any]]]
_TOL: Final = 1e-9


Scored = tuple[float, str]  # points, and the matched step's text or a status (missing / no_step / not_a_number)
_MISSING: Final[Scored] = (0.0, "missing")
_NO_STEP: Final[Scored] = (0.0, "no_step")
_NAN: Final[Scored] = (0.0, "not_a_number")

#: Columns of each indicator row in a scorecard explanation. ``step`` is the matched ladder step (e.g.
#: ``(100000, 500000]``), or the status when there is none: ``ok`` (a linear scale), ``missing`` (no value:
#: 0 points), ``no_step`` (the value is outside the ladder: 0 points) or ``not_a_number``.
INDICATOR_COLUMNS: Final = ("name", "feature", "value", "points", "max_points", "weight", "contribution", "step")


@dataclass(frozen=True, slots=True)
class _Indicator:
    name: str
    feature: str
    weight: float  # percent of the total score
    max_points: float
    scorer: Callable[[Any], Scored] | None  # None: a linear scale, computed inline from ``scale``
    scale: tuple[float, float]  # (from, to - from) of a linear scale
    key: str


@dataclass(frozen=True, slots=True)
class _Dimension:
    name: str
    weight: float
    indicators: tuple[_Indicator, ...]
    key: str


def _ladder_scorer(steps: tuple[Interval, ...], points: tuple[float, ...]) -> Callable[[Any], Scored]:
    """A closure scoring a (non-None) value on ascending steps; results are preallocated tuples."""
    results = tuple((pts, iv.text()) for iv, pts in zip(steps, points, strict=True))
    return compile_lookup(steps, results, _NO_STEP, _NAN)


def _compile_ladder(
    ctx: CompileContext, path: str, steps: list[PointsStep], kind: str, max_points: float | None
) -> tuple[tuple[Interval, ...], tuple[float, ...]]:
    if kind == "datetime":
        ctx.fail(path, "a timestamp feature cannot be scored on a ladder; use a days_since_* feature")
    intervals = tuple(make_interval(s, kind) for s in steps)
    check_ascending(ctx, path, intervals)
    for i, s in enumerate(steps):
        if max_points is not None and s.points > max_points + _TOL:
            ctx.fail(join_path(join_path(path, i), "points"), f"points {s.points:g} exceed max_points {max_points:g}")
    return intervals, tuple(float(s.points) for s in steps)


def _check_sum(ctx: CompileContext, path: str, what: str, weights: list[float], expected: float) -> None:
    total = sum(weights)
    if abs(total - expected) > 1e-6:
        ctx.fail(path, f"{what} sum to {total:g}%, expected {expected:g}%")


def compile_scorecard(ctx: CompileContext, path: str, card: Scorecard) -> ScoreFn:
    """Compile a weighted scorecard; refuses weights that do not sum to 100% and bad ladders."""
    dims_path = join_path(path, "dimensions")
    _check_sum(ctx, dims_path, "dimension weights", [d.weight for d in card.dimensions], 100.0)
    dims: list[_Dimension] = []
    seen: set[str] = set()
    for di, dim in enumerate(card.dimensions):
        dpath = join_path(dims_path, di)
        if dim.name in seen:
            ctx.fail(join_path(dpath, "name"), f"duplicate name {dim.name!r}")
        seen.add(dim.name)
        ipath = join_path(dpath, "indicators")
        expected = dim.weight if card.indicator_weights == "of_total" else 100.0
        weights = [i.weight for i in dim.indicators]
        _check_sum(ctx, ipath, f"indicator weights of dimension {dim.name!r}", weights, expected)
        inds: list[_Indicator] = []
        for ii, ind in enumerate(dim.indicators):
            p = join_path(ipath, ii)
            if ind.name in seen:
                ctx.fail(join_path(p, "name"), f"duplicate name {ind.name!r}")
            seen.add(ind.name)
            info = ctx.feature(join_path(p, "feature"), ind.feature)
            weight = ind.weight if card.indicator_weights == "of_total" else dim.weight * ind.weight / 100.0
            if ind.ladder is not None:
                steps, points = _compile_ladder(ctx, join_path(p, "ladder"), ind.ladder, info.kind, ind.max_points)
                scorer: Callable[[Any], Scored] | None = _ladder_scorer(steps, points)
                scale = (0.0, 1.0)
            else:
                assert ind.scale is not None
                if info.kind not in ("int", "float", "money", "attr"):
                    ctx.fail(join_path(p, "scale"), f"a {info.kind} feature cannot be scaled")
                scorer = None
                scale = (float(ind.scale.from_), float(ind.scale.to - ind.scale.from_))
            inds.append(
                _Indicator(ind.name, ind.feature, weight, float(ind.max_points), scorer, scale, f"pts:{ind.name}")
            )
        dims.append(_Dimension(dim.name, dim.weight, tuple(inds), f"dim:{dim.name}"))
        ctx.dimensions.add(dim.name)
    ctx.indicators.update(i.name for d in dims for i in d.indicators)
    # Plain tuples for the hot loop: tuple unpacking is much cheaper than attribute access.
    plan = tuple(
        (
            d.name,
            d.weight,
            d.key,
            tuple((i.name, i.feature, i.weight, i.max_points, i.scorer, *i.scale, i.key) for i in d.indicators),
        )
        for d in dims
    )
    # Conditions compiled after the score may refer to points / dimensions; only then are they published.
    refs = ctx.score_refs

    def run(f: Mapping[str, Any], s: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        # Hot path (the benchmark's): one scorer call per indicator, preallocated step results, rows as lists
        # (a 9-key dict per indicator would double the cost of a decision).
        total = 0.0
        out_dims = []
        get = f.get
        publish = bool(refs)
        for dname, dweight, dkey, indicators in plan:
            dsum = 0.0
            rows = []
            for name, feature, weight, max_points, scorer, lo, span, key in indicators:
                x = get(feature)
                if x is None:
                    pts, step = 0.0, "missing"
                elif scorer is not None:
                    pts, step = scorer(x)
                else:  # linear scale inline (assessments): product first, one division, clamped
                    try:
                        pts = (float(x) - lo) * max_points / span
                        pts = 0.0 if pts < 0.0 else max_points if pts > max_points else pts
                        step = "ok"
                    except (TypeError, ValueError):
                        pts, step = 0.0, "not_a_number"
                # points × weight is exact for the small numbers of real ladders, so one division gives the
                # correctly rounded contribution (8 × 15 / 10 = 12.0, not 0.8 × 15 = 12.000000000000002).
                contrib = pts * weight / max_points
                dsum += contrib
                if publish:
                    s[key] = pts
                rows.append(
                    [name, feature, float(x) if type(x) is Decimal else x, pts, max_points, weight, contrib, step]
                )
            if publish:  # conditions compare dimension points: round them so hand arithmetic holds exactly
                dsum = round(dsum, 6)
                s[dkey] = dsum
            total += dsum
            out_dims.append({"name": dname, "weight": dweight, "points": dsum, "indicators": rows})
        return round(total, 6), {"kind": "scorecard", "columns": INDICATOR_COLUMNS, "dimensions": out_dims}

    return run


def compile_ladder_score(ctx: CompileContext, path: str, ladder: Ladder) -> ScoreFn:
    """A single feature on a points ladder; missing or no step scores 0."""
    info = ctx.feature(join_path(path, "feature"), ladder.feature)
    steps, points = _compile_ladder(ctx, join_path(path, "steps"), ladder.steps, info.kind, None)
    scorer = _ladder_scorer(steps, points)

    def run(f: Mapping[str, Any], s: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        x = f.get(ladder.feature)
        pts, step = _MISSING if x is None else scorer(x)
        detail = {"kind": "ladder", "feature": ladder.feature, "value": jsonable(x), "points": pts, "step": step}
        return pts, detail

    return run


def compile_feature_score(ctx: CompileContext, path: str, name: str) -> ScoreFn:
    """The raw feature value is the score (e.g. average monthly spend); None when missing."""
    info = ctx.feature(path, name)
    if info.kind in ("datetime", "bool"):
        ctx.fail(path, f"a {info.kind} feature cannot be a score")

    def run(f: Mapping[str, Any], s: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        x = f.get(name)
        detail = {"kind": "feature", "feature": name, "value": jsonable(x), "status": "missing" if x is None else "ok"}
        return x, detail

    return run


def compile_score(ctx: CompileContext, path: str, score: Score) -> ScoreFn:
    """Compile any ``score:`` section, bonuses included."""
    base: ScoreFn
    if score.scorecard is not None:
        base = compile_scorecard(ctx, join_path(path, "scorecard"), score.scorecard)
    elif score.ladder is not None:
        base = compile_ladder_score(ctx, join_path(path, "ladder"), score.ladder)
    elif score.feature is not None:
        base = compile_feature_score(ctx, join_path(path, "feature"), score.feature)
    else:
        assert score.blend is not None
        base = _compile_blend(ctx, join_path(path, "blend"), score.blend)
    if not score.bonus:
        return base
    bonuses: list[tuple[Cond, str, float, Decimal, str | None]] = []
    for i, b in enumerate(score.bonus):
        fn, text = compile_condition(
            ctx, join_path(join_path(join_path(path, "bonus"), i), "when"), b.when, allow_scores=False
        )
        bonuses.append((fn, text, b.multiplier, Decimal(str(b.multiplier)), b.reason))

    def run(f: Mapping[str, Any], s: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        value, detail = base(f, s)
        applied = []
        before = value
        for cond, text, mult, dmult, reason in bonuses:
            if value is not None and cond(f, s):
                value = value * dmult if isinstance(value, Decimal) else round(value * mult, 6)
                applied.append({"multiplier": mult, "when": text, "reason": reason})
        detail = {**detail, "before_bonus": jsonable(before), "bonus": applied}
        return value, detail

    return run


def _compile_blend(ctx: CompileContext, path: str, parts: list[Any]) -> ScoreFn:
    _check_sum(ctx, path, "blend weights", [p.weight for p in parts], 100.0)
    compiled = [
        (p.name, p.weight, compile_score(ctx, join_path(join_path(path, i), "score"), p.score))
        for i, p in enumerate(parts)
    ]

    def run(f: Mapping[str, Any], s: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        total = 0.0
        out = []
        for name, weight, fn in compiled:
            v, d = fn(f, s)
            fv = 0.0 if v is None else float(v)
            total += fv * weight / 100.0
            out.append(
                {"name": name, "weight": weight, "value": fv, "status": "missing" if v is None else "ok", "detail": d}
            )
        return round(total, 6), {"kind": "blend", "parts": out}

    return run
