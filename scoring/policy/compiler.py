"""Compile a validated :class:`schemas.policy.Policy` into a :class:`CompiledPolicy`.

All cross-item checks happen here and raise :class:`PolicyError` with the path of the offending item:
unknown features and tiers, weights that do not sum to 100%, unordered or overlapping ladders and bands,
a rule ladder without a default, duplicate tiers, and the ``lifecycle:`` section (scoring.policy.lifecycle).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from schemas.policy import Policy, TierSpec
from scoring.policy.adjustments import compile_adjustment, compile_entitlements
from scoring.policy.compared import compared_only
from scoring.policy.compiled import CompiledPolicy
from scoring.policy.context import CompileContext
from scoring.policy.errors import join_path
from scoring.policy.lifecycle import compile_lifecycle
from scoring.policy.scores import compile_score
from scoring.policy.tiers import compile_tier_source, primary_sources

#: Default response-time targets by tier rank (seconds): 15 min, 1 h, 4 h, 8 h, 1 day, then 2 days.
_DEFAULT_RESPONSE = (900, 3600, 14_400, 28_800, 86_400, 172_800)


def compile_policy(policy: Policy, file: str) -> CompiledPolicy:
    """Check and compile ``policy`` read from ``file``; raises PolicyError."""
    names: list[str] = []
    specs: list[TierSpec | None] = []
    ctx0 = CompileContext(file=file, tiers=())
    for i, t in enumerate(policy.tiers):
        name = t if isinstance(t, str) else t.name
        if name in names:
            ctx0.fail(join_path("tiers", i), f"duplicate tier {name!r}")
        names.append(name)
        specs.append(None if isinstance(t, str) else t)
    ctx = CompileContext(file=file, tiers=tuple(names), policy_id=policy.id)

    score_fn = None
    if policy.score is not None:
        ctx.has_score = True
        if policy.score.feature is not None:
            info = ctx.feature(join_path("score", "feature"), policy.score.feature)
            ctx.score_kind = "money" if info.kind == "money" else "float"
        score_fn = compile_score(ctx, "score", policy.score)
    tier_src = compile_tier_source(ctx, "tier", policy.tier)
    adjust = tuple(compile_adjustment(ctx, join_path("adjust", i), a) for i, a in enumerate(policy.adjust))
    ent = compile_entitlements(ctx, "entitlements", policy.entitlements) if policy.entitlements is not None else None

    return CompiledPolicy(
        id=policy.id,
        version=policy.version,
        tiers=ctx.tiers,
        max_window_days=max((f.window_days for f in ctx.features.values()), default=0),
        features_used=frozenset(ctx.features),
        routing=_routing(policy.id, ctx.tiers, specs),
        needs_population=ctx.needs_population,
        review=policy.review,
        description=policy.description,
        source=file,
        _score=score_fn,
        _tier=tier_src,
        _adjust=adjust,
        _entitlements=ent,
        _outlook=tuple(primary_sources(tier_src)),
        lifecycle=compile_lifecycle(ctx, policy),
        compared=MappingProxyType(compared_only(policy.model_dump(by_alias=True, exclude_none=True), ctx.features)),
    )


def _routing(policy_id: str, tiers: tuple[str, ...], specs: list[TierSpec | None]) -> MappingProxyType[str, Any]:
    """Per-tier routing: file values, else queue = ``<policy>.<tier>``, priority = rank (1 = highest),
    response time from :data:`_DEFAULT_RESPONSE` by rank."""
    out: dict[str, Any] = {}
    for i, (name, spec) in enumerate(zip(tiers, specs, strict=True)):
        r = spec.routing if spec is not None else None
        entry: dict[str, Any] = {
            "queue": (r.queue if r and r.queue else f"{policy_id}.{name}"),
            "priority": (r.priority if r and r.priority is not None else i + 1),
            "response_time_target_seconds": (
                r.response_time_target_seconds
                if r and r.response_time_target_seconds
                else _DEFAULT_RESPONSE[min(i, len(_DEFAULT_RESPONSE) - 1)]
            ),
        }
        if r and r.follow_up_days:
            entry["follow_up_days"] = r.follow_up_days
        if spec is not None and spec.label:
            entry["label"] = spec.label
        out[name] = MappingProxyType(entry)
    return MappingProxyType(out)
