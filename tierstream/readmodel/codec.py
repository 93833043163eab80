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
from datetime import UTC, datetime, timedelta

import orjson
from pydantic import ValidationError

from schemas.outputs import TierChangeEvent
from schemas.readmodel import LedgerEntry, RoutingHints, TierRecord

log = logging.getLogger(__name__)

_KEY_FIELDS = frozenset({"customer_id", "policy"})
_ZERO = timedelta(0)


def exact(data: bytes) -> bytes:
    """``data`` in a bytes object of its own size. orjson (3.12 on) returns its output buffer, allocated
    with a power-of-two capacity and never shrunk: a 1.3 kB tier change held 8 kB. Held for a whole batch
    (11,641 tier changes of eleven presets), that was +400 MB of peak memory (tracemalloc; orjson 3.13.0;
    known upstream: ijl/orjson#483, home-assistant/core#181240). Copying costs ~0.2 µs per kilobyte.
    (Here, below streams.encoded which re-exports it, so that this module's encoders use it too.)"""
    return bytes(memoryview(data))


def encode(record: TierRecord) -> bytes:
    """JSON of ``record`` without the key fields (``{"policy_version", "tier", ..., "routing"}``): exactly
    ``record.model_dump_json(exclude={"customer_id", "policy"})``, encoded.

    The worker encodes one per policy per decision (eleven presets at live rates: ~9 a event), in the
    decision processes (streams.encoded). pydantic's serializer took 6.9 µs a record (timeit, session 19),
    orjson over the same values 1.0 µs, with the same bytes (:func:`_fast`)."""
    fast = _fast(record, keyed=False)
    return fast if fast is not None else record.model_dump_json(exclude=_KEY_FIELDS).encode("utf-8")


def encode_keyed(record: TierRecord) -> bytes:
    """JSON of the whole ``record``, key fields last: exactly ``orjson.dumps(record.model_dump(mode="json"))``
    (the customer-tiers snapshot record's value, one per tier change: streams.encoded.snapshot_record), in a
    bytes object of its own size."""
    fast = _fast(record, keyed=True)
    return fast if fast is not None else exact(orjson.dumps(record.model_dump(mode="json")))


def _fast(record: TierRecord, *, keyed: bool) -> bytes | None:
    """``record``'s JSON written by orjson from its field values, or None where that is not known to give
    pydantic's bytes. It does for the values it takes: the same field order, RFC 3339 datetimes with ``Z`` for
    offset zero (``OPT_UTC_Z``), the same shortest float text, the same string escapes
    (tests/unit/test_readmodel_encode.py compares them over random values, with the orjson and pydantic
    versions installed: both are the project's dependencies, and an upgrade of either is checked by those
    tests). It takes exactly a ``TierRecord`` with ``RoutingHints`` (a subclass's extra fields would be
    written), a ``float`` or ``None`` score (pydantic writes an ``int`` there as its own float text,
    ``1.152921504606847e+18`` where orjson writes ``e18``), ``int`` numbers (pydantic writes a ``bool`` there as
    ``1``/``0``), ``datetime`` times whose offsets orjson and pydantic write alike (:func:`same_offset_text`),
    and no override (rare; its free-form dict is left to pydantic). What orjson refuses (an int beyond 64
    bits) is pydantic's too.

    The bytes are copied to their own size (:func:`exact`): a batch holds tens of thousands of these (eleven
    presets: +200 MB of peak memory in bench_throughput's drain before the copy, session 19)."""
    fields = record.__dict__
    score = fields["score"]
    since = fields["since"]
    updated_at = fields["updated_at"]
    routing = fields["routing"]
    sequence = fields["sequence"]
    if (
        type(record) is not TierRecord
        or fields["override"] is not None
        or (score is not None and type(score) is not float)
        or type(fields["version"]) is not int
        or type(fields["policy_version"]) is not int
        or (sequence is not None and type(sequence) is not int)
        or type(routing) is not RoutingHints
        or type(since) is not datetime
        or type(updated_at) is not datetime
        or not same_offset_text(since)
        or not same_offset_text(updated_at)
    ):
        return None
    values = {
        "policy_version": fields["policy_version"],
        "tier": fields["tier"],
        "scored_tier": fields["scored_tier"],
        "score": score,
        "since": since,
        "override": None,
        "version": fields["version"],
        "sequence": sequence,
        "change_id": fields["change_id"],
        "updated_at": updated_at,
        "routing": _routing_json(routing),
    }
    if keyed:
        values["customer_id"] = fields["customer_id"]
        values["policy"] = fields["policy"]
    try:
        return exact(orjson.dumps(values, option=orjson.OPT_UTC_Z))
    except TypeError:  # orjson.JSONEncodeError: an int beyond 64 bits, a lone surrogate
        return None


def same_offset_text(value: datetime) -> bool:
    """Whether orjson writes ``value``'s UTC offset as pydantic does: none, UTC, or whole minutes. An offset
    with seconds (historic zones' local mean time, ``timezone(timedelta(seconds=30))``) orjson rounds to the
    minute and pydantic truncates. ``tzinfo is UTC`` first: the worker's own times, without a call."""
    zone = value.tzinfo
    if zone is UTC or zone is None:
        return True
    offset = value.utcoffset()
    return offset is None or (offset.seconds % 60 == 0 and not offset.microseconds)


def datetime_text(value: object) -> str:
    """pydantic's JSON text of a datetime, as orjson's ``default`` with ``OPT_PASSTHROUGH_DATETIME`` (for
    datetimes nested where :func:`same_offset_text` cannot be asked first: a tier change's explanation).
    Raises ``TypeError`` for anything it does not write exactly (a subclass, an offset with seconds, any other
    type), which sends the caller to pydantic."""
    if type(value) is datetime and same_offset_text(value):
        if value.utcoffset() == _ZERO:
            return value.replace(tzinfo=None).isoformat() + "Z"
        return value.isoformat()
    raise TypeError(f"not written by the fast path: {type(value).__name__}")


#: id(hints) -> (hints, its JSON): a policy's tiers share a few RoutingHints objects (streams.decide caches
#: one per policy and tier), so their JSON is written once. The object is kept in the entry, so its id
#: cannot be reused while the entry lives. Bounded: cleared when full.
_ROUTING_JSON: dict[int, tuple[RoutingHints, orjson.Fragment]] = {}
_ROUTING_JSON_MAX = 4096


def _routing_json(hints: RoutingHints) -> orjson.Fragment:
    """``hints`` as pydantic serializes it, as a fragment orjson embeds unchanged."""
    entry = _ROUTING_JSON.get(id(hints))
    if entry is None or entry[0] is not hints:
        if len(_ROUTING_JSON) >= _ROUTING_JSON_MAX:
            _ROUTING_JSON.clear()
        entry = _ROUTING_JSON[id(hints)] = (hints, orjson.Fragment(hints.model_dump_json().encode("utf-8")))
    return entry[1]


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
