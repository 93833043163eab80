"""Batch replay (pure): fold an event file into customer states and tier every customer at ``as_of``.

Same state code and the same horizon rule as the stream (reference = the customer's newest event,
:meth:`scoring.state.CustomerState.horizon_start`), applied in input order, so replaying the file a
stream consumed gives the tiers the stream decided at that event time.

Percentile policies (``needs_population``) rank against the whole population: replay evaluates in two
passes, first every customer without a population (to get scores and provisional tiers), then with a
:class:`scoring.policy.HistogramPopulation` built from those scores.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from schemas.events import AnyEvent
from scoring.features import features_json
from scoring.state import CustomerState

if TYPE_CHECKING:
    from scoring.policy import CompiledPolicy, Decision


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """One customer under one policy at ``as_of``; ``features`` is JSON-safe (Decimal as string)."""

    customer_id: str
    policy: str
    version: int
    tier: str
    score: float | None
    explanation: dict[str, Any]
    features: dict[str, Any]
    entitlements: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the row (field order as declared)."""
        return {
            "customer_id": self.customer_id,
            "policy": self.policy,
            "version": self.version,
            "tier": self.tier,
            "score": self.score,
            "entitlements": self.entitlements,
            "explanation": self.explanation,
            "features": self.features,
        }


@dataclass(slots=True)
class ReplayStats:
    """Counters filled by :func:`replay` when passed: outcome -> events, customers, the ``as_of`` used."""

    outcomes: Counter[str] = field(default_factory=Counter)
    customers: int = 0
    as_of: datetime | None = None


def fold_states(
    events: Iterable[AnyEvent], horizon: timedelta, as_of: datetime | None = None, stats: ReplayStats | None = None
) -> dict[str, CustomerState]:
    """Fold events (input order) into one state per customer; events after ``as_of`` are skipped."""
    states: dict[str, CustomerState] = {}
    outcomes = stats.outcomes if stats is not None else Counter()
    for event in events:
        if as_of is not None and event.occurred_at > as_of:
            outcomes["after_as_of"] += 1
            continue
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState.new(event.customer_id)
        outcomes[str(state.apply(event, state.horizon_start(horizon, event.occurred_at)))] += 1
    return states


def replay(
    events: Iterable[AnyEvent],
    policies: Sequence[CompiledPolicy],
    as_of: datetime | None,
    horizon: timedelta,
    stats: ReplayStats | None = None,
) -> Iterator[ReplayRow]:
    """Tier every customer of ``events`` under every policy at ``as_of``.

    Inputs: validated events in arrival (file) order; compiled policies; ``as_of`` (default: the newest
    ``occurred_at`` in the input; later events are skipped); the lateness horizon. Output: rows sorted by
    (customer_id, policy id). Deterministic. ``stats``, when given, receives outcome counts.
    """
    evs = list(events)
    if as_of is None:
        as_of = max((e.occurred_at for e in evs), default=None)
    states = fold_states(evs, horizon, as_of, stats)
    if stats is not None:
        stats.customers = len(states)
        stats.as_of = as_of
    if as_of is None:
        return
    customers = sorted(states)
    views = {cid: states[cid].features(as_of) for cid in customers}
    ordered = sorted(policies, key=lambda p: p.id)
    decisions: dict[str, dict[str, Decision]] = {}
    for policy in ordered:
        decisions[policy.id] = {cid: policy.evaluate(views[cid]) for cid in customers}
        if policy.needs_population:
            population = _population(policy.id, decisions[policy.id].values())
            decisions[policy.id] = {cid: policy.evaluate(views[cid], population) for cid in customers}
    for cid in customers:
        feats = features_json(views[cid])
        for policy in ordered:
            d = decisions[policy.id][cid]
            yield ReplayRow(cid, d.policy, d.version, d.tier, d.score, d.explanation, feats, d.entitlements)


def _population(policy_id: str, first_pass: Iterable[Decision]) -> Any:
    """A population view of one policy from first-pass scores and tiers."""
    from scoring.policy import HistogramPopulation, ScoreHistogram

    hist = ScoreHistogram()
    tiers: Counter[str] = Counter()
    for d in first_pass:
        if d.score is not None:
            hist.add(d.score)
        tiers[d.tier] += 1
    return HistogramPopulation({policy_id: hist}, {policy_id: dict(tiers)})
