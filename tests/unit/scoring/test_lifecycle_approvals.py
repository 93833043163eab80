"""Approvals: sensitive transitions become proposals; approve, reject, expire, withdraw; bad commands."""

from __future__ import annotations

from test_lifecycle_helpers import Driver, d, make_policy

LEAVING_GOLD = "approvals: [{from: [gold], to: any, expires_after_days: 10}]"


def proposed(drv: Driver) -> Driver:
    drv.event("2024-01-01", 85)
    r = drv.event("2024-01-05", 60)
    (p,) = r.proposed
    assert (p.from_tier, p.to_tier, p.direction, p.cause, p.event_id, p.rule) == (
        "gold", "silver", "down", "event", "e2", 0)
    assert (p.proposed_at, p.expires_at, p.scored_tier, p.score) == (d("2024-01-05"), d("2024-01-15"), "silver", 60)
    assert r.changes == () and r.tier == "gold"  # nothing takes effect before approval
    assert drv.due() == d("2024-01-15")
    return drv


def test_approve_applies_the_change_with_cause_approval() -> None:
    drv = proposed(Driver(make_policy(LEAVING_GOLD)))
    pid = drv.track.proposal.id
    r = drv.command("approve", "2024-01-07", proposal_id=pid)
    assert r.command is not None and r.command.accepted and r.command.command == "approve_proposal"
    (c,) = r.changes
    assert (c.from_tier, c.to_tier, c.cause, c.sequence, c.effective_at, c.event_id) == (
        "gold", "silver", "approval", 2, d("2024-01-07"), "e2")
    assert c.note["proposal_id"] == pid and c.note["actor"] == "alice"
    (closed,) = r.closed
    assert (closed.outcome, closed.actor, closed.proposal_id, closed.command_id) == ("approved", "alice", pid, "cmd3")
    assert drv.track.proposal is None and drv.track.pending is None and drv.due() is None


def test_reject_keeps_the_tier_and_is_recorded() -> None:
    drv = proposed(Driver(make_policy(LEAVING_GOLD)))
    pid = drv.track.proposal.id
    r = drv.command("reject", "2024-01-06", proposal_id=pid, reason="key account, temporary dip")
    assert r.command.accepted and r.changes == ()
    (closed,) = r.closed
    assert (closed.outcome, closed.reason) == ("rejected", "key account, temporary dip")
    # the same destination is not proposed again while the score stays there ...
    assert drv.event("2024-01-08", 62).proposed == ()
    assert drv.track.tier == "gold" and drv.due() is None
    # ... but a different one is
    (p,) = drv.event("2024-01-09", 20).proposed
    assert (p.from_tier, p.to_tier) == ("gold", "bronze")
    # and approving the rejected proposal is refused
    r = drv.command("approve", "2024-01-10", proposal_id=pid)
    assert not r.command.accepted and "no open proposal" in r.command.reason


def test_expired_proposal_is_recorded_and_cannot_be_approved() -> None:
    drv = proposed(Driver(make_policy(LEAVING_GOLD)))
    pid = drv.track.proposal.id
    r = drv.time("2024-01-15", 60)
    (closed,) = r.closed
    assert (closed.outcome, closed.at, closed.actor) == ("expired", d("2024-01-15"), None)
    assert r.tier == "gold" and r.changes == ()
    r = drv.command("approve", "2024-01-16", proposal_id=pid)
    assert not r.command.accepted and "expired" in r.command.reason


def test_a_late_approval_finds_the_proposal_expired_first() -> None:
    drv = proposed(Driver(make_policy(LEAVING_GOLD)))
    pid = drv.track.proposal.id
    r = drv.command("approve", "2024-02-01", proposal_id=pid)  # no timer fired in between
    assert not r.command.accepted
    assert [c.outcome for c in r.closed] == ["expired"] and r.tier == "gold"


def test_recovery_withdraws_the_proposal() -> None:
    drv = proposed(Driver(make_policy(LEAVING_GOLD)))
    r = drv.event("2024-01-06", 90)
    (closed,) = r.closed
    assert closed.outcome == "withdrawn" and drv.track.proposal is None and drv.due() is None


def test_a_different_destination_replaces_the_proposal() -> None:
    drv = proposed(Driver(make_policy(LEAVING_GOLD)))
    r = drv.event("2024-01-06", 20)
    assert [c.outcome for c in r.closed] == ["withdrawn"]
    assert [(p.from_tier, p.to_tier) for p in r.proposed] == [("gold", "bronze")]


def test_only_matching_transitions_need_approval() -> None:
    drv = Driver(make_policy("approvals: [{from: [gold], to: down, expires_after_days: 10}]"))
    drv.event("2024-01-01", 60)
    assert drv.event("2024-01-02", 20).changes[0].to_tier == "bronze"  # from silver: no approval
    assert drv.event("2024-01-03", 90).changes[0].to_tier == "gold"  # upgrades: no approval
    assert drv.event("2024-01-04", 20).proposed  # leaving gold downwards: approval


def test_upgrades_can_need_approval_too() -> None:
    drv = Driver(make_policy("approvals: [{from: any, to: [gold], expires_after_days: 3}]"))
    drv.event("2024-01-01", 60)
    (p,) = drv.event("2024-01-02", 90).proposed
    assert (p.to_tier, p.direction) == ("gold", "up")


def test_one_step_review_proposes_one_tier_and_continues_after_approval() -> None:
    drv = Driver(make_policy("downgrade: {mode: one_step}\n"
                             "approvals: [{from: [gold], to: down, expires_after_days: 30}]"))
    drv.event("2024-02-01", 85)
    drv.event("2024-02-10", 20)
    (p,) = drv.time("2024-04-01", 20).proposed
    assert (p.from_tier, p.to_tier, p.cause) == ("gold", "silver", "review")
    r = drv.command("approve", "2024-04-03", proposal_id=p.proposal_id)
    assert [(c.to_tier, c.cause) for c in r.changes] == [("silver", "approval")]
    assert drv.due() == d("2024-07-01")  # silver -> bronze needs no approval, at the next review
    assert drv.time("2024-07-01", 20).changes[0].to_tier == "bronze"


def test_approving_the_wrong_proposal_is_refused_with_a_reason() -> None:
    drv = proposed(Driver(make_policy(LEAVING_GOLD)))
    r = drv.command("approve", "2024-01-06", proposal_id="p-nope")
    assert not r.command.accepted
    assert r.command.reason.startswith("no open proposal 'p-nope' (the open proposal is 'p-")
    assert r.track.proposal is not None  # still open


def test_a_redelivered_command_applies_once() -> None:
    drv = proposed(Driver(make_policy(LEAVING_GOLD)))
    from schemas.admin import ApproveProposal
    from scoring.lifecycle import apply_command

    cmd = ApproveProposal(command_id="x1", customer_id="c1", policy="demo", proposal_id=drv.track.proposal.id,
                          actor="bob", reason="ok")
    first = apply_command(drv.track, drv.policy, cmd, d("2024-01-06"))
    again = apply_command(first.track, drv.policy, cmd, d("2024-01-06"))
    assert len(first.changes) == 1 and again.changes == ()
    assert again.command.accepted and again.command.reason.startswith("duplicate")
    assert again.track is first.track
