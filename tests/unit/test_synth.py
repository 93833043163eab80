"""The synthetic generator: deterministic, valid, with duplicates, late events, invalid lines and skew."""

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from schemas.events import InvalidEvent, parse_event
from tierstream.cli import main
from tierstream.synth import generate_events

END = datetime(2026, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def events():
    return generate_events(120, 11, end=END)


def test_deterministic_same_seed_same_list_other_seed_differs(events):
    assert generate_events(120, 11, end=END) == events
    assert generate_events(120, 12, end=END) != events


def test_cli_file_is_byte_identical(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (a, b):
        assert main(["generate", "--customers", "20", "--seed", "5", "--out", str(path),
                     "--start", "2025-01-01T00:00:00Z", "--end", "2026-01-01T00:00:00Z"]) == 0
    assert a.read_bytes() == b.read_bytes() and a.stat().st_size > 0


def test_every_event_is_valid_and_within_the_span(events):
    kinds = Counter()
    for e in events:
        parsed = parse_event(orjson.dumps(e), END, timedelta(0))
        assert END - timedelta(days=731) <= parsed.occurred_at <= END
        kinds[e["type"]] += 1
        if "amount" in e:
            assert len(e["amount"].split(".")[1]) <= 2
    assert set(kinds) == {"order", "payment", "login", "ticket", "profile"}
    statuses = Counter(e.get("status") for e in events)
    assert statuses["refunded"] and statuses["cancelled"] and statuses["failed"] and statuses["written_off"]


def test_duplicate_share_is_at_least_requested_and_exact(events):
    ids = Counter(e["event_id"] for e in events)
    dup = sum(n - 1 for n in ids.values())
    assert dup >= 0.05 * (len(events) - dup)
    first = {}
    for e in events:
        if e["event_id"] in first:
            assert first[e["event_id"]] == e  # same body
        first.setdefault(e["event_id"], e)


def test_shuffled_within_lateness_and_key_skew(events):
    times = [datetime.fromisoformat(e["occurred_at"]) for e in events]
    out_of_order = sum(1 for a, b in itertools.pairwise(times) if b < a)
    assert out_of_order > 0
    running = times[0]
    for t in times:
        running = max(running, t)
        assert running - t <= timedelta(days=3, hours=1)
    per = sorted(Counter(e["customer_id"] for e in events).values())
    assert per[-1] > 5 * per[len(per) // 2]  # a few heavy customers, a long tail


def test_archetypes_present(events):
    kinds = {e["attributes"].get("kind") for e in events if e["type"] == "profile" and e.get("attributes")}
    assert {"group", "person", "enterprise"} <= kinds
    assert any("key_person_role" in (e.get("attributes") or {}) for e in events)
    assert any("contract_plan" in (e.get("attributes") or {}) for e in events)


def test_invalid_share():
    evs = generate_events(10, 3, end=END, invalid=0.05)
    bad = 0
    for e in evs:
        try:
            parse_event(orjson.dumps(e), END, timedelta(0))
        except InvalidEvent:
            bad += 1
    assert bad > 0
