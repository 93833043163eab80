"""The runtime objects: :class:`Decision` and the immutable :class:`CompiledPolicy`.

``evaluate`` is pure and deterministic: the same features (and population) give the same decision.
Order of work: score (with bonuses) -> base tier from the tier source -> adjustments in file order ->
entitlements -> explanation (next tier up / margin to keep from the first bands, percentile or rule source).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from scoring.policy.adjustments import AdjustFn, EntitlementFn
from scoring.policy.lifecycle import DEFAULT_LIFECYCLE, CompiledLifecycle
from scoring.policy.population import PopulationView
from scoring.policy.scores import ScoreFn
from scoring.policy.tiers import TierSource


@dataclass(frozen=True, slots=True)
class Decision:
    """One customer's tier under one policy version.

    ``score`` is the policy score as a float (None for rule-only policies); ``explanation`` is JSON-safe
    (floats/str, never Decimal); ``entitlements`` is the entitlement count, None when the policy has none.
    """

    policy: str
    version: int
    tier: str
    score: float | None
    explanation: dict[str, Any]
    entitlements: int | None = None


@dataclass(frozen=True, slots=True, eq=False)
class CompiledPolicy:
    """A validated, compiled policy. Immutable; safe to share between threads and partitions.

    ``tiers`` are highest first; ``max_window_days`` is the longest window of its features (the lateness
    horizon); ``routing`` maps each tier to queue / priority / response_time_target_seconds (and
    follow_up_days when given); ``needs_population`` is True for percentile bands and quotas;
    ``lifecycle`` holds the compiled ``lifecycle:`` section (how scored tiers become held tiers over time);
    ``compared`` the continuous features it only compares with constants, with those constants.
    """

    id: str
    version: int
    tiers: tuple[str, ...]
    max_window_days: int
    features_used: frozenset[str]
    routing: Mapping[str, Mapping[str, Any]]
    needs_population: bool
    review: str | None
    description: str | None
    source: str
    _score: ScoreFn | None = field(repr=False)
    _tier: TierSource = field(repr=False)
    _adjust: tuple[AdjustFn, ...] = field(repr=False)
    _entitlements: EntitlementFn | None = field(repr=False)
    _outlook: tuple[TierSource, ...] = field(repr=False)
    # Lifecycle rules (scoring.lifecycle): the default is immediate up and down, no bands, no approvals.
    lifecycle: CompiledLifecycle = field(default=DEFAULT_LIFECYCLE, repr=False)
    # Continuous (days_since_*) features this policy only compares with constants -> those constants
    # (scoring.policy.compared): the decision sees only where the value lies among them.
    compared: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    def evaluate(self, features: Mapping[str, Any], population: PopulationView | None = None) -> Decision:
        """Decide the tier for one customer from ``features`` (names of docs/features.md).

        ``population`` is needed only when ``needs_population``; without it percentile bands give their
        default tier and quotas are not applied (both say so in the explanation)."""
        s: dict[str, Any] = {}
        score: Any = None
        score_detail = None
        if self._score is not None:
            score, score_detail = self._score(features, s)
            s["score:total"] = score
        base, tier_detail = self._tier(features, s, population)
        lowest = len(self.tiers) - 1
        if base is None:  # e.g. a lone grant that did not match
            base = lowest
            tier_detail = {**tier_detail, "note": "no source granted a tier: lowest tier"}
        tier = base
        applied = []
        for adj in self._adjust:
            tier, record = adj(features, s, population, tier)
            if record is not None:
                applied.append(record)
        outlook = None
        for src in self._outlook:
            outlook = src.outlook(features, s, population, tier)
            if outlook is not None:
                break
        entitlements = None
        ent_detail = None
        if self._entitlements is not None:
            entitlements, ent_detail = self._entitlements(features, s)
        fscore = None if score is None else float(score)
        explanation: dict[str, Any] = {
            "policy": self.id,
            "version": self.version,
            "tier": self.tiers[tier],
            "score": fscore,
            "score_detail": score_detail,
            "base_tier": self.tiers[base],
            "tier_detail": tier_detail,
            "thresholds_crossed": _first(tier_detail, "thresholds_crossed"),
            "matched_rule": tier_detail["matched_rule"]
            if "matched_rule" in tier_detail
            else _first(tier_detail, "matched_rule"),
            "adjustments": applied,
            "next_tier": None if outlook is None else outlook.get("next_tier"),
            "keep": None if outlook is None else outlook.get("keep"),
        }
        if ent_detail is not None:
            explanation["entitlements"] = ent_detail
        return _make_decision(self.id, self.version, self.tiers[tier], fscore, explanation, entitlements)

    def rank(self, tier: str) -> int:
        """Index of ``tier`` (0 = highest); raises ValueError for an unknown tier."""
        return self.tiers.index(tier)


def _slot_setter(name: str) -> Any:
    return Decision.__dict__[name].__set__


_NEW = object.__new__
_SET_POLICY, _SET_VERSION, _SET_TIER, _SET_SCORE, _SET_EXPLANATION, _SET_ENTITLEMENTS = (
    _slot_setter(n) for n in ("policy", "version", "tier", "score", "explanation", "entitlements")
)


def _make_decision(
    policy: str, version: int, tier: str, score: float | None, explanation: dict[str, Any], entitlements: int | None
) -> Decision:
    """``Decision(...)`` without the frozen-dataclass ``__init__`` (object.__setattr__ per field): the slot
    descriptors are set directly, which halves the cost on the hot path. The result is an ordinary,
    equal, immutable Decision."""
    d = _NEW(Decision)
    _SET_POLICY(d, policy)
    _SET_VERSION(d, version)
    _SET_TIER(d, tier)
    _SET_SCORE(d, score)
    _SET_EXPLANATION(d, explanation)
    _SET_ENTITLEMENTS(d, entitlements)
    return d


def _first(detail: dict[str, Any], key: str) -> Any:
    """The first ``key`` found in a (nested) tier detail, preferring the chosen source of a max/min."""
    if key in detail:
        return detail[key]
    sources = detail.get("sources")
    if sources:
        chosen = detail.get("chosen")
        ordered = [s for s in sources if s.get("name") == chosen] + [s for s in sources if s.get("name") != chosen]
        for s in ordered:
            found = _first(s, key)
            if found is not None:
                return found
    return None
