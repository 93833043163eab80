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


class Decision:
    """One customer's tier under one policy version. Immutable: its fields are read-only properties.

    ``score`` is the policy score as a float (None for rule-only policies); ``explanation`` is JSON-safe
    (floats/str, never Decimal); ``entitlements`` is the entitlement count, None when the policy has none.

    Why not a frozen dataclass (what it was until session 17): under mypyc the generated ``__init__`` of a
    frozen dataclass runs interpreted, ~0.5 µs a construction against ~0.02 µs for this native one, once per
    policy per decision; and a frozen dataclass kept this module out of the compiled build. Equality, hash
    and repr are the dataclass's: by the fields, in this order.
    """

    __slots__ = ("_entitlements", "_explanation", "_policy", "_score", "_tier", "_version")

    def __init__(self, policy: str, version: int, tier: str, score: float | None, explanation: dict[str, Any],
                 entitlements: int | None = None) -> None:
        self._policy = policy
        self._version = version
        self._tier = tier
        self._score = score
        self._explanation = explanation
        self._entitlements = entitlements

    @property
    def policy(self) -> str:
        """The policy id."""
        return self._policy

    @property
    def version(self) -> int:
        """The policy version."""
        return self._version

    @property
    def tier(self) -> str:
        """The decided tier."""
        return self._tier

    @property
    def score(self) -> float | None:
        """The policy score (None for rule-only policies)."""
        return self._score

    @property
    def explanation(self) -> dict[str, Any]:
        """Why this tier (JSON-safe)."""
        return self._explanation

    @property
    def entitlements(self) -> int | None:
        """The entitlement count, None when the policy has none."""
        return self._entitlements

    def _fields(self) -> tuple[Any, ...]:
        return (self._policy, self._version, self._tier, self._score, self._explanation, self._entitlements)

    # Pickle and copy by construction: a mypyc class with its own __init__ cannot be created empty, which is how
    # the default protocol copies (TypeError in the compiled build only; tests/unit/scoring/test_pickling.py).
    def __reduce__(self) -> tuple[type[Decision], tuple[Any, ...]]:
        return (Decision, self._fields())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (f"Decision(policy={self._policy!r}, version={self._version!r}, tier={self._tier!r}, "
                f"score={self._score!r}, explanation={self._explanation!r}, entitlements={self._entitlements!r})")


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
        return Decision(self.id, self.version, self.tiers[tier], fscore, explanation, entitlements)

    def rank(self, tier: str) -> int:
        """Index of ``tier`` (0 = highest); raises ValueError for an unknown tier."""
        return self.tiers.index(tier)


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
