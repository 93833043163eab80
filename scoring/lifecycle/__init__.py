"""The tier lifecycle (pure, deterministic, no I/O): how scored tiers become the tiers customers hold.

The policy engine (:mod:`scoring.policy`) says what a customer *scores*; this package decides what they
*hold* over time, from the policy's ``lifecycle:`` section (:class:`schemas.policy.Lifecycle`): upgrade and
downgrade modes (immediate, after a grace period, at review dates, one step per review), minimum time in a
tier, hysteresis bands, at-risk warnings, approvals of sensitive transitions, and manual overrides.

Public API (every time is an input; tracks are never modified in place)::

    TierTrack(customer_id)                        # per customer and policy; to_dict() / from_dict()
    step(track, policy, decision, at, cause="event", event_id=None) -> StepResult   # a new decision
    step_owned(...)                               # the same, updating a track the caller hands over
    on_time(track, policy, decision | None, at) -> StepResult    # a timer / review date, no event
    due_at(track, policy) -> datetime | None      # when to call on_time next (None: no timer needed)
    apply_command(track, policy, command, at) -> StepResult      # SetOverride / RemoveOverride /
                                                  # ApproveProposal / RejectProposal; result.command audits
    tier_as_of(track.ledger, t) -> str | None     # the effective tier at time t
    review_on_or_after(period, t) / review_after / is_review     # the review calendar (UTC)

``StepResult``: ``track``, ``changes`` (:class:`TierChange`, one per effective tier change;
``.to_event(decided_at, explanation)`` gives the downstream TierChangeEvent), ``proposed``, ``closed``,
``at_risk``, ``command``, ``flip_flops``; ``tier`` (effective), ``held_tier``, ``scored_tier``.

Modules: ``reviews`` (calendar), ``track`` (state, ledger), ``results`` (outputs), ``machine`` (the
transitions), ``engine`` (decisions and time), ``commands`` (admin commands).
"""

from scoring.accel import extend_path

__path__ = extend_path(__path__, __name__)  # the compiled build of this package's hot modules first (make native)

from scoring.lifecycle.commands import apply_command
from scoring.lifecycle.engine import due_at, on_time, step, step_owned
from scoring.lifecycle.machine import FLIP_FLOP_WINDOW
from scoring.lifecycle.results import StepResult, TierChange
from scoring.lifecycle.reviews import is_review, review_after, review_floor, review_on_or_after
from scoring.lifecycle.track import (
    COMMANDS_MAX,
    LEDGER_MAX,
    LedgerEntry,
    Override,
    Pending,
    Proposal,
    TierTrack,
    tier_as_of,
)

__all__ = [
    "COMMANDS_MAX",
    "FLIP_FLOP_WINDOW",
    "LEDGER_MAX",
    "LedgerEntry",
    "Override",
    "Pending",
    "Proposal",
    "StepResult",
    "TierChange",
    "TierTrack",
    "apply_command",
    "due_at",
    "is_review",
    "on_time",
    "review_after",
    "review_floor",
    "review_on_or_after",
    "step",
    "step_owned",
    "tier_as_of",
]
