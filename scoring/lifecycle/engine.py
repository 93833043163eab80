"""Decisions and the passing of time: :func:`step`, :func:`on_time`, :func:`due_at`.

All three are pure: the track passed in is never modified (a new one is returned), nothing reads the
clock, and the same inputs give the same outputs (ids included). ``at`` must be timezone-aware; a time
before the track's last processed time is treated as that time (the clock never runs backwards).
"""

from __future__ import annotations

from datetime import datetime

from scoring.lifecycle.machine import Run, next_due
from scoring.lifecycle.results import StepResult
from scoring.lifecycle.reviews import is_review
from scoring.lifecycle.track import TierTrack
from scoring.policy import CompiledPolicy, Decision


def step(
    track: TierTrack,
    policy: CompiledPolicy,
    decision: Decision | None,
    at: datetime,
    cause: str = "event",
    event_id: str | None = None,
) -> StepResult:
    """Apply ``decision`` (the policy's verdict at event time ``at``) to ``track``.

    Order: (1) everything scheduled strictly before ``at`` happens at its own time (override and proposal
    expiries, at-risk warnings, grace ends, review dates), with the target known before ``at``; (2) the
    decision updates the target and the pending change (hysteresis, recovery, new schedule); (3) anything
    due at ``at`` itself happens now. A first decision (no held tier yet) assigns its tier at once.

    ``cause`` (``event``, ``correction``, ``policy_change``, ``decay``, ``review``) and ``event_id`` label
    changes that take effect *because of* this decision; changes that were waiting for a date are labelled
    ``review`` (review dates) or ``decay`` (grace ends, minimum time in tier). ``decision`` None only lets
    time pass up to ``at``.

    Returns the new track, the effective tier changes (``sequence`` +1 each), proposals opened or closed and
    at-risk warnings, in the order they happened.
    """
    return _step(Run(track, policy, at, cause, event_id), policy, decision)


def step_owned(
    track: TierTrack,
    policy: CompiledPolicy,
    decision: Decision | None,
    at: datetime,
    cause: str = "event",
    event_id: str | None = None,
) -> StepResult:
    """:func:`step` for a caller that hands ``track`` over: it is updated in place and becomes the result's
    track (no copy). Same outputs as ``step`` on a copy of ``track``. The stream decodes a fresh track per
    decision and policy and never uses it again, so the copy ``step`` makes to keep its input intact would
    be wasted work there; everyone else should call ``step``."""
    return _step(Run(track, policy, at, cause, event_id, clone=False), policy, decision)


def _step(run: Run, policy: CompiledPolicy, decision: Decision | None) -> StepResult:
    """The body of :func:`step` on a prepared run (its track is the one to update)."""
    t = run.t
    if (
        decision is not None
        and t.pending is None
        and t.proposal is None
        and t.override is None
        and t.held is not None
        and decision.tier == t.held
        and decision.policy == policy.id
        and t.held in run.tiers
    ):
        # The common case, whatever the lifecycle rules: nothing is scheduled and the decision confirms the
        # held tier. The general path below would find nothing to reconcile, nothing due before or at
        # ``at``, and a decision at the held tier (no hysteresis question: not below it), so all it would do
        # is note the decision; do just that.
        run.note_decision(decision)
        return run.result()
    run.reconcile()
    run.advance(run.at, inclusive=False)
    if decision is not None:
        if decision.policy != policy.id:
            raise ValueError(f"decision of policy {decision.policy!r} given to policy {policy.id!r}")
        if run.t.held is None:
            run.first(decision)
        else:
            run.observe(decision)
    run.advance(run.at, inclusive=True)
    return run.result()


def on_time(track: TierTrack, policy: CompiledPolicy, decision: Decision | None, at: datetime) -> StepResult:
    """Time passed with no event: a timer set from :func:`due_at` fired, or a review date came.

    ``decision`` should be the policy evaluated on the customer's features at ``at`` (windows decay), so a
    review acts on the score of the review date; None keeps the last known target. Changes decided here
    are labelled ``review`` when ``at`` is a review date of the policy, else ``decay``; no event id.
    """
    review = policy.lifecycle.review or policy.review
    cause = "review" if review is not None and is_review(review, at) else "decay"
    return step(track, policy, decision, at, cause=cause, event_id=None)


def due_at(track: TierTrack, policy: CompiledPolicy) -> datetime | None:
    """When time alone next changes something in ``track`` (override or proposal expiry, at-risk warning,
    grace end, minimum time in tier, review date with a change waiting), or None: the stream sets a timer
    there and calls :func:`on_time`. Always after the track's last processed time when not None."""
    item = next_due(track, policy)
    return None if item is None else item[0]
