"""Compile a policy's ``lifecycle:`` section (see :class:`schemas.policy.Lifecycle`) into the immutable
:class:`CompiledLifecycle` the pure state machine in :mod:`scoring.lifecycle` runs on.

Checks that need the rest of the file happen here and raise :class:`PolicyError` with the path inside the
section: review-based modes need the policy's ``review``; hysteresis needs a top-level ``bands`` tier source
and margins smaller than the band below; approval rules name known tiers and can match some transition;
at-risk warnings need a downgrade that is scheduled (not immediate).

A policy without a ``lifecycle:`` section compiles to the default: immediate up and down, no bands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from schemas.policy import ApprovalRule, Lifecycle, Policy
from scoring.policy.context import CompileContext
from scoring.policy.errors import join_path

#: (threshold, inclusive) of a tier's band lower bound, in the units of the banded number.
Threshold = tuple[float, bool]

_REVIEW_MODES: Final = ("at_review", "one_step")


@dataclass(frozen=True, slots=True)
class CompiledApproval:
    """One approval rule over tier ranks (0 = highest). ``from_ranks``/``to_ranks`` None means "any";
    ``to_direction`` is "down", "up" or None."""

    index: int
    from_ranks: frozenset[int] | None
    to_ranks: frozenset[int] | None
    to_direction: str | None
    expires_after: timedelta

    def matches(self, frm: int, to: int) -> bool:
        """Whether the transition from rank ``frm`` to rank ``to`` (``frm != to``) needs this approval."""
        if self.from_ranks is not None and frm not in self.from_ranks:
            return False
        if self.to_ranks is not None:
            return to in self.to_ranks
        if self.to_direction == "down":
            return to > frm
        if self.to_direction == "up":
            return to < frm
        return True


@dataclass(frozen=True, slots=True)
class CompiledLifecycle:
    """The lifecycle rules of one policy, by tier rank (0 = highest).

    ``entry[r]`` is the lower bound of tier r's band when the policy's tier source is top-level ``bands``
    (None for the default tier, or for other sources); ``exit_margin[r]`` is the hysteresis margin (0 = none).
    ``banded`` tells whether the decision's ``tier_detail.value`` is the banded number these refer to.
    """

    upgrade: str = "immediate"
    downgrade: str = "immediate"
    grace: timedelta | None = None
    min_in_tier: timedelta = timedelta(0)
    review: str | None = None
    at_risk: timedelta | None = None
    approvals: tuple[CompiledApproval, ...] = ()
    banded: bool = False
    entry: tuple[Threshold | None, ...] = ()
    exit_margin: tuple[float, ...] = ()

    @property
    def hysteresis(self) -> bool:
        """True when some tier keeps its customers below its entry threshold."""
        return any(m > 0 for m in self.exit_margin)

    def keep_threshold(self, rank: int) -> Threshold | None:
        """The bound a customer holding tier ``rank`` must stay at or above (entry minus exit margin)."""
        if not self.banded or rank >= len(self.entry):
            return None
        e = self.entry[rank]
        if e is None:
            return None
        return (e[0] - self.exit_margin[rank], e[1])

    def approval_for(self, frm: int, to: int) -> CompiledApproval | None:
        """The first approval rule the transition ``frm`` -> ``to`` matches, else None."""
        for rule in self.approvals:
            if rule.matches(frm, to):
                return rule
        return None


DEFAULT_LIFECYCLE: Final = CompiledLifecycle()


def reaches(value: float, threshold: Threshold) -> bool:
    """Whether ``value`` is at or above ``threshold`` (strictly above when the bound is exclusive)."""
    lo, inclusive = threshold
    return value > lo or (inclusive and value == lo)


def compile_lifecycle(ctx: CompileContext, policy: Policy) -> CompiledLifecycle:
    """Check and compile ``policy.lifecycle`` (the default when absent); raises PolicyError."""
    entry = _band_entries(ctx, policy)
    spec = policy.lifecycle
    n = len(ctx.tiers)
    if spec is None:
        if entry is None:
            return DEFAULT_LIFECYCLE
        return CompiledLifecycle(banded=True, entry=entry, exit_margin=(0.0,) * n)
    path = "lifecycle"
    if spec.upgrade == "at_review" and policy.review is None:
        ctx.fail(join_path(path, "upgrade"), _needs_review("upgrade 'at_review'"))
    if spec.downgrade.mode in _REVIEW_MODES and policy.review is None:
        ctx.fail(join_path(path, "downgrade.mode"), _needs_review(f"mode {spec.downgrade.mode!r}"))
    scheduled = spec.downgrade.mode != "immediate" or spec.downgrade.min_days_in_tier > 0
    if spec.at_risk_days is not None and not scheduled:
        ctx.fail(
            join_path(path, "at_risk_days"),
            "at-risk warnings need a scheduled downgrade: downgrade mode 'after_grace', 'at_review' or "
            "'one_step', or 'min_days_in_tier' (an immediate downgrade leaves nothing to warn about)",
        )
    margins = _margins(ctx, policy, spec, entry)
    approvals = tuple(
        _approval(ctx, join_path(join_path(path, "approvals"), i), i, rule) for i, rule in enumerate(spec.approvals)
    )
    grace = spec.downgrade.grace_days
    return CompiledLifecycle(
        upgrade=spec.upgrade,
        downgrade=spec.downgrade.mode,
        grace=None if grace is None else timedelta(days=grace),
        min_in_tier=timedelta(days=spec.downgrade.min_days_in_tier),
        review=policy.review,
        at_risk=None if spec.at_risk_days is None else timedelta(days=spec.at_risk_days),
        approvals=approvals,
        banded=entry is not None,
        entry=entry or (),
        exit_margin=margins,
    )


def _needs_review(what: str) -> str:
    return f"{what} needs the policy's 'review' period (monthly, quarterly, half_yearly or yearly)"


def _band_entries(ctx: CompileContext, policy: Policy) -> tuple[Threshold | None, ...] | None:
    """Per tier rank, the lower bound of its band when the tier source is top-level ``bands``, else None.
    The compiler has already checked the bands (known tiers, descending, non-overlapping)."""
    bands = policy.tier.bands
    if bands is None:
        return None
    out: list[Threshold | None] = [None] * len(ctx.tiers)
    for step in bands.bands:
        lo = step.gt if step.gt is not None else step.ge
        if lo is not None:
            out[ctx.tiers.index(step.tier)] = (float(lo), step.ge is not None)
    return tuple(out)


def _margins(
    ctx: CompileContext, policy: Policy, spec: Lifecycle, entry: tuple[Threshold | None, ...] | None
) -> tuple[float, ...]:
    n = len(ctx.tiers)
    hyst = spec.hysteresis
    if hyst is None:
        return (0.0,) * n
    path = "lifecycle.hysteresis"
    if entry is None:
        kind = next(k for k in ("percentile", "rules", "grant", "fixed", "max", "min") if getattr(policy.tier, k))
        ctx.fail(
            path,
            f"hysteresis needs a policy whose 'tier' is 'bands' (this one uses {kind!r}): only a band has an "
            "entry threshold to keep customers below; use downgrade modes or min_days_in_tier instead",
        )
    margins = [float(hyst.margin) if entry[r] is not None else 0.0 for r in range(n)]
    for name, m in hyst.tiers.items():
        tpath = join_path(join_path(path, "tiers"), name)
        r = ctx.tier_index(tpath, name)
        if entry[r] is None:
            ctx.fail(tpath, f"tier {name!r} has no band with a lower bound (it is the bands' default): no entry "
                            "threshold to keep")
        margins[r] = float(m)
    # The exit threshold must stay above the next band's entry, or a customer could hold a tier while
    # scoring two tiers below it: the band would swallow a whole tier.
    for r in range(n):
        e = entry[r]
        if e is None or margins[r] == 0:
            continue
        below = next((entry[k] for k in range(r + 1, n) if entry[k] is not None), None)
        exit_at = e[0] - margins[r]
        if below is not None and exit_at <= below[0]:
            where = join_path(join_path(path, "tiers"), ctx.tiers[r]) if ctx.tiers[r] in hyst.tiers else \
                join_path(path, "margin")
            ctx.fail(
                where,
                f"exit threshold {exit_at:g} of tier {ctx.tiers[r]!r} ({e[0]:g} - {margins[r]:g}) is not above "
                f"the entry threshold {below[0]:g} of the next band down: the margin must be smaller than that "
                "band's width",
            )
    return tuple(margins)


def _ranks(ctx: CompileContext, path: str, names: list[str]) -> frozenset[int]:
    return frozenset(ctx.tier_index(join_path(path, i), n) for i, n in enumerate(names))


def _approval(ctx: CompileContext, path: str, index: int, rule: ApprovalRule) -> CompiledApproval:
    from_ranks = None if rule.from_ == "any" else _ranks(ctx, join_path(path, "from"), list(rule.from_))
    to_ranks = None
    to_direction = None
    if isinstance(rule.to, list):
        to_ranks = _ranks(ctx, join_path(path, "to"), rule.to)
    elif rule.to != "any":
        to_direction = rule.to
    compiled = CompiledApproval(index, from_ranks, to_ranks, to_direction, timedelta(days=rule.expires_after_days))
    n = len(ctx.tiers)
    if not any(compiled.matches(f, t) for f in range(n) for t in range(n) if f != t):
        ctx.fail(path, "this rule matches no transition between the policy's tiers")
    return compiled
