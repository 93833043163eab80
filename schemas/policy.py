"""Policy file contract: the pydantic models a tiering policy (YAML) must satisfy.

A policy is *data*, never code: conditions are a small typed tree (``all``/``any``/``not`` over comparisons),
score ladders and bands are explicit intervals. These models check the *shape* of a file (types, unknown
keys, "exactly one of" choices, bound syntax). Checks that need the whole file or the feature catalogue
(weights summing to 100, ordered and non-overlapping ladders and bands, known tiers and features) are done
by :mod:`scoring.policy.compiler`, which reports the exact path of the offending item.

Invariants:
- every model forbids unknown keys (``extra="forbid"``), so a typo is refused with its path, and new optional
  sections (such as ``lifecycle:``) can be added without breaking existing files;
- numbers that may be compared with money are parsed as :class:`decimal.Decimal` so thresholds are exact;
- a ``Bound`` interval has at most one lower (``gt``/``ge``) and one upper (``lt``/``le``) bound.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")]
FeatureName = Annotated[str, Field(min_length=1, max_length=128)]
Number = Annotated[Decimal, Field(allow_inf_nan=False)]
Percent = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
Scalar = str | int | float | bool | None
CompareOp = Literal["<", "<=", ">", ">=", "==", "!=", "in"]
Review = Literal["monthly", "quarterly", "half_yearly", "yearly"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _exactly_one(model: BaseModel, names: tuple[str, ...]) -> None:
    given = [n for n in names if getattr(model, n) is not None]
    if len(given) != 1:
        shown = ", ".join(names)
        raise ValueError(f"exactly one of {shown} must be given (got {', '.join(given) or 'none'})")


# --------------------------------------------------------------------------------------------- conditions


class Condition(_Model):
    """A boolean test. Either a comparison ``{<operand>: name, op: ">", value: 5}`` where the operand is one
    of ``feature`` (docs/features.md), ``score`` (``total``), ``dimension`` (a scorecard dimension's
    contribution) or ``points`` (a scorecard indicator's ladder points), or a combination ``all``/``any``
    (lists) / ``not`` (one condition). A comparison with a missing (None) value is false, except
    ``== null`` / ``!= null`` which test presence."""

    feature: FeatureName | None = None
    score: Literal["total"] | None = None
    dimension: Name | None = None
    points: Name | None = None
    op: CompareOp | None = None
    value: Scalar | list[Scalar] = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        operands = ("feature", "score", "dimension", "points")
        _exactly_one(self, (*operands, "all", "any", "not_"))
        is_compare = any(getattr(self, n) is not None for n in operands)
        if is_compare:
            if self.op is None:
                raise ValueError("a comparison needs 'op'")
            if self.op == "in" and not isinstance(self.value, list):
                raise ValueError("op 'in' needs a list 'value'")
            if self.op != "in" and isinstance(self.value, list):
                raise ValueError(f"op {self.op!r} needs a single 'value', not a list")
            if self.value is None and self.op not in ("==", "!="):
                raise ValueError(f"op {self.op!r} cannot compare with null")
        elif self.op is not None or self.value is not None:
            raise ValueError("'op'/'value' only belong to a comparison")
        for group in (self.all, self.any):
            if group is not None and not group:
                raise ValueError("'all'/'any' need at least one condition")
        return self


# --------------------------------------------------------------------------------------------- intervals


class Bound(_Model):
    """An interval with explicit inclusivity: ``ge``/``gt`` (lower) and ``le``/``lt`` (upper), each optional."""

    gt: Number | None = None
    ge: Number | None = None
    lt: Number | None = None
    le: Number | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Bound:
        if self.gt is not None and self.ge is not None:
            raise ValueError("give at most one lower bound ('gt' or 'ge')")
        if self.lt is not None and self.le is not None:
            raise ValueError("give at most one upper bound ('lt' or 'le')")
        lo = self.gt if self.gt is not None else self.ge
        hi = self.lt if self.lt is not None else self.le
        if lo is not None and hi is not None:
            empty = lo > hi or (lo == hi and (self.gt is not None or self.lt is not None))
            if empty:
                raise ValueError(f"empty interval: lower bound {lo} is not below upper bound {hi}")
        return self


class PointsStep(Bound):
    """One step of a score ladder: a value in the interval scores ``points``."""

    points: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class TierStep(Bound):
    """One band: a value in the interval gives ``tier``."""

    tier: Name


class CountStep(Bound):
    """One entitlement step: a value in the interval grants ``count`` (e.g. VIP cards)."""

    count: Annotated[int, Field(ge=0)]


# --------------------------------------------------------------------------------------------- scores


class Scale(_Model):
    """Linear scale: ``from`` scores 0 points, ``to`` scores ``max_points`` (clamped); for 0..10 assessments."""

    from_: Number = Field(alias="from")
    to: Number

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _order(self) -> Scale:
        if self.from_ == self.to:
            raise ValueError("'from' and 'to' must differ")
        return self


class Indicator(_Model):
    """One scored indicator: a feature scored on a ``ladder`` (or a linear ``scale``) up to ``max_points``."""

    name: Name
    feature: FeatureName
    weight: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
    max_points: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 10
    ladder: list[PointsStep] | None = None
    scale: Scale | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _one_scoring(self) -> Indicator:
        _exactly_one(self, ("ladder", "scale"))
        if self.ladder is not None and not self.ladder:
            raise ValueError("'ladder' needs at least one step")
        return self


class Dimension(_Model):
    """A group of indicators with a weight (percent of the total score)."""

    name: Name
    weight: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
    indicators: Annotated[list[Indicator], Field(min_length=1)]
    description: str | None = None


class Scorecard(_Model):
    """Weighted scorecard, total 0..100: Σ points / max_points × effective indicator weight.

    ``indicator_weights: of_total`` (default): indicator weights are percent of the total and sum to their
    dimension's weight (the S/A/B/C/D seed: A1 15% + A2 15% + A3 10% = 40%). ``of_dimension``: they are
    percent of their dimension and sum to 100 (the pyramid seed: Σ(score × sub-weight) × dimension weight)."""

    indicator_weights: Literal["of_total", "of_dimension"] = "of_total"
    dimensions: Annotated[list[Dimension], Field(min_length=1)]


class Ladder(_Model):
    """A single feature scored on a step ladder (used as a part of a blend)."""

    feature: FeatureName
    steps: Annotated[list[PointsStep], Field(min_length=1)]


class BlendPart(_Model):
    """One weighted part of a blended score."""

    name: Name
    weight: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
    score: Score


class Bonus(_Model):
    """Multiply the score by ``multiplier`` when ``when`` holds (e.g. ×1.05 for a sales threshold)."""

    multiplier: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    when: Condition
    reason: str | None = None


class Score(_Model):
    """How a number is computed: exactly one of ``scorecard``, ``feature`` (the raw value, e.g. average
    monthly spend), ``ladder`` or ``blend`` (weighted parts, weights sum to 100); then optional bonuses."""

    scorecard: Scorecard | None = None
    feature: FeatureName | None = None
    ladder: Ladder | None = None
    blend: list[BlendPart] | None = None
    bonus: list[Bonus] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_kind(self) -> Score:
        _exactly_one(self, ("scorecard", "feature", "ladder", "blend"))
        if self.blend is not None and not self.blend:
            raise ValueError("'blend' needs at least one part")
        return self


# --------------------------------------------------------------------------------------------- tiers


class Bands(_Model):
    """Map a number to tiers. ``of`` is ``score`` (the policy score) or a feature name. Bands are listed
    highest tier first, with descending, non-overlapping intervals; no match gives ``default`` (else the
    policy's lowest tier)."""

    of: FeatureName = "score"
    bands: Annotated[list[TierStep], Field(min_length=1)]
    default: Name | None = None


class PercentileBand(_Model):
    """Tier for customers whose score ranks within the top ``top_percent`` of the population."""

    tier: Name
    top_percent: Percent


class Percentile(_Model):
    """Tier by rank of the policy score in the whole population (needs a population view)."""

    bands: Annotated[list[PercentileBand], Field(min_length=1)]
    default: Name | None = None
    # Fixed histogram layout used to merge the distribution across partitions (see ScoreHistogram).
    histogram_low: float = 0.0
    histogram_high: float = 100.0
    histogram_bins: Annotated[int, Field(ge=10, le=100_000)] = 1000


class Rule(_Model):
    """One rung of a rule ladder: ``tier`` when ``when`` holds; the last rule has no ``when`` (the default)."""

    tier: Name
    when: Condition | None = None
    name: str | None = None


class Grant(_Model):
    """Immediate grant from a feature/attribute: numeric ``steps`` or exact ``values`` -> tier; no match
    grants nothing (the source is skipped in ``max``/``min``)."""

    feature: FeatureName
    steps: list[TierStep] | None = None
    values: dict[str, Name] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Grant:
        _exactly_one(self, ("steps", "values"))
        return self


class TierSource(_Model):
    """Where a tier comes from: exactly one of ``bands``, ``percentile``, ``rules``, ``grant``, ``fixed``,
    ``max`` / ``min`` (of several sources; sources that grant nothing are skipped)."""

    name: str | None = None
    bands: Bands | None = None
    percentile: Percentile | None = None
    rules: list[Rule] | None = None
    grant: Grant | None = None
    fixed: Name | None = None
    max: list[TierSource] | None = None
    min: list[TierSource] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> TierSource:
        _exactly_one(self, ("bands", "percentile", "rules", "grant", "fixed", "max", "min"))
        for group in (self.rules, self.max, self.min):
            if group is not None and not group:
                raise ValueError("'rules'/'max'/'min' need at least one entry")
        return self


class Quota(_Model):
    """At most ``top_percent`` of the population (at least ``min_count``) may hold ``tier``: a customer keeps
    it only if their score ranks within that many; others drop one tier. Rank-based, so it needs no
    knowledge of who currently holds the tier and converges as scores settle."""

    tier: Name
    top_percent: Percent
    min_count: Annotated[int, Field(ge=0)] = 1


class Adjustment(_Model):
    """A post-processing step, applied in order: ``force`` a tier, cap the tier ``at_most``, raise it
    ``at_least``, step it ``down`` n tiers (each when ``when`` holds), or apply a population ``quota``."""

    force: Name | None = None
    at_most: Name | None = None
    at_least: Name | None = None
    down: Annotated[int, Field(ge=1)] | None = None
    quota: Quota | None = None
    when: Condition | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Adjustment:
        _exactly_one(self, ("force", "at_most", "at_least", "down", "quota"))
        if self.quota is None and self.when is None:
            raise ValueError("this adjustment needs 'when'")
        if self.quota is not None and self.when is not None:
            raise ValueError("'quota' takes no 'when'")
        return self


class Entitlements(_Model):
    """Entitlement count (e.g. group VIP cards) from a number: ``of`` is ``score`` or a feature; no step -> 0."""

    of: FeatureName = "score"
    steps: Annotated[list[CountStep], Field(min_length=1)]
    name: str = "cards"


class Routing(_Model):
    """Support routing for one tier; omitted fields get defaults derived from the tier's rank."""

    queue: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    priority: Annotated[int, Field(ge=0)] | None = None
    response_time_target_seconds: Annotated[int, Field(gt=0)] | None = None
    follow_up_days: Annotated[int, Field(gt=0)] | None = None


class TierSpec(_Model):
    """A tier: its name, an optional label and routing."""

    name: Name
    label: str | None = None
    routing: Routing | None = None


# --------------------------------------------------------------------------------------------- lifecycle

UpgradeMode = Literal["immediate", "at_review"]
DowngradeMode = Literal["immediate", "after_grace", "at_review", "one_step"]


class Downgrade(_Model):
    """When a lower scored tier takes effect. ``immediate`` (at once), ``after_grace`` (after the customer
    scored below the held tier continuously for ``grace_days``), ``at_review`` (only at the policy's review
    dates), ``one_step`` (at review dates, at most one tier down per review). ``min_days_in_tier`` delays any
    downgrade until the customer has held the tier that long (upgrades are never delayed by it)."""

    mode: DowngradeMode = "immediate"
    grace_days: Annotated[int, Field(ge=1, le=3660)] | None = None
    min_days_in_tier: Annotated[int, Field(ge=0, le=3660)] = 0

    @model_validator(mode="after")
    def _grace(self) -> Downgrade:
        if self.mode == "after_grace" and self.grace_days is None:
            raise ValueError("mode 'after_grace' needs 'grace_days'")
        if self.mode != "after_grace" and self.grace_days is not None:
            raise ValueError(f"'grace_days' only applies to mode 'after_grace' (mode is {self.mode!r})")
        return self


class Hysteresis(_Model):
    """Separate entry and exit thresholds for a ``bands`` policy: a customer *enters* a tier at its band's
    lower bound and *keeps* it until the banded number falls below that bound minus the exit margin.
    ``margin`` applies to every banded tier; ``tiers`` gives per-tier margins that replace it (0 = no band
    for that tier). Margins are in the units of the banded number (score points, or money for a money band)."""

    margin: Annotated[Number, Field(ge=0)] = Decimal(0)
    tiers: dict[Name, Annotated[Number, Field(ge=0)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _some(self) -> Hysteresis:
        if self.margin == 0 and not any(self.tiers.values()):
            raise ValueError("give a positive 'margin' (or per-tier margins in 'tiers')")
        return self


class ApprovalRule(_Model):
    """Transitions that need a human approval: from one of ``from`` (tier names, or ``any``) to ``to`` (tier
    names, ``down``, ``up`` or ``any``). A matching transition becomes a proposal that takes effect only when
    approved; it expires ``expires_after_days`` after it was proposed."""

    from_: list[Name] | Literal["any"] = Field(default="any", alias="from")
    to: list[Name] | Literal["down", "up", "any"] = "any"
    expires_after_days: Annotated[int, Field(ge=1, le=366)]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _keyword(cls, value: Any, info: ValidationInfo) -> Any:
        # Without this, a misspelt keyword is reported as "Input should be a valid list" (the union's first arm).
        words = ("any",) if info.field_name == "from_" else ("down", "up", "any")
        if isinstance(value, str) and value not in words:
            shown = ", ".join(repr(w) for w in words)
            raise ValueError(f"a list of tiers or one of {shown} (got {value!r})")
        return value

    @model_validator(mode="after")
    def _nonempty(self) -> ApprovalRule:
        if isinstance(self.from_, list) and not self.from_:
            raise ValueError("'from' needs at least one tier (or 'any')")
        if isinstance(self.to, list) and not self.to:
            raise ValueError("'to' needs at least one tier (or 'down', 'up', 'any')")
        return self


class Lifecycle(_Model):
    """How scored tiers become held tiers over time (see :mod:`scoring.lifecycle`). Omitted: upgrades and
    downgrades take effect at once, no bands, no approvals (the behaviour without a ``lifecycle`` section).
    ``at_review`` modes use the policy's ``review`` period; review dates are calendar-aligned UTC midnights
    (monthly: the 1st of every month; quarterly: Jan/Apr/Jul/Oct 1; half_yearly: Jan/Jul 1; yearly: Jan 1).
    ``at_risk_days``: warn that many days before a scheduled downgrade takes effect."""

    upgrade: UpgradeMode = "immediate"
    downgrade: Downgrade = Field(default_factory=Downgrade)
    hysteresis: Hysteresis | None = None
    at_risk_days: Annotated[int, Field(ge=1, le=366)] | None = None
    approvals: list[ApprovalRule] = Field(default_factory=list)


class Policy(_Model):
    """A whole policy file. ``tiers`` are listed highest first (plain names or objects)."""

    id: Name
    version: Annotated[int, Field(ge=1)]
    description: str | None = None
    review: Review | None = None
    tiers: Annotated[list[Name | TierSpec], Field(min_length=1)]
    score: Score | None = None
    tier: TierSource
    adjust: list[Adjustment] = Field(default_factory=list)
    entitlements: Entitlements | None = None
    lifecycle: Lifecycle | None = None


def policy_from_data(data: Any) -> Policy:
    """Validate already-parsed YAML data; raises :class:`pydantic.ValidationError`."""
    return Policy.model_validate(data)


Condition.model_rebuild()
BlendPart.model_rebuild()
TierSource.model_rebuild()
