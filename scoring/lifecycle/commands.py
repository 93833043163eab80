"""Admin commands (:mod:`schemas.admin`): overrides and approvals, validated, applied, audited.

:func:`apply_command` is pure like the rest of the engine. Every call returns a
:class:`schemas.admin.CommandResult` (``StepResult.command``): accepted, or refused with a reason; a
refused command changes nothing but the passing of time (expiries due by ``at`` still happen). A command
id seen before (among the track's last accepted ids) is accepted again without effect, so at-least-once
delivery applies it once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas.admin import (
    AdminCommand,
    ApproveProposal,
    CommandResult,
    RejectProposal,
    RemoveOverride,
    SetOverride,
)
from scoring.lifecycle.machine import Run
from scoring.lifecycle.results import StepResult
from scoring.lifecycle.track import Override, TierTrack
from scoring.policy import CompiledPolicy

Command = SetOverride | RemoveOverride | ApproveProposal | RejectProposal


def apply_command(track: TierTrack, policy: CompiledPolicy, command: AdminCommand, at: datetime) -> StepResult:
    """Apply one admin ``command`` to ``track`` at ``at`` (the command's time: its record timestamp on the
    admin topic, or the API's receive time; timezone-aware).

    Refused (``accepted=False``) with a reason: a command for another policy or customer; an unknown tier;
    an override expiring at or before ``at``; removing an override when there is none; approving or
    rejecting a proposal that is not the open one (unknown, already decided, expired or withdrawn).
    Accepted overrides take effect at once (cause ``override``); an approval applies the proposed change at
    once (cause ``approval``, with the approving actor and proposal id in the explanation).
    """
    run = Run(track, policy, at, "override", None)

    def done(accepted: bool, reason: str) -> StepResult:
        result = CommandResult(
            command_id=command.command_id, accepted=accepted, reason=reason, command=command.type,
            customer_id=command.customer_id, policy=command.policy, actor=command.actor, at=run.at,
        )
        if accepted:
            run.remember(command.command_id)
        return run.result(result)

    if command.policy != policy.id:
        return _untouched(track, command, run.at, f"command for policy {command.policy!r} given to {policy.id!r}")
    if command.customer_id != track.customer_id:
        return _untouched(track, command, run.at,
                          f"command for customer {command.customer_id!r} given to {track.customer_id!r}")
    if command.command_id in track.commands:
        return StepResult(track, command=CommandResult(
            command_id=command.command_id, accepted=True, reason="duplicate: already applied",
            command=command.type, customer_id=command.customer_id, policy=command.policy, actor=command.actor,
            at=run.at,
        ))
    run.reconcile()
    run.advance(run.at, inclusive=True)
    if isinstance(command, SetOverride):
        return done(*_set_override(run, command))
    if isinstance(command, RemoveOverride):
        o = run.t.override
        if o is None:
            return done(False, "no active override to remove")
        run.t.override = None
        run.refresh(run.at, "override", None, {"override_removed": o.view().model_dump(mode="json"),
                                               "actor": command.actor, "reason": command.reason})
        return done(True, f"removed the {o.kind} override at {o.tier!r}")
    return done(*_decide_proposal(run, command))


def _untouched(track: TierTrack, command: Command, at: datetime, reason: str) -> StepResult:
    return StepResult(track, command=CommandResult(
        command_id=command.command_id, accepted=False, reason=reason, command=command.type,
        customer_id=command.customer_id, policy=command.policy, actor=command.actor, at=at,
    ))


def _set_override(run: Run, command: SetOverride) -> tuple[bool, str]:
    if command.tier not in run.tiers:
        return False, f"unknown tier {command.tier!r}; the policy's tiers are {', '.join(run.tiers)}"
    expires = command.expires_at
    if expires is not None and expires <= run.at:
        return False, f"expires_at {expires.isoformat()} is not after the command time {run.at.isoformat()}"
    replaced = run.t.override
    run.t.override = Override(command.kind, command.tier, command.actor, command.reason, run.at,
                              None if expires is None else expires.astimezone(run.at.tzinfo), command.command_id)
    note: dict[str, Any] = {"actor": command.actor, "reason": command.reason}
    if replaced is not None:
        note["override_replaced"] = replaced.view().model_dump(mode="json")
    run.refresh(run.at, "override", None, note)
    until = "" if expires is None else f" until {expires.isoformat()}"
    return True, f"{command.kind} at {command.tier!r}{until}; effective tier {run.t.tier!r}"


def _decide_proposal(run: Run, command: ApproveProposal | RejectProposal) -> tuple[bool, str]:
    pr = run.t.proposal
    if pr is None or pr.id != command.proposal_id:
        now_open = "" if pr is None else f" (the open proposal is {pr.id!r})"
        return False, (f"no open proposal {command.proposal_id!r}{now_open}: it is unknown, already decided, "
                       f"expired or withdrawn")
    if isinstance(command, RejectProposal):
        run.close("rejected", run.at, command.actor, command.reason, command.command_id)
        run.block(pr.to_tier)
        return True, f"rejected {pr.from_tier!r} -> {pr.to_tier!r}; the customer keeps {pr.from_tier!r}"
    run.close("approved", run.at, command.actor, command.reason, command.command_id)
    run.set_held(pr.to_tier, run.at, "approval", pr.event_id,
                 {"proposal_id": pr.id, "actor": command.actor, "reason": command.reason,
                  "proposed_at": pr.created.isoformat()})
    return True, f"approved {pr.from_tier!r} -> {pr.to_tier!r}"
