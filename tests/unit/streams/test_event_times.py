"""Event times as integer epoch microseconds in the batch core (session 16).

``BatchProcessor`` checks the clock skew and folds with each event's ``occurred_at`` as integer epoch
microseconds (``CustomerState.apply_micros``) rather than comparing the events' datetimes, whose producer
offsets made every comparison call ``utcoffset`` twice. The results must be exactly those of the datetime
rules: ``schemas.events.parse_event``'s skew check, and the fold the batch replay runs
(``scoring.replay.fold_states``: ``CustomerState.apply`` with ``horizon_start``), to the microsecond, whatever
the offsets.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from schemas.events import InvalidEvent, parse_event
from scoring.policy import load_policies
from scoring.replay import fold_states
from scoring.state import CustomerState
from streams.batch import BatchProcessor, InRecord
from streams.partitioning import partition_for
from streams.topics import Topics

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SKEW = timedelta(minutes=5)
TOPICS = Topics("t.")


def processor(horizon: timedelta = timedelta(days=1100)) -> BatchProcessor:
    return BatchProcessor(load_policies(["five_tier"]), TOPICS, 4, SKEW, horizon)


def rec(offset: int, event: dict) -> InRecord:
    cid = event["customer_id"].encode()
    return InRecord(TOPICS.input(event["type"]), partition_for(cid, 4), offset, cid, orjson.dumps(event),
                    NOW.timestamp())


def login(eid: str, at: str, cid: str = "c1") -> dict:
    return {"event_id": eid, "customer_id": cid, "occurred_at": at, "type": "login"}


def test_future_skew_boundary_is_exact_to_the_microsecond_with_an_offset():
    # now + 5 min = 2026-06-01T00:05:00Z = 08:05:00 at +08:00: accepted; one microsecond later: refused
    at_limit = login("e1", "2026-06-01T08:05:00+08:00")
    beyond = login("e2", "2026-06-01T08:05:00.000001+08:00")
    out = processor().process([rec(0, at_limit), rec(1, beyond)], lambda c, p: None, NOW)
    assert out.counts == {("login", "applied"): 1, ("login", "dead_letter"): 1}
    [dead] = out.dead_letters
    assert dead.record.offset == 1 and dead.reason == "future_timestamp"
    with pytest.raises(InvalidEvent) as refused:  # the contract's own check, on datetimes
        parse_event(orjson.dumps(beyond), NOW, SKEW)
    assert (dead.reason, dead.detail) == (refused.value.reason, refused.value.detail)
    assert dead.detail == "occurred_at 2026-06-01T08:05:00.000001+08:00 is more than 0:05:00 after now"


def test_too_late_boundary_and_message_name_the_stored_newest_event():
    store: dict[str, bytes] = {}
    p = processor(horizon=timedelta(days=400))
    first = p.process([rec(0, login("e1", "2026-05-01T10:00:00.900+08:00"))], lambda c, _: store.get(c), NOW)
    store.update({c: data for c, (_, data) in first.state_writes.items()})
    # The stored newest event is 2026-05-01T02:00:00Z (whole seconds): the horizon starts 400 days before it.
    # An order (kept for the whole horizon, unlike logins) exactly there is applied; a microsecond older is late.
    start = datetime(2026, 5, 1, 2, tzinfo=UTC) - timedelta(days=400)
    at_start = {"event_id": "e2", "customer_id": "c1", "occurred_at": start.astimezone(timezone(timedelta(hours=-5)))
                .isoformat(), "type": "order", "order_id": "o2", "status": "placed", "amount": "10"}
    older = {**at_start, "event_id": "e3", "order_id": "o3",
             "occurred_at": (start - timedelta(microseconds=1)).isoformat()}
    out = p.process([rec(1, at_start), rec(2, older)], lambda c, _: store.get(c), NOW)
    assert out.counts == {("order", "applied"): 1, ("order", "dead_letter"): 1}
    [dead] = out.dead_letters
    assert dead.record.offset == 2 and dead.reason == "too_late"
    assert dead.detail == ("order event at 2025-03-27T01:59:59.999999+00:00 is older than the state keeps for its "
                           "kind (lateness horizon at most 400 days) before the customer's newest event "
                           "2026-05-01T02:00:00+00:00")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_fold_exactly_as_the_replay_whatever_the_offsets(seed: int):
    """Random events of three customers with offsets from -12:00 to +14:00, sub-second times, duplicates and
    events far behind the newest (some beyond a 60-day horizon): the batch core, in batches of 7, ends with
    the states and outcomes the replay's datetime fold gives."""
    rng = random.Random(seed)
    horizon = timedelta(days=60)
    base = datetime(2026, 3, 1, tzinfo=UTC)
    events: list[dict] = []
    for i in range(400):
        at = base + timedelta(seconds=rng.randrange(0, 90 * 86_400), microseconds=rng.randrange(0, 1_000_000))
        if i and rng.random() < 0.1:  # near a recent event's time, within a second either way
            near = datetime.fromisoformat(rng.choice(events)["occurred_at"])
            at = near + timedelta(microseconds=rng.randrange(-1_000_000, 1_000_000))
        offset = timezone(timedelta(minutes=15 * rng.randrange(-48, 57)))
        cid = f"c{rng.randrange(3)}"
        kind = rng.choice(["login", "login", "order", "payment", "ticket"])
        event = {"event_id": f"e{i}", "customer_id": cid, "occurred_at": at.astimezone(offset).isoformat(),
                 "type": kind}
        if kind == "order":
            event.update(order_id=f"o{i}", status="placed", amount="12.5")
        elif kind == "payment":
            event.update(payment_id=f"p{i}", status="paid", amount="3")
        elif kind == "ticket":
            event.update(ticket_id=f"t{i}", action="opened", category="inquiry")
        events.append(event)
        if rng.random() < 0.05:
            events.append(dict(event))  # a duplicate delivery
    p = processor(horizon)
    store: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    records = [rec(i, e) for i, e in enumerate(events)]
    for i in range(0, len(records), 7):
        out = p.process(records[i : i + 7], lambda c, _: store.get(c), NOW)
        store.update({c: data for c, (_, data) in out.state_writes.items()})
        for (_, outcome), n in out.counts.items():
            counts[outcome] = counts.get(outcome, 0) + n
        assert all(d.reason == "too_late" for d in out.dead_letters)

    replayed = fold_states([parse_event(orjson.dumps(e), NOW, SKEW) for e in events], horizon)
    assert counts.get("dead_letter", 0) > 0 and counts.get("duplicate", 0) > 0  # both paths were taken

    def folded(state: CustomerState) -> bytes:
        state.tiers = {}  # decisions: only the stream makes them
        return state.to_bytes()

    assert sorted(store) == sorted(replayed)
    for cid, data in store.items():
        assert folded(CustomerState.from_bytes(data)) == folded(replayed[cid]), cid
