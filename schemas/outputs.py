"""Output contract: what downstream services (CRM, notifications) consume.

``TierChangeEvent`` (topic ``<prefix>tier-changes``, key = ``customer_id``) is versioned by
``schema_version``; fields are only ever added, never renamed or re-typed, within a major version.
Delivery is at-least-once: the same decision may be delivered more than once, always with the same
``change_id``; consumers de-duplicate by ``change_id`` and ignore a ``sequence`` not newer than the last
one they applied for the customer and policy.

Dead letters (topic ``<prefix>dead-letters``) keep the record's original key and value bytes verbatim;
the reason and source are Kafka headers (the Kafka Connect convention), listed in :data:`DLQ_HEADERS`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

TIER_CHANGE_SCHEMA_VERSION = 1

Direction = Literal["up", "down", "new"]
Cause = Literal["event", "decay", "review", "override", "approval", "policy_change", "correction"]


class TierChangeEvent(BaseModel):
    """One customer moved from one tier to another under one policy."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal[1] = TIER_CHANGE_SCHEMA_VERSION
    change_id: str = Field(description="Deterministic id of this decision: same decision, same id.")
    customer_id: str
    policy: str
    policy_version: int
    from_tier: str | None = Field(alias="from", description="Previous tier; null on first assignment.")
    to_tier: str = Field(alias="to")
    direction: Direction = Field(description="up / down by the policy's tier order; new on first assignment.")
    cause: Cause
    score: float | None
    sequence: int = Field(ge=1, description="Per customer and policy; increases by one per change.")
    event_id: str | None = Field(description="The input event that caused the change, when there is one.")
    effective_at: AwareDatetime = Field(description="Event time at which the new tier holds.")
    decided_at: AwareDatetime = Field(description="Wall-clock time the worker decided.")
    explanation: dict[str, Any] = Field(default_factory=dict)


def change_id(customer_id: str, policy: str, policy_version: int, sequence: int, to_tier: str) -> str:
    """Deterministic id of a tier change.

    The inputs identify the decision: the n-th change of this customer under this policy version, to this
    tier. A worker that re-decides after a crash recovers the same sequence from the table's changelog and
    so produces the same id; any different decision differs in at least one input.
    """
    raw = f"{customer_id}\x1f{policy}\x1f{policy_version}\x1f{sequence}\x1f{to_tier}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def direction(tiers_high_first: tuple[str, ...], from_tier: str | None, to_tier: str) -> Direction:
    """``up`` when ``to_tier`` ranks above ``from_tier`` in the policy's order, ``down`` below."""
    if from_tier is None or from_tier not in tiers_high_first:
        return "new"
    return "up" if tiers_high_first.index(to_tier) < tiers_high_first.index(from_tier) else "down"


#: Headers on every dead-letter record (values are UTF-8 strings).
DLQ_HEADERS: dict[str, str] = {
    "tierstream.reason": "machine-readable reason: invalid_json, not_an_object, unknown_type, schema, "
    "wrong_topic, future_timestamp, too_late, partition_mismatch",
    "tierstream.detail": "human-readable explanation",
    "tierstream.source.topic": "topic the record was read from",
    "tierstream.source.partition": "its partition",
    "tierstream.source.offset": "its offset",
    "tierstream.dead_lettered_at": "RFC 3339 wall-clock time of the decision",
}


def dlq_headers(
    reason: str, detail: str, topic: str, partition: int, offset: int, now: datetime
) -> list[tuple[str, bytes]]:
    """Kafka headers for one dead letter (see :data:`DLQ_HEADERS`)."""
    return [
        ("tierstream.reason", reason.encode()),
        ("tierstream.detail", detail.encode()[:2000]),
        ("tierstream.source.topic", topic.encode()),
        ("tierstream.source.partition", str(partition).encode()),
        ("tierstream.source.offset", str(offset).encode()),
        ("tierstream.dead_lettered_at", now.isoformat().encode()),
    ]
