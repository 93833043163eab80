"""The lifecycle state machine's transitions, shared by :mod:`.engine` (decisions, time) and
:mod:`.commands` (overrides, approvals). Internal: use the functions exported by :mod:`scoring.lifecycle`.

One :class:`Run` is one engine call on a clone of the caller's track: it applies transitions in time order
and collects the outputs. Rules (all times are inputs; nothing reads the clock):

- **Target.** The decision's tier, except that with hysteresis a customer keeps the held tier while the
  banded number stays at or above the held tier's exit threshold (entry - margin) and no adjustment moved
  the decision off its band.
- **Upgrades** take effect at once (``upgrade: immediate``) or at the next review date (``at_review``).
- **Downgrades**: ``immediate`` (at once, but not before ``min_days_in_tier``), ``after_grace`` (once the
  customer has scored below the held tier continuously for ``grace_days``; a decision back at the held tier
  resets the clock), ``at_review`` (at the first review date on or after the decision), ``one_step`` (like
  ``at_review`` but at most one tier down per review date).
- **Approvals.** When a change would take effect and matches an approval rule, it becomes a proposal
  instead; approved -> it takes effect (cause ``approval``); rejected or expired -> recorded, and the same
  destination is not proposed again until the score points elsewhere; withdrawn when the score no longer
  supports it.
- **Overrides** apply on top of the held tier: ``pin`` (exactly), ``floor`` (at least), ``ceiling`` (at
  most). Only changes of the resulting *effective* tier are tier changes (sequence +1 each).
- **At-risk.** With ``at_risk_days``, a scheduled downgrade is announced once, ``at_risk_days`` before it
  (at once when it is scheduled later than that), with the margin to keep the tier.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from schemas.admin import CommandResult, KeepMargin, ProposalClosed, TierAtRisk, TierChangeProposed
from schemas.outputs import direction
from scoring.lifecycle.results import StepResult, TierChange
from scoring.lifecycle.reviews import review_after, review_on_or_after
from scoring.lifecycle.track import COMMANDS_MAX, LEDGER_MAX, Pending, Proposal, TierTrack
from scoring.policy import CompiledPolicy, Decision
from scoring.policy.lifecycle import reaches

#: A change back to the tier held before the previous change, within this time, counts as a flip-flop.
FLIP_FLOP_WINDOW: Final = timedelta(days=30)

# Order of things due at the same instant: an override or proposal that ends at t is gone before a
# scheduled change at t is considered; a warning never comes after the change it warns about.
_ORDER: Final = {"override": 0, "proposal": 1, "warn": 2, "pending": 3}
# More due items than this in one call means a bug (each item removes or postpones itself).
_MAX_ITEMS: Final = 64


def utc(t: datetime) -> datetime:
    """``t`` in UTC; refuses naive datetimes (every lifecycle time is an input and must be unambiguous)."""
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t.isoformat()}: lifecycle times must be timezone-aware")
    return t.astimezone(UTC)


def warn_time(track: TierTrack, policy: CompiledPolicy) -> datetime | None:
    """When the at-risk warning of the track's scheduled downgrade is due, or None (no warning to give)."""
    p = track.pending
    at_risk = policy.lifecycle.at_risk
    if at_risk is None or p is None or p.direction != "down" or p.due is None or p.warned or p.reason == "now":
        return None
    when = max(p.due - at_risk, p.since)
    return when if when < p.due else None


def next_due(track: TierTrack, policy: CompiledPolicy) -> tuple[datetime, str] | None:
    """The earliest thing time alone will do to ``track``: (when, kind), kind in override / proposal /
    warn / pending; None when nothing is scheduled."""
    items: list[tuple[datetime, int, str]] = []
    if track.override is not None and track.override.expires_at is not None:
        items.append((track.override.expires_at, _ORDER["override"], "override"))
    if track.proposal is not None:
        items.append((track.proposal.expires, _ORDER["proposal"], "proposal"))
    warn = warn_time(track, policy)
    if warn is not None:
        items.append((warn, _ORDER["warn"], "warn"))
    if track.pending is not None and track.pending.due is not None:
        items.append((track.pending.due, _ORDER["pending"], "pending"))
    if not items:
        return None
    when, _, kind = min(items)
    return when, kind


def banded_value(policy: CompiledPolicy, decision: Decision) -> float | None:
    """The number a top-level ``bands`` source banded (the score or a feature), when it was a number."""
    if not policy.lifecycle.banded:
        return None
    detail = decision.explanation.get("tier_detail") or {}
    value = detail.get("value") if detail.get("kind") == "bands" else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class Run:
    """One engine call: a cloned track, the policy, the call's time, cause and event, and the outputs."""

    def __init__(
        self, track: TierTrack, policy: CompiledPolicy, at: datetime, cause: str, event_id: str | None,
        clone: bool = True,
    ) -> None:
        # ``clone=False``: the caller hands the track over (it built it for this call alone) and the run
        # works on it directly; otherwise on a copy, so the caller's track is never modified.
        self.t = track.clone() if clone else track
        self.policy = policy
        self.lc = policy.lifecycle
        self.tiers = policy.tiers
        at = utc(at)
        # Never go back in time: the ledger and review bookkeeping assume a monotonic clock per track.
        self.at = at if self.t.at is None or at > self.t.at else self.t.at
        self.cause = cause
        self.event_id = event_id
        self.changes: list[TierChange] = []
        self.proposed: list[TierChangeProposed] = []
        self.closed: list[ProposalClosed] = []
        self.at_risk: list[TierAtRisk] = []
        self.flips = 0

    # ------------------------------------------------------------------ results
    def result(self, command: CommandResult | None = None) -> StepResult:
        """The new track (its ``at`` advanced to this call's time) and every output."""
        self.t.at = self.at
        return StepResult(self.t, tuple(self.changes), tuple(self.proposed), tuple(self.closed),
                          tuple(self.at_risk), command, self.flips)

    def rank(self, tier: str) -> int:
        """Index of ``tier`` in the policy (0 = highest)."""
        return self.tiers.index(tier)

    # ------------------------------------------------------------------ policy changes
    def reconcile(self) -> None:
        """Forget parts of the track that name tiers the (new version of the) policy no longer has; the
        next decision then assigns a tier afresh (cause as given, e.g. ``policy_change``)."""
        known = self.tiers  # a handful of names: tuple membership is cheaper than building a set per call
        t = self.t
        if t.proposal is not None and not (t.proposal.from_tier in known and t.proposal.to_tier in known):
            self.close("withdrawn", self.at, reason="the policy no longer has these tiers")
        if t.held is not None and t.held not in known:
            t.held = t.held_since = None
            t.pending = None
        if t.pending is not None and t.pending.target not in known:
            t.pending = None
        if t.override is not None and t.override.tier not in known:
            t.override = None

    # ------------------------------------------------------------------ time
    def advance(self, until: datetime, inclusive: bool) -> None:
        """Do, in time order, everything due before ``until`` (or at it, when ``inclusive``)."""
        for _ in range(_MAX_ITEMS):
            item = next_due(self.t, self.policy)
            if item is None:
                return
            when, kind = item
            if when > until or (when == until and not inclusive):
                return
            if kind == "override":
                self.expire_override(when)
            elif kind == "proposal":
                self.expire_proposal(when)
            elif kind == "warn":
                self.warn(when)
            else:
                self.fire(when)
        raise RuntimeError("lifecycle: too many due items in one call")  # pragma: no cover

    # ------------------------------------------------------------------ decisions
    def first(self, decision: Decision) -> None:
        """First assignment: the scored tier holds at once (no grace, review or approval applies)."""
        self.note_decision(decision)
        self.t.held = decision.tier
        self.t.held_since = self.at
        self.refresh(self.at, self.cause, self.event_id)

    def note_decision(self, decision: Decision) -> None:
        """Keep what the decision says (scored tier, score, what keeps the held tier) visible in the track."""
        t = self.t
        t.scored = decision.tier
        t.score = decision.score
        value = banded_value(self.policy, decision)
        held = t.held if t.held in self.tiers else decision.tier
        t.keep = None
        threshold = self.lc.keep_threshold(self.rank(held))
        if value is not None and threshold is not None:
            t.keep = (threshold[0], threshold[1], value)
            return
        # Other sources: the decision's outlook names the next tier up and the gap to it; when that is the
        # held tier, it is exactly what the customer must reach to keep (regain) it.
        nxt = decision.explanation.get("next_tier")
        if isinstance(nxt, dict) and nxt.get("tier") == held and isinstance(nxt.get("threshold"), int | float):
            thr = float(nxt["threshold"])
            t.keep = (thr, bool(nxt.get("inclusive", True)), thr - float(nxt.get("gap") or 0.0))

    def target(self, decision: Decision) -> str:
        """The tier the decision asks for, after hysteresis relative to the held tier."""
        held = self.t.held
        assert held is not None
        g, h = self.rank(decision.tier), self.rank(held)
        if g > h and self.lc.hysteresis and decision.explanation.get("base_tier") == decision.tier:
            value = banded_value(self.policy, decision)
            threshold = self.lc.keep_threshold(h)
            if value is not None and threshold is not None and reaches(value, threshold):
                return held
        return decision.tier

    def observe(self, decision: Decision) -> None:
        """Take a new decision at ``self.at``: start, update or drop the pending change and reschedule it."""
        self.note_decision(decision)
        t = self.t
        assert t.held is not None
        target = self.target(decision)
        h, g = self.rank(t.held), self.rank(target)
        if g == h:
            t.pending = None  # recovery: resets a grace clock, cancels a scheduled change
            if t.proposal is not None:
                self.close("withdrawn", self.at, reason=f"the score supports {t.held!r} again")
            return
        side = "up" if g < h else "down"
        p = t.pending
        if p is None or p.direction != side:
            if t.proposal is not None:
                self.close("withdrawn", self.at, reason=f"the score now points {side} to {target!r}")
            p = t.pending = Pending(side, target, self.at)
        else:
            p.target = target
        dest = self.destination(p)
        if t.proposal is not None:
            if t.proposal.to_tier == dest:
                return  # still waiting on the human decision
            self.close("withdrawn", self.at, reason=f"the score now points to {target!r}")
        if p.blocked_to is not None and p.blocked_to != dest:
            p.blocked_to = None
        if p.blocked_to == dest:
            p.due = None
            return
        self.schedule(p, self.at)

    def destination(self, p: Pending) -> str:
        """Where the pending change moves the held tier when it takes effect (one tier for ``one_step``)."""
        assert self.t.held is not None
        if p.direction == "down" and self.lc.downgrade == "one_step":
            return self.tiers[self.rank(self.t.held) + 1]
        return p.target

    def schedule(self, p: Pending, now: datetime) -> None:
        """Set ``p.due`` / ``p.reason`` from the policy's modes; a new due time re-arms the warning."""
        lc, t = self.lc, self.t
        assert t.held_since is not None
        if p.direction == "up":
            if lc.upgrade == "immediate":
                due, reason = now, "now"
            else:
                assert lc.review is not None
                due, reason = review_on_or_after(lc.review, now), "review"
        else:
            earliest = t.held_since + lc.min_in_tier
            if lc.downgrade == "immediate":
                due, reason = (now, "now") if earliest <= now else (earliest, "min_days")
            elif lc.downgrade == "after_grace":
                assert lc.grace is not None
                due, reason = max(p.since + lc.grace, earliest), "grace"
            else:
                assert lc.review is not None
                due = review_on_or_after(lc.review, max(now, earliest))
                if t.last_review is not None and due <= t.last_review:
                    # a review date acts once: one_step moves at most one tier per review
                    due = review_after(lc.review, t.last_review)
                reason = "review"
        if due != p.due:
            p.warned = False
        p.due, p.reason = due, reason

    # ------------------------------------------------------------------ due items
    def fire(self, when: datetime) -> None:
        """The pending change is due at ``when``: apply it, or propose it when it needs approval."""
        t = self.t
        p = t.pending
        assert p is not None and t.held is not None
        review = p.reason == "review"
        if review:
            t.last_review = when
        cause = self.cause if p.reason == "now" else ("review" if review else "decay")
        event_id = self.event_id if p.reason == "now" else None
        dest = self.destination(p)
        rule = self.lc.approval_for(self.rank(t.held), self.rank(dest))
        if rule is not None:
            p.due = None
            self.propose(dest, rule.index, rule.expires_after, when, cause, event_id)
            return
        self.set_held(dest, when, cause, event_id)

    def set_held(self, tier: str, when: datetime, cause: str, event_id: str | None,
                 note: dict[str, Any] | None = None) -> None:
        """Move the held tier; keep a one_step change pending while the score is still further away."""
        t = self.t
        t.held, t.held_since = tier, when
        p = t.pending
        if p is not None:
            if p.target == tier:
                t.pending = None
            else:
                p.blocked_to = None
                p.due = None
                self.schedule(p, when)
        self.refresh(when, cause, event_id, note)

    def propose(self, dest: str, rule: int, expires_after: timedelta, when: datetime, cause: str,
                event_id: str | None) -> None:
        """Open a proposal ``held -> dest``."""
        t = self.t
        assert t.held is not None
        t.proposals += 1
        raw = f"{t.customer_id}\x1f{self.policy.id}\x1f{t.proposals}\x1f{t.held}\x1f{dest}".encode()
        pid = "p-" + hashlib.blake2b(raw, digest_size=10).hexdigest()
        t.proposal = Proposal(pid, t.held, dest, when, when + expires_after, cause, event_id, rule)
        self.proposed.append(TierChangeProposed(
            proposal_id=pid,
            customer_id=t.customer_id,
            policy=self.policy.id,
            policy_version=self.policy.version,
            from_tier=t.held,
            to_tier=dest,
            direction=direction(self.tiers, t.held, dest),
            cause=cause,
            score=t.score,
            scored_tier=t.scored or dest,
            event_id=event_id,
            rule=rule,
            proposed_at=when,
            expires_at=t.proposal.expires,
            override=t.override_view(),
        ))

    def close(self, outcome: str, when: datetime, actor: str | None = None, reason: str | None = None,
              command_id: str | None = None) -> None:
        """End the open proposal with ``outcome`` (approved / rejected / expired / withdrawn)."""
        pr = self.t.proposal
        assert pr is not None
        self.t.proposal = None
        self.closed.append(ProposalClosed(
            proposal_id=pr.id, customer_id=self.t.customer_id, policy=self.policy.id, from_tier=pr.from_tier,
            to_tier=pr.to_tier, outcome=outcome, at=when, actor=actor, reason=reason,
            command_id=command_id,
        ))

    def block(self, tier: str) -> None:
        """After a rejected or expired proposal: do not propose ``tier`` again for this pending change."""
        p = self.t.pending
        if p is not None:
            p.blocked_to = tier
            p.due = None

    def expire_proposal(self, when: datetime) -> None:
        """The open proposal was not decided in time."""
        pr = self.t.proposal
        assert pr is not None
        self.close("expired", when, reason=f"not approved by {pr.expires.isoformat()}")
        self.block(pr.to_tier)

    def expire_override(self, when: datetime) -> None:
        """The override's ``expires_at`` passed: the held tier applies again."""
        o = self.t.override
        assert o is not None
        self.t.override = None
        self.refresh(when, "override", None, {"override_expired": o.view().model_dump(mode="json")})

    def warn(self, when: datetime) -> None:
        """Announce the scheduled downgrade (once per due time), with the margin to keep the tier."""
        t = self.t
        p = t.pending
        assert p is not None and p.due is not None and t.held is not None
        p.warned = True
        dest = self.destination(p)
        keep = None
        if t.keep is not None:
            threshold, inclusive, value = t.keep
            keep = KeepMargin(tier=t.held, threshold=threshold, inclusive=inclusive, value=value,
                              gap=threshold - value)
        self.at_risk.append(TierAtRisk(
            customer_id=t.customer_id,
            policy=self.policy.id,
            policy_version=self.policy.version,
            tier=t.held,
            to_tier=dest,
            scheduled_at=p.due,
            warned_at=when,
            score=t.score,
            keep=keep,
            needs_approval=self.lc.approval_for(self.rank(t.held), self.rank(dest)) is not None,
            override=t.override_view(),
        ))

    # ------------------------------------------------------------------ the effective tier
    def effective(self) -> str | None:
        """The held tier with the override applied."""
        t = self.t
        o = t.override
        if o is None:
            return t.held
        if o.kind == "pin":
            return o.tier
        if t.held is None:
            return o.tier if o.kind == "floor" else None
        pick = min if o.kind == "floor" else max  # by rank: floor keeps the higher tier, ceiling the lower
        return self.tiers[pick(self.rank(t.held), self.rank(o.tier))]

    def refresh(self, when: datetime, cause: str, event_id: str | None, note: dict[str, Any] | None = None) -> None:
        """Emit a tier change when the effective tier differs from the one last announced."""
        t = self.t
        new = self.effective()
        if new is None or new == t.tier:
            return
        old = t.tier
        flip = (
            cause != "override"
            and len(t.ledger) >= 2
            and t.ledger[-2][1] == new
            and when - t.ledger[-1][0] < FLIP_FLOP_WINDOW
        )
        if flip:
            t.flip_flops += 1
            self.flips += 1
        t.seq += 1
        t.tier, t.since = new, when
        t.ledger.append((when, new, t.seq, cause))
        del t.ledger[:-LEDGER_MAX]
        self.changes.append(TierChange(
            customer_id=t.customer_id,
            policy=self.policy.id,
            policy_version=self.policy.version,
            from_tier=old,
            to_tier=new,
            direction=direction(self.tiers, old, new),
            cause=cause,
            sequence=t.seq,
            effective_at=when,
            event_id=event_id,
            score=t.score,
            scored_tier=t.scored,
            held_tier=t.held,
            override=t.override_view(),
            note=dict(note or {}),
        ))

    def remember(self, command_id: str) -> None:
        """Record an accepted command id (bounded) so a re-delivery is applied once."""
        self.t.commands.append(command_id)
        del self.t.commands[:-COMMANDS_MAX]
