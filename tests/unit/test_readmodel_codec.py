"""The ledger member of a tier change is the same bytes whether encoded from the change itself (the
worker's fast path, ``LedgerWrite.of``) or from its validated ledger entry: a re-delivered change must
always map to the same sorted-set member, or the ledger would store it twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.outputs import TierChangeEvent, change_id
from tierstream.readmodel import codec
from tierstream.readmodel.writer import LedgerWrite


def _change(frm: str | None, event_id: str | None, tz: timezone) -> TierChangeEvent:
    return TierChangeEvent(
        change_id=change_id("c1", "five_tier", 1, 2, "gold"), customer_id="c1", policy="five_tier", policy_version=1,
        from_tier=frm, to_tier="gold", direction="new" if frm is None else "up", cause="event", score=1.0,
        sequence=2, event_id=event_id, effective_at=datetime(2025, 3, 1, 12, tzinfo=UTC).astimezone(tz),
        decided_at=datetime(2025, 3, 1, tzinfo=UTC), explanation={},
    )


@pytest.mark.parametrize("frm", [None, "silver"])
@pytest.mark.parametrize("event_id", [None, "e9"])
@pytest.mark.parametrize("tz", [UTC, timezone(timedelta(hours=5, minutes=30))])
def test_member_from_change_equals_member_from_entry(frm: str | None, event_id: str | None, tz: timezone) -> None:
    change = _change(frm, event_id, tz)
    write = LedgerWrite.of(change)
    assert write.member == codec.encode_entry(codec.ledger_entry(change))
    assert write.score == datetime(2025, 3, 1, 12, tzinfo=UTC).timestamp()
    assert codec.decode_entry("c1", "five_tier", write.member) == codec.ledger_entry(change)
