"""Compile-time context shared by the compilers: the file name, the tier order, the feature catalogue
lookups (recording which features a policy uses) and the scorecard names conditions may refer to."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NoReturn

from scoring.policy.catalogue import FeatureInfo, lookup, unknown_reason
from scoring.policy.errors import PolicyError


@dataclass(slots=True)
class CompileContext:
    """Mutable state while compiling one policy file; never used at evaluation time."""

    file: str
    tiers: tuple[str, ...]
    policy_id: str = ""
    score_kind: str = "float"  # "money" when the score is a money feature: band thresholds become Decimal
    features: dict[str, FeatureInfo] = field(default_factory=dict)
    dimensions: set[str] = field(default_factory=set)
    indicators: set[str] = field(default_factory=set)
    has_score: bool = False
    # Non-empty once a condition refers to scorecard points or dimensions: the scorecard then publishes them.
    score_refs: list[str] = field(default_factory=list)
    needs_population: bool = False

    def fail(self, path: str, reason: str) -> NoReturn:
        """Refuse the file at ``path``."""
        raise PolicyError(self.file, path, reason)

    def feature(self, path: str, name: str) -> FeatureInfo:
        """Look ``name`` up in the catalogue (refusing unknown names) and record it as used."""
        info = lookup(name)
        if info is None:
            self.fail(path, unknown_reason(name))
        self.features[name] = info
        return info

    def tier_index(self, path: str, name: str) -> int:
        """Index of tier ``name`` (0 = highest); refuses tiers the policy does not declare."""
        try:
            return self.tiers.index(name)
        except ValueError:
            self.fail(path, f"unknown tier {name!r}; the policy's tiers are {', '.join(self.tiers)}")


def to_number(kind: str, value: Decimal | float | int) -> Decimal | float:
    """Convert a threshold for comparison with a feature of ``kind``: Decimal for money (exact), float else."""
    if kind == "money":
        return value if isinstance(value, Decimal) else Decimal(str(value))
    return float(value)


def jsonable(value: Any) -> Any:
    """A JSON-safe rendering of a feature value for explanations (Decimal -> float, datetime -> ISO)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return float(value)
    iso = getattr(value, "isoformat", None)
    return iso() if iso is not None else str(value)
