"""streams.decide: the read-model record built without validation equals pydantic's own construction."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.readmodel import RoutingHints, TierRecord
from streams.decide import _unchecked_record

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _values() -> dict[str, object]:
    return {
        "policy_version": 2, "tier": "gold", "scored_tier": "silver", "score": 61.5, "since": NOW,
        "override": {"kind": "pin", "tier": "gold"}, "version": 7, "sequence": 3, "change_id": "abc",
        "updated_at": NOW, "routing": RoutingHints(queue="vip", priority=1), "customer_id": "c-1", "policy": "p",
    }


def test_unchecked_record_is_what_model_construct_makes() -> None:
    constructed = TierRecord.model_construct(**_values())  # type: ignore[arg-type]
    unchecked = _unchecked_record(_values())
    assert unchecked == constructed
    assert unchecked.model_dump_json() == constructed.model_dump_json()
    assert unchecked.model_fields_set == constructed.model_fields_set == set(TierRecord.model_fields)
    # and it is what validation makes of the same values
    assert unchecked == TierRecord.model_validate(_values())


def test_unchecked_record_copies_with_updates_leave_the_original_alone() -> None:
    record = _unchecked_record(_values())
    copy = record.model_copy(update={"tier": "bronze"})
    assert (copy.tier, record.tier) == ("bronze", "gold")
    assert record.model_fields_set == set(TierRecord.model_fields)
