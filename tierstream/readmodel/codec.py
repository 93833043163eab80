"""Encoding of what the read model stores in Redis, and back: tier records and tier-ledger entries.

- :class:`~schemas.readmodel.TierRecord`: JSON without ``customer_id`` and ``policy`` (they are the key
  and the field).
- :class:`~schemas.readmodel.LedgerEntry`: *canonical* JSON (sorted keys, ``effective_at`` in UTC), since
  the bytes are a sorted-set member: the same change must always give the same bytes, so that storing a
  re-delivered change is a no-op (idempotence comes from the encoding, not from a check).

Decoding is tolerant: a value that does not decode yields ``None`` and a log line, so one corrupt entry
can never turn a support lookup into a server error.
"""

from __future__ import annotations

import logging
from datetime import UTC

import orjson
from pydantic import ValidationError

from schemas.outputs import TierChangeEvent
from schemas.readmodel import LedgerEntry, TierRecord

log = logging.getLogger(__name__)

_KEY_FIELDS = frozenset({"customer_id", "policy"})


def encode(record: TierRecord) -> bytes:
    """JSON of ``record`` without the key fields (``{"tier", "score", "since", ..., "policy_version"}``)."""
    return record.model_dump_json(exclude=_KEY_FIELDS).encode("utf-8")


def decode(customer_id: str, policy: str, raw: bytes | str) -> TierRecord | None:
    """The record stored for ``(customer_id, policy)``, or ``None`` (logged) if ``raw`` is not one."""
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise TypeError("stored value is not a JSON object")
        data["customer_id"] = customer_id
        data["policy"] = policy
        return TierRecord.model_validate(data)
    except (orjson.JSONDecodeError, TypeError, ValidationError) as exc:
        log.warning("corrupt read-model value for customer %r policy %r: %s", customer_id, policy, exc)
        return None


def ledger_entry(change: TierChangeEvent) -> LedgerEntry:
    """The ledger entry of one tier change (its identifying and descriptive fields only)."""
    return LedgerEntry(
        change_id=change.change_id,
        sequence=change.sequence,
        from_tier=change.from_tier,
        to_tier=change.to_tier,
        cause=change.cause,
        effective_at=change.effective_at,
        event_id=change.event_id,
    )


def encode_entry(entry: LedgerEntry | TierChangeEvent) -> bytes:
    """Canonical JSON of ``entry`` (or of the ledger entry of a tier change, without building the entry
    model: the worker writes one per change): equal entries give equal bytes, whatever the datetime's
    tzinfo object (a re-delivered change parsed from JSON has pydantic's UTC, a fresh one ``datetime.UTC``)."""
    return orjson.dumps(
        {
            "change_id": entry.change_id,
            "sequence": entry.sequence,
            "from": entry.from_tier,
            "to": entry.to_tier,
            "cause": entry.cause,
            "effective_at": entry.effective_at.astimezone(UTC).isoformat(),
            "event_id": entry.event_id,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def decode_entry(customer_id: str, policy: str, raw: bytes | str) -> LedgerEntry | None:
    """The ledger entry stored as ``raw``, or ``None`` (logged) if it is not one."""
    try:
        return LedgerEntry.model_validate_json(raw)
    except ValidationError as exc:
        log.warning("corrupt ledger entry for customer %r policy %r: %s", customer_id, policy, exc)
        return None
