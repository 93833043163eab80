"""The condition language, compiled once to closures (no ``eval``, no code from policy files).

A compiled condition is ``cond(features, scores) -> bool``: ``features`` is the feature mapping,
``scores`` holds the policy's own numbers under ``"score:total"``, ``"dim:<dimension>"`` and
``"pts:<indicator>"``. Semantics (explicit about missing data):

- a comparison with a missing (absent or None) value is False; ``== null`` / ``!= null`` test presence;
- a comparison between incomparable types (e.g. a text attribute with ``>``) is False, never an error;
- money features are compared with Decimal thresholds (exact); other numbers as given.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from schemas.policy import Condition
from scoring.policy.context import CompileContext, to_number
from scoring.policy.errors import join_path

Cond = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]

_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def compile_condition(ctx: CompileContext, path: str, cond: Condition, allow_scores: bool = True) -> tuple[Cond, str]:
    """Compile ``cond`` (at ``path`` in the file) to a closure and a readable text for explanations.

    ``allow_scores`` False refuses ``score``/``dimension``/``points`` operands (e.g. in bonuses, which run
    before the total is known)."""
    if cond.all is not None:
        parts = [
            compile_condition(ctx, join_path(join_path(path, "all"), i), c, allow_scores)
            for i, c in enumerate(cond.all)
        ]
        fns = tuple(p[0] for p in parts)
        text = " and ".join(f"({p[1]})" if " or " in p[1] else p[1] for p in parts)

        def all_(f: Mapping[str, Any], s: Mapping[str, Any]) -> bool:
            for fn in fns:  # noqa: SIM110 - a plain loop: no generator object per call (hot path)
                if not fn(f, s):
                    return False
            return True

        return all_, text
    if cond.any is not None:
        parts = [
            compile_condition(ctx, join_path(join_path(path, "any"), i), c, allow_scores)
            for i, c in enumerate(cond.any)
        ]
        fns = tuple(p[0] for p in parts)
        text = " or ".join(p[1] for p in parts)

        def any_(f: Mapping[str, Any], s: Mapping[str, Any]) -> bool:
            for fn in fns:  # noqa: SIM110 - see all_
                if fn(f, s):
                    return True
            return False

        return any_, text
    if cond.not_ is not None:
        inner, inner_text = compile_condition(ctx, join_path(path, "not"), cond.not_, allow_scores)

        def not_(f: Mapping[str, Any], s: Mapping[str, Any]) -> bool:
            return not inner(f, s)

        return not_, f"not ({inner_text})"
    return _compile_comparison(ctx, path, cond, allow_scores)


def _compile_comparison(ctx: CompileContext, path: str, cond: Condition, allow_scores: bool) -> tuple[Cond, str]:
    op = cond.op
    assert op is not None  # guaranteed by the schema
    if cond.feature is not None:
        info = ctx.feature(join_path(path, "feature"), cond.feature)
        kind, key, use_scores, label = info.kind, cond.feature, False, cond.feature
    else:
        if not allow_scores:
            ctx.fail(path, "score, dimension and points cannot be used here (the score is not known yet)")
        if cond.score is not None:
            if not ctx.has_score:
                ctx.fail(join_path(path, "score"), "the policy has no 'score' section")
            key, label = "score:total", "score"
        elif cond.dimension is not None:
            if cond.dimension not in ctx.dimensions:
                ctx.fail(join_path(path, "dimension"), f"unknown scorecard dimension {cond.dimension!r}")
            key, label = f"dim:{cond.dimension}", f"dimension {cond.dimension}"
            ctx.score_refs.append(key)
        else:
            assert cond.points is not None
            if cond.points not in ctx.indicators:
                ctx.fail(join_path(path, "points"), f"unknown scorecard indicator {cond.points!r}")
            key, label = f"pts:{cond.points}", f"points {cond.points}"
            ctx.score_refs.append(key)
        kind, use_scores = "float", True
    value = _typed_value(ctx, join_path(path, "value"), kind, op, cond.value)
    text = f"{label} {op} {_show(value)}"
    return _closure(key, op, value, use_scores), text


def _typed_value(ctx: CompileContext, path: str, kind: str, op: str, value: Any) -> Any:
    """Check the constant against the feature kind and convert it (money -> Decimal)."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    out: list[Any] = []
    for v in values:
        if kind in ("money", "int", "float"):
            if isinstance(v, bool) or not isinstance(v, int | float):
                ctx.fail(path, f"a {kind} feature must be compared with a number, not {v!r}")
            out.append(to_number(kind, v) if kind == "money" else v)
        elif kind == "bool":
            if not isinstance(v, bool) or op not in ("==", "!=", "in"):
                ctx.fail(path, "a boolean feature only supports == / != true or false")
            out.append(v)
        elif kind == "datetime":
            ctx.fail(path, "a timestamp feature can only be tested with == null / != null; use days_since_* features")
        else:
            out.append(v)
    return frozenset(out) if isinstance(value, list) else out[0]


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, frozenset):
        return "[" + ", ".join(sorted(_show(v) for v in value)) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return repr(value) if isinstance(value, str) else str(value)


def _closure(key: str, op: str, value: Any, use_scores: bool) -> Cond:
    # One small closure per shape, so the hot path is a dict lookup and one comparison.
    if value is None:
        want_none = op == "=="
        if use_scores:
            return lambda f, s: (s.get(key) is None) is want_none
        return lambda f, s: (f.get(key) is None) is want_none

    if op == "in":
        members = value

        def is_in(f: Mapping[str, Any], s: Mapping[str, Any]) -> bool:
            x = (s if use_scores else f).get(key)
            if x is None:
                return False
            try:
                return x in members
            except TypeError:  # unhashable value: not a member
                return False

        return is_in

    fn = _OPS[op]

    # Separate closures for features and scores: the hot path is one lookup and one comparison.
    def compare_feature(f: Mapping[str, Any], s: Mapping[str, Any]) -> bool:
        x = f.get(key)
        if x is None:
            return False
        try:
            return fn(x, value)
        except TypeError:  # e.g. a text attribute compared with a number
            return False

    def compare_score(f: Mapping[str, Any], s: Mapping[str, Any]) -> bool:
        x = s.get(key)
        if x is None:
            return False
        try:
            return fn(x, value)
        except TypeError:
            return False

    return compare_score if use_scores else compare_feature
