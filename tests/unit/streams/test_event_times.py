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
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from schemas.events import InvalidEvent, parse_event
from scoring.policy import load_policies
from scoring.replay import ReplayStats, fold_states
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
    # now + 5 min = 2026-06-01T00:05:00.000250Z = 08:05:00.000250 at +08:00: accepted; a microsecond later: refused
    now = NOW + timedelta(microseconds=250)
    at_limit = login("e1", "2026-06-01T08:05:00.000250+08:00")
    beyond = login("e2", "2026-06-01T08:05:00.000251+08:00")
    out = processor().process([rec(0, at_limit), rec(1, beyond)], lambda c, p: None, now)
    assert out.counts == {("login", "applied"): 1, ("login", "dead_letter"): 1}
    [dead] = out.dead_letters
    assert dead.record.offset == 1 and dead.reason == "future_timestamp"
    with pytest.raises(InvalidEvent) as refused:  # the contract's own check, on datetimes
        parse_event(orjson.dumps(beyond), now, SKEW)
    assert (dead.reason, dead.detail) == (refused.value.reason, refused.value.detail)
    assert dead.detail == "occurred_at 2026-06-01T08:05:00.000251+08:00 is more than 0:05:00 after now"


def test_events_before_1970_are_dead_lettered_not_a_crash():
    """Regression (session 16 review): a login before 1970 failed its whole batch (a negative day in the
    state's unsigned day field), an event in years 1-4 overflowed the horizon arithmetic; every restart
    failed again. The contract refuses them (schemas.events.EARLIEST_EVENT)."""
    events = [login("e1", "1969-12-31T23:59:59.999999Z"), login("e2", "0002-06-01T00:00:00Z", cid="c2"),
              login("e3", "1970-01-01T08:00:00+08:00", cid="c3")]
    out = processor().process([rec(i, e) for i, e in enumerate(events)], lambda c, p: None, NOW)
    assert [(d.record.offset, d.reason) for d in out.dead_letters] == [(0, "schema"), (1, "schema")]
    assert out.dead_letters[0].detail == ("login.occurred_at: Input should be greater than or equal to "
                                          "1970-01-01T00:00:00Z")
    assert out.counts[("login", "applied")] == 1  # 1970-01-01T00:00:00Z exactly


def test_a_negative_horizon_start_floors_to_the_second_below():
    """``apply_micros`` floors as ``delta.days * DAY + delta.seconds`` did, below the epoch too: an event half a
    second into 1970-01-02 with a 400-day horizon starts the horizon half a second into 1968-11-28, which
    is second -34,473,600 (truncating would give -34,473,599, and a horizon one second short)."""
    event = parse_event(orjson.dumps(login("e1", "1970-01-02T00:00:00.500Z")), NOW, SKEW)
    state = CustomerState.new("c1")
    assert state.apply(event, event.occurred_at - timedelta(days=400)) == "applied"
    assert state.anchor == 86_400
    assert state.h == 400 * 86_400


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


@pytest.mark.parametrize(("cancel_at", "newest"), [
    ("2027-06-06T10:00:00+08:00", "2027-06-06T02:00:00+00:00"),  # the same second as the stored newest
    ("2027-06-06T10:00:01+08:00", "2027-06-06T10:00:01+08:00"),  # newer than it: its own time
])
def test_the_too_late_message_names_the_stored_newest_on_a_tie_else_the_event(cancel_at: str, newest: str):
    """A cancel of an order folded beyond the horizon is too late whatever its time; the message's reference
    is the newer of the stored newest event and the event, the stored one on a tie (as ``max`` picked)."""
    store: dict[str, bytes] = {}
    p = processor(horizon=timedelta(days=400))
    placed = {"event_id": "e1", "customer_id": "c1", "occurred_at": "2026-05-01T02:00:00+00:00", "type": "order",
              "order_id": "o1", "status": "placed", "amount": "10"}
    batches = [[placed], [login("e2", "2027-06-06T02:00:00+00:00")],  # 401 days on: o1 is folded
               [{**placed, "event_id": "e3", "status": "cancelled", "occurred_at": cancel_at}]]
    for i, batch in enumerate(batches):
        out = p.process([rec(i, e) for e in batch], lambda c, _: store.get(c), NOW + timedelta(days=500))
        store.update({c: data for c, (_, data) in out.state_writes.items()})
    [dead] = out.dead_letters
    assert dead.reason == "too_late"
    assert dead.detail.endswith(f"before the customer's newest event {newest}")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_fold_exactly_as_the_replay_whatever_the_offsets(seed: int):
    """Random events of three customers over 500 days, with offsets from -12:00 to +14:00, sub-second times,
    duplicates and events far behind the newest (some beyond a 200-day horizon): the batch core, in batches
    of 7, ends with the states and outcome counts of the replay's fold. The replay takes the horizon reference
    as datetimes (``CustomerState.horizon_start``), the batch core in integer microseconds; both fold with
    ``apply_micros`` (compared with the datetime arithmetic by the tests above)."""
    rng = random.Random(seed)
    horizon = timedelta(days=200)  # above the state's minimum retention (100 days): the horizon sets it
    base = NOW - timedelta(days=510)  # all in the past of the wall clock
    events: list[dict] = []
    for i in range(400):
        at = base + timedelta(seconds=rng.randrange(0, 500 * 86_400), microseconds=rng.randrange(0, 1_000_000))
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
    counts: Counter[str] = Counter()
    records = [rec(i, e) for i, e in enumerate(events)]
    for i in range(0, len(records), 7):
        out = p.process(records[i : i + 7], lambda c, _: store.get(c), NOW)
        store.update({c: data for c, (_, data) in out.state_writes.items()})
        for (_, outcome), n in out.counts.items():
            counts[outcome] += n
        assert all(d.reason == "too_late" for d in out.dead_letters)

    stats = ReplayStats()
    replayed = fold_states([parse_event(orjson.dumps(e), NOW, SKEW) for e in events], horizon, stats=stats)
    assert counts["dead_letter"] > 0 and counts["duplicate"] > 0  # both paths were taken
    assert +counts == +Counter({**stats.outcomes, "dead_letter": stats.outcomes["too_late"], "too_late": 0})

    def folded(state: CustomerState) -> bytes:
        state.tiers = {}  # decisions: only the stream makes them
        return state.to_bytes()

    assert sorted(store) == sorted(replayed)
    for cid, data in store.items():
        assert folded(CustomerState.from_bytes(data)) == folded(replayed[cid]), cid
