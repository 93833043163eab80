"""Post-processing of the base tier: forced tiers, caps and floors, penalty steps, population quotas.

Adjustments run in file order on the tier index (0 = highest). Each compiled adjustment is
``adj(features, scores, population, tier) -> (tier, applied | None)`` where ``applied`` is a JSON-safe
record for the explanation when it changed or held the tier.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from schemas.policy import Adjustment, Entitlements
from scoring.policy.conditions import compile_condition
from scoring.policy.context import CompileContext, jsonable
from scoring.policy.errors import join_path
from scoring.policy.intervals import check_ascending, make_interval
from scoring.policy.population import PopulationView

AdjustFn = Callable[
    [Mapping[str, Any], Mapping[str, Any], PopulationView | None, int], tuple[int, dict[str, Any] | None]
]


def compile_adjustment(ctx: CompileContext, path: str, adj: Adjustment) -> AdjustFn:
    """Compile one ``adjust:`` entry."""
    tiers = ctx.tiers
    lowest = len(tiers) - 1
    if adj.quota is not None:
        return _compile_quota(ctx, join_path(path, "quota"), adj)
    assert adj.when is not None
    cond, text = compile_condition(ctx, join_path(path, "when"), adj.when)
    reason = adj.reason
    if adj.force is not None:
        target = ctx.tier_index(join_path(path, "force"), adj.force)
        kind = "force"

        def apply(t: int) -> int:
            return target

    elif adj.at_most is not None:
        target = ctx.tier_index(join_path(path, "at_most"), adj.at_most)
        kind = "at_most"

        def apply(t: int) -> int:
            return max(t, target)

    elif adj.at_least is not None:
        target = ctx.tier_index(join_path(path, "at_least"), adj.at_least)
        kind = "at_least"

        def apply(t: int) -> int:
            return min(t, target)

    else:
        steps = adj.down or 1
        kind = "down"

        def apply(t: int) -> int:
            return min(lowest, t + steps)

    def run(
        f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None, tier: int
    ) -> tuple[int, dict[str, Any] | None]:
        if not cond(f, s):
            return tier, None
        new = apply(tier)
        return new, {"kind": kind, "when": text, "reason": reason, "from": tiers[tier], "to": tiers[new]}

    return run


def _compile_quota(ctx: CompileContext, path: str, adj: Adjustment) -> AdjustFn:
    quota = adj.quota
    assert quota is not None
    if not ctx.has_score:
        ctx.fail(path, "a quota ranks customers by score: the policy needs a 'score' section")
    target = ctx.tier_index(join_path(path, "tier"), quota.tier)
    if target == len(ctx.tiers) - 1:
        ctx.fail(join_path(path, "tier"), "the lowest tier cannot be capped")
    ctx.needs_population = True
    policy, tiers, reason = ctx.policy_id, ctx.tiers, adj.reason

    def run(
        f: Mapping[str, Any], s: Mapping[str, Any], pop: PopulationView | None, tier: int
    ) -> tuple[int, dict[str, Any] | None]:
        if tier != target:
            return tier, None
        score = s.get("score:total")
        total = 0 if pop is None else pop.total(policy)
        if pop is None or total <= 0 or score is None:
            return tier, {"kind": "quota", "tier": tiers[target], "status": "population unavailable: not applied"}
        allowed = max(quota.min_count, math.floor(total * quota.top_percent / 100.0))
        rank = pop.count_at_or_above(policy, float(score))
        record = {"kind": "quota", "tier": tiers[target], "allowed": allowed, "rank": round(rank, 3), "reason": reason}
        if rank <= allowed + 1e-9:
            return tier, {**record, "status": "within quota"}
        return tier + 1, {**record, "status": "quota full", "from": tiers[tier], "to": tiers[tier + 1]}

    return run


EntitlementFn = Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[int, dict[str, Any]]]


def compile_entitlements(ctx: CompileContext, path: str, spec: Entitlements) -> EntitlementFn:
    """Entitlement count (e.g. VIP cards) from the score or a feature via ascending steps; no step -> 0."""
    if spec.of == "score":
        if not ctx.has_score:
            ctx.fail(join_path(path, "of"), "entitlements of 'score' need a 'score' section")
        kind = ctx.score_kind
    else:
        kind = ctx.feature(join_path(path, "of"), spec.of).kind
    spath = join_path(path, "steps")
    intervals = tuple(make_interval(st, kind) for st in spec.steps)
    check_ascending(ctx, spath, intervals)
    counts = tuple(st.count for st in spec.steps)
    of, name = spec.of, spec.name

    def run(f: Mapping[str, Any], s: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        x = s.get("score:total") if of == "score" else f.get(of)
        count, step = 0, None
        if x is not None:
            try:
                for iv, c in zip(intervals, counts, strict=True):
                    if iv.contains(x):
                        count, step = c, iv.text()
                        break
            except TypeError:
                pass
        return count, {"name": name, "of": of, "value": jsonable(x), "step": step, "count": count}

    return run
