"""Admin contract: commands that change a customer's tier lifecycle by hand, and what the engine says back.

Commands (topic ``<prefix>admin-commands``, key = ``customer_id``; also accepted by the HTTP API) are a
discriminated union on ``type``: :class:`SetOverride`, :class:`RemoveOverride`, :class:`ApproveProposal`,
:class:`RejectProposal`. They are strict (unknown keys, wrong types and naive datetimes are refused) and
carry who (``actor``) and why (``reason``). Every command gets exactly one :class:`CommandResult`, the audit
record: accepted or refused, with the reason.

Outputs of the lifecycle engine besides tier changes (:class:`schemas.outputs.TierChangeEvent`):
:class:`TierChangeProposed` (a change that waits for approval), :class:`ProposalClosed` (approved,
rejected, expired or withdrawn), :class:`TierAtRisk` (a downgrade is scheduled; the margin to keep the tier).

Invariants: an override's ``kind`` is always explicit (``pin`` / ``floor`` / ``ceiling``, never implied);
datetimes are timezone-aware; every model is frozen and forbids unknown keys.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from schemas.outputs import Cause, Direction

ADMIN_SCHEMA_VERSION = 1

OverrideKind = Literal["pin", "floor", "ceiling"]
ProposalOutcome = Literal["approved", "rejected", "expired", "withdrawn"]
Id = Annotated[str, Field(min_length=1, max_length=128)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    command_id: Id = Field(description="Unique id of this command; a repeated id is applied once.")
    customer_id: Id
    policy: Id
    actor: Id = Field(description="Who gives the command (user id); recorded in the audit and the outputs.")
    reason: Text = Field(description="Why; recorded in the audit and the outputs.")


class SetOverride(_Command):
    """Set (or replace) the customer's override under one policy, effective at once.

    ``pin``: the effective tier is ``tier`` whatever the score. ``floor``: at least ``tier``. ``ceiling``: at
    most ``tier``. Scores keep being computed underneath. ``expires_at`` (optional) removes it by itself."""

    type: Literal["set_override"] = "set_override"
    kind: OverrideKind = Field(description="pin, floor or ceiling: always explicit.")
    tier: Id
    expires_at: AwareDatetime | None = None


class RemoveOverride(_Command):
    """Remove the customer's override under one policy; the held tier applies again at once."""

    type: Literal["remove_override"] = "remove_override"


class ApproveProposal(_Command):
    """Approve an open tier-change proposal: the proposed change takes effect at once (cause ``approval``)."""

    type: Literal["approve_proposal"] = "approve_proposal"
    proposal_id: Id


class RejectProposal(_Command):
    """Reject an open tier-change proposal: the customer keeps the held tier (recorded)."""

    type: Literal["reject_proposal"] = "reject_proposal"
    proposal_id: Id


AdminCommand = Annotated[
    SetOverride | RemoveOverride | ApproveProposal | RejectProposal, Field(discriminator="type")
]
ADMIN_COMMAND_ADAPTER: TypeAdapter[AdminCommand] = TypeAdapter(AdminCommand)


class InvalidCommand(ValueError):
    """A command that does not parse; ``reason`` is a human sentence (``path: message``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def parse_command(raw: bytes | str) -> SetOverride | RemoveOverride | ApproveProposal | RejectProposal:
    """Parse one JSON command; raises :class:`InvalidCommand` with the first problem's path and message."""
    try:
        return ADMIN_COMMAND_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "$"
        raise InvalidCommand(f"{where}: {first['msg']}") from None


# --------------------------------------------------------------------------------------------- outputs


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class OverrideView(_Output):
    """An active override as every read and output shows it."""

    kind: OverrideKind
    tier: str
    actor: str
    reason: str
    set_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    command_id: str


class KeepMargin(_Output):
    """What keeps the held tier: the banded number must reach ``threshold`` (inclusive or strictly above);
    ``gap`` = threshold - value (> 0: that much more is needed)."""

    tier: str
    threshold: float
    inclusive: bool
    value: float
    gap: float


class TierChangeProposed(_Output):
    """A transition the policy marks as sensitive: it takes effect only when approved (before
    ``expires_at``). Topic ``<prefix>tier-change-proposals``, key = ``customer_id``."""

    schema_version: Literal[1] = ADMIN_SCHEMA_VERSION
    type: Literal["tier-change-proposed"] = "tier-change-proposed"
    proposal_id: str = Field(description="Deterministic id: same proposal, same id.")
    customer_id: str
    policy: str
    policy_version: int
    from_tier: str = Field(alias="from", description="The held tier.")
    to_tier: str = Field(alias="to", description="The tier the change would move to.")
    direction: Direction
    cause: Cause = Field(description="What led to the change (event, decay, review, correction, ...).")
    score: float | None
    scored_tier: str = Field(description="The tier the current score gives (may differ, e.g. one_step).")
    event_id: str | None
    rule: int = Field(ge=0, description="Index of the matching rule in the policy's lifecycle.approvals.")
    proposed_at: AwareDatetime
    expires_at: AwareDatetime
    override: OverrideView | None = None


class ProposalClosed(_Output):
    """The end of a proposal: approved (the change took effect), rejected, expired or withdrawn (the
    score no longer supports it). Recorded for audit."""

    schema_version: Literal[1] = ADMIN_SCHEMA_VERSION
    type: Literal["tier-change-proposal-closed"] = "tier-change-proposal-closed"
    proposal_id: str
    customer_id: str
    policy: str
    from_tier: str = Field(alias="from")
    to_tier: str = Field(alias="to")
    outcome: ProposalOutcome
    at: AwareDatetime
    actor: str | None = None
    reason: str | None = None
    command_id: str | None = None


class TierAtRisk(_Output):
    """A downgrade is scheduled: ``tier`` moves to ``to_tier`` at ``scheduled_at`` unless the customer
    recovers (like Open Loyalty's LevelWillExpire). Emitted once per scheduled downgrade."""

    schema_version: Literal[1] = ADMIN_SCHEMA_VERSION
    type: Literal["tier-at-risk"] = "tier-at-risk"
    customer_id: str
    policy: str
    policy_version: int
    tier: str = Field(description="The held tier at risk.")
    to_tier: str
    scheduled_at: AwareDatetime
    warned_at: AwareDatetime
    score: float | None
    keep: KeepMargin | None = Field(description="Margin to keep the tier; null when the policy has no bands.")
    needs_approval: bool = Field(description="The downgrade will become a proposal rather than take effect.")
    override: OverrideView | None = None


class CommandResult(_Output):
    """The audit record of one admin command: accepted or refused, and why."""

    schema_version: Literal[1] = ADMIN_SCHEMA_VERSION
    type: Literal["command-result"] = "command-result"
    command_id: str
    accepted: bool
    reason: str = Field(description="Why it was refused, or what it did.")
    command: str | None = Field(None, description="The command's type, when it parsed.")
    customer_id: str | None = None
    policy: str | None = None
    actor: str | None = None
    at: AwareDatetime | None = Field(None, description="When the engine applied (or refused) it.")
