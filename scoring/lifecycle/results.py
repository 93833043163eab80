"""What one engine call returns: the new track and every output it produced, in order.

:class:`TierChange` is an effective tier change; :meth:`TierChange.to_event` turns it into the downstream
:class:`schemas.outputs.TierChangeEvent` once the stream adds the wall-clock ``decided_at`` and the
decision's explanation (the lifecycle adds its own part under ``explanation["lifecycle"]``: the scored and
held tiers, the override and what the change came from).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.admin import CommandResult, OverrideView, ProposalClosed, TierAtRisk, TierChangeProposed
from schemas.outputs import TierChangeEvent, change_id
from scoring.lifecycle.track import TierTrack


@dataclass(slots=True, unsafe_hash=True)
class TierChange:
    """One change of the effective tier. ``sequence`` is the track's ``seq`` after it (per customer and
    policy, +1 per change); ``effective_at`` is event time (a review date, a grace end, a command's time);
    ``override`` is the override active after the change; ``note`` is JSON-safe context (the approving
    actor and proposal, an override that expired, ...)."""

    customer_id: str
    policy: str
    policy_version: int
    from_tier: str | None
    to_tier: str
    direction: str
    cause: str
    sequence: int
    effective_at: datetime
    event_id: str | None
    score: float | None
    scored_tier: str | None
    held_tier: str | None
    override: OverrideView | None = None
    note: dict[str, Any] = field(default_factory=dict)

    # Not frozen, and an explicit __init__: the frozen dataclass's generated __init__ runs interpreted under mypyc
    # (~0.5 µs a construction against ~0.02 µs native; callgrind, session 17). Treated as immutable all the same:
    # nothing assigns its fields after construction (unsafe_hash keeps the frozen dataclass's field hash).
    def __init__(
        self, customer_id: str, policy: str, policy_version: int, from_tier: str | None, to_tier: str, direction: str,
        cause: str, sequence: int, effective_at: datetime, event_id: str | None, score: float | None,
        scored_tier: str | None, held_tier: str | None, override: OverrideView | None = None,
        note: dict[str, Any] | None = None,
    ) -> None:
        self.customer_id = customer_id
        self.policy = policy
        self.policy_version = policy_version
        self.from_tier = from_tier
        self.to_tier = to_tier
        self.direction = direction
        self.cause = cause
        self.sequence = sequence
        self.effective_at = effective_at
        self.event_id = event_id
        self.score = score
        self.scored_tier = scored_tier
        self.held_tier = held_tier
        self.override = override
        self.note = {} if note is None else note

    # Pickle and copy by construction: a mypyc class with its own __init__ cannot be created empty, which is how
    # the default protocol copies (TypeError in the compiled build only; tests/unit/scoring/test_pickling.py).
    def __reduce__(self) -> tuple[type[TierChange], tuple[Any, ...]]:
        return (TierChange, (
            self.customer_id, self.policy, self.policy_version, self.from_tier, self.to_tier, self.direction,
            self.cause, self.sequence, self.effective_at, self.event_id, self.score, self.scored_tier, self.held_tier,
            self.override, self.note,
        ))

    @property
    def change_id(self) -> str:
        """The deterministic id (:func:`schemas.outputs.change_id`)."""
        return change_id(self.customer_id, self.policy, self.policy_version, self.sequence, self.to_tier)

    def lifecycle_explanation(self) -> dict[str, Any]:
        """The lifecycle's part of the explanation (JSON-safe)."""
        return {
            "scored_tier": self.scored_tier,
            "held_tier": self.held_tier,
            "override": None if self.override is None else self.override.model_dump(mode="json"),
            **self.note,
        }

    def to_event(self, decided_at: datetime, explanation: dict[str, Any] | None = None) -> TierChangeEvent:
        """The downstream event; ``explanation`` is the decision's (``Decision.explanation``), if any."""
        return TierChangeEvent(
            change_id=self.change_id,
            customer_id=self.customer_id,
            policy=self.policy,
            policy_version=self.policy_version,
            from_tier=self.from_tier,
            to_tier=self.to_tier,
            direction=self.direction,
            cause=self.cause,
            score=self.score,
            sequence=self.sequence,
            event_id=self.event_id,
            effective_at=self.effective_at,
            decided_at=decided_at,
            explanation={**(explanation or {}), "lifecycle": self.lifecycle_explanation()},
        )


@dataclass(slots=True, unsafe_hash=True)
class StepResult:
    """The new track and the outputs of one call, each list in the order things happened.

    ``flip_flops`` is how many of ``changes`` returned to the tier held just before (within
    :data:`scoring.lifecycle.machine.FLIP_FLOP_WINDOW`): the stream adds it to a counter metric.
    ``command`` is the audit record when the call was :func:`scoring.lifecycle.apply_command`."""

    track: TierTrack
    changes: tuple[TierChange, ...] = ()
    proposed: tuple[TierChangeProposed, ...] = ()
    closed: tuple[ProposalClosed, ...] = ()
    at_risk: tuple[TierAtRisk, ...] = ()
    command: CommandResult | None = None
    flip_flops: int = 0

    # Not frozen, and an explicit __init__: the frozen dataclass's generated __init__ runs interpreted under mypyc
    # (~0.5 µs a construction against ~0.02 µs native; callgrind, session 17). Treated as immutable all the same:
    # nothing assigns its fields after construction (unsafe_hash keeps the frozen dataclass's field hash).
    def __init__(
        self, track: TierTrack, changes: tuple[TierChange, ...] = (), proposed: tuple[TierChangeProposed, ...] = (),
        closed: tuple[ProposalClosed, ...] = (), at_risk: tuple[TierAtRisk, ...] = (),
        command: CommandResult | None = None, flip_flops: int = 0,
    ) -> None:
        self.track = track
        self.changes = changes
        self.proposed = proposed
        self.closed = closed
        self.at_risk = at_risk
        self.command = command
        self.flip_flops = flip_flops

    def __reduce__(self) -> tuple[type[StepResult], tuple[Any, ...]]:
        return (StepResult, (
            self.track, self.changes, self.proposed, self.closed, self.at_risk, self.command, self.flip_flops,
        ))

    @property
    def tier(self) -> str | None:
        """The effective tier (override applied)."""
        return self.track.tier

    @property
    def held_tier(self) -> str | None:
        """The lifecycle's tier before any override."""
        return self.track.held

    @property
    def scored_tier(self) -> str | None:
        """The last decision's tier (what the score says now)."""
        return self.track.scored
