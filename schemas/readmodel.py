"""Read-model contract: what workers write to Redis per customer and policy, and what the HTTP API returns.

:class:`TierRecord` is the unit the stream worker hands to ``tierstream.readmodel.ReadModelWriter``; it is
stored as JSON in the hash ``{prefix}tier:{customer_id}`` under the field ``policy`` (see
``docs/interfaces.md``). The API models (:class:`TierView`, :class:`CustomerTiers`, batch request and
response, :class:`ErrorBody`) are the public HTTP contract and appear in ``docs/openapi.json``.

Invariants:
- ``version`` is the per-customer sequence of the worker: it only grows for a customer, so for any
  (customer, policy) a greater version is a newer truth. Redis keeps the greatest version it has seen.
- datetimes are timezone-aware (serialised as RFC 3339 with an offset); scores are finite.
- records are frozen: a record is a fact about one version, never edited in place.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

#: Most ids a single ``POST /v1/tiers:batchGet`` accepts.
BATCH_MAX_IDS = 1000

CustomerId = Annotated[str, Field(min_length=1, max_length=128, description="Customer id (as in events).")]
PolicyId = Annotated[str, Field(min_length=1, max_length=128, description="Policy id.")]


class RoutingHints(BaseModel):
    """How support should route a customer of this tier, as the policy configures it (all optional)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue: str | None = Field(None, description="Support queue the contact is routed to.")
    priority: int | None = Field(None, description="Queue priority (policy-defined scale).")
    response_time_target_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        None, description="Target time to first response."
    )


class _TierFields(BaseModel):
    """Fields shared by the stored record and the API view."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_version: int = Field(ge=0, description="Version of the policy that decided the tier.")
    tier: str = Field(min_length=1, description="Effective tier (an override wins over the scored tier).")
    scored_tier: str | None = Field(
        None,
        description="What the score says now; differs from `tier` while the lifecycle holds a tier "
        "(grace, review dates, bands, approvals) or an override applies.",
    )
    score: Annotated[float, Field(allow_inf_nan=False)] | None = Field(
        None, description="Policy score; null for rule-only policies."
    )
    since: AwareDatetime = Field(description="When the customer entered this tier.")
    override: dict[str, Any] | None = Field(None, description="Active manual override, if any.")
    version: int = Field(ge=0, description="Per-customer sequence; greater is newer.")
    sequence: int | None = Field(
        None, ge=0, description="`sequence` of the last tier change of this customer and policy (tier-changes)."
    )
    change_id: str | None = Field(None, description="`change_id` of that last tier change.")
    updated_at: AwareDatetime = Field(description="When the worker last decided this record.")
    routing: RoutingHints = Field(default_factory=RoutingHints, description="Routing hints of the tier.")


class TierRecord(_TierFields):
    """One customer's live tier under one policy: the unit the worker writes to the read model."""

    customer_id: CustomerId
    policy: PolicyId


class TierView(_TierFields):
    """A tier as the API returns it, with the read's staleness."""

    policy: PolicyId
    staleness_seconds: float = Field(ge=0, description="Age of the last update (now - updated_at), never negative.")

    @classmethod
    def from_record(cls, record: TierRecord, now: datetime) -> TierView:
        """The view of ``record`` read at ``now`` (aware). Clock skew never yields a negative staleness."""
        data = record.model_dump(exclude={"customer_id"})
        staleness = max(0.0, (now - record.updated_at).total_seconds())
        return cls(**data, staleness_seconds=staleness)


class CustomerTiers(BaseModel):
    """Every requested policy's tier of one customer."""

    customer_id: CustomerId
    tiers: list[TierView] = Field(description="One entry per policy (only the requested one if filtered).")


class BatchGetRequest(BaseModel):
    """Body of ``POST /v1/tiers:batchGet``."""

    model_config = ConfigDict(extra="forbid")

    ids: list[CustomerId] = Field(min_length=1, max_length=BATCH_MAX_IDS, description="Customer ids.")
    policy: PolicyId | None = Field(None, description="Only this policy (default: every policy).")


class BatchGetResponse(BaseModel):
    """Result of a batch lookup: found customers in request order (duplicates once), then the unknown ids."""

    results: list[CustomerTiers]
    not_found: list[str] = Field(description="Requested ids with no tier (under the policy, if given).")


class TierCounts(BaseModel):
    """Number of customers per tier under one policy (for dashboards)."""

    policy: PolicyId
    counts: dict[str, int]
    total: int


class Status(BaseModel):
    """Body of the health and readiness probes."""

    status: str


class ErrorInfo(BaseModel):
    """What went wrong: a stable machine code and a human message."""

    code: str = Field(description="Machine-readable code, e.g. not_found, unauthorized, invalid_request.")
    message: str = Field(description="Human-readable explanation.")
    details: list[dict[str, Any]] | None = Field(None, description="Per-field problems (validation errors).")


class ErrorBody(BaseModel):
    """Every API error response has this body."""

    error: ErrorInfo


# --------------------------------------------------------------------------------------------- tier ledger

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339_only(value: object) -> object:
    """Refuse what pydantic's lax mode would also take for a datetime (unix numbers, dates without a time,
    other layouts): clients send RFC 3339 with an offset, and anything else is a client bug."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 date-time with an offset, e.g. 2026-03-01T00:00:00Z")
    return value


#: An aware datetime given as RFC 3339 text only (request inputs: ``as_of``, ``expires_at``).
Rfc3339Datetime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only)]


class LedgerEntry(BaseModel):
    """One effective tier change as the read model's ledger stores it (``{prefix}ledger:{customer}:{policy}``).

    A projection of :class:`schemas.outputs.TierChangeEvent` on the fields that identify and describe the
    change (no score, explanation or ``decided_at``): a re-delivered change gives the identical entry, so
    storing it again is a no-op. ``from``/``to`` as on the tier-changes topic."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    change_id: str = Field(min_length=1, description="Deterministic id of the change (as on the tier-changes topic).")
    sequence: int = Field(ge=1, description="Per customer and policy; increases by one per change.")
    from_tier: str | None = Field(None, alias="from", description="Previous tier; null on first assignment.")
    to_tier: str = Field(alias="to", min_length=1, description="Tier from effective_at on.")
    cause: str = Field(min_length=1, description="event, decay, review, override, approval, policy_change, ...")
    effective_at: AwareDatetime = Field(description="Event time from which the new tier holds.")
    event_id: str | None = Field(None, description="The input event that caused the change, when there is one.")


class HistoryEntry(LedgerEntry):
    """A ledger entry as the API returns it: with its policy."""

    policy: PolicyId


class TierAsOf(BaseModel):
    """The tier a customer had under one policy at the requested time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: PolicyId
    tier: str | None = Field(
        description="Effective tier at `as_of`; null if the kept ledger has no change at or before it (the "
        "customer had no tier yet, or the change is older than the newest changes the read model keeps: "
        "the tier-changes topic has the full history)."
    )
    since: AwareDatetime | None = Field(description="When that tier took effect (the change's effective_at).")


class CustomerHistory(BaseModel):
    """Body of ``GET /v1/customers/{id}/history``: tier changes newest first, and the tiers at ``as_of``."""

    customer_id: CustomerId
    as_of: AwareDatetime | None = Field(None, description="The requested time; entries are those at or before it.")
    entries: list[HistoryEntry] = Field(
        description="Tier changes, newest first (effective_at, then sequence); at most the newest "
        "`LEDGER_MAX` (200) per policy are kept."
    )
    tiers_as_of: list[TierAsOf] | None = Field(
        None, description="With `as_of`: one entry per policy with a ledger (sorted by policy); else null."
    )


# --------------------------------------------------------------------------------------------- admin requests


class OverrideRequest(BaseModel):
    """Body of ``PUT /v1/customers/{id}/overrides/{policy}`` (becomes a ``schemas.admin.SetOverride``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["pin", "floor", "ceiling"] = Field(
        description="pin: exactly `tier`; floor: at least `tier`; ceiling: at most `tier`."
    )
    tier: str = Field(min_length=1, max_length=128, description="A tier of the policy.")
    reason: str = Field(min_length=1, max_length=2000, description="Why; recorded in the audit.")
    expires_at: Rfc3339Datetime | None = Field(None, description="When the override removes itself (optional).")


class ProposalDecisionRequest(BaseModel):
    """Body of ``POST /v1/customers/{id}/proposals/{proposal_id}:approve`` and ``:reject``."""

    model_config = ConfigDict(extra="forbid")

    policy: PolicyId
    reason: str = Field(min_length=1, max_length=2000, description="Why; recorded in the audit.")


class CommandAccepted(BaseModel):
    """Body of a 202: the command was published to the admin topic; the worker applies it and writes one
    ``CommandResult`` (accepted or refused, with the reason) to the admin audit topic."""

    command_id: str = Field(description="The command's id (the Idempotency-Key header, when given).")
    command: str = Field(description="set_override, remove_override, approve_proposal or reject_proposal.")
    customer_id: CustomerId
    policy: PolicyId
