"""``codec.encode`` (the read model's Redis value, written per policy per decision) gives exactly pydantic's
``model_dump_json`` bytes, and ``codec.encode_keyed`` (the snapshot record's value) exactly
``orjson.dumps(model_dump(mode="json"))``, on their orjson fast path and on the values they leave to pydantic.

Regression guard for session 19's fast path: a field added to ``TierRecord``, a datetime or float written
differently, or a value type the fast path does not check would change what Redis stores and what the API
reads back."""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from pydantic_core import TzInfo

from schemas.readmodel import RoutingHints, TierRecord
from streams.decide import _unchecked_record
from tierstream.readmodel import codec


def _pydantic(record: TierRecord) -> bytes:
    return record.model_dump_json(exclude={"customer_id", "policy"}).encode()


_AWARE = {"since": datetime(2025, 3, 1, 12, 30, tzinfo=UTC), "updated_at": datetime(2026, 1, 1, 1, tzinfo=UTC)}


def _keyed(record: TierRecord) -> bytes:
    # the snapshot record's value as streams.encoded wrote it before session 19
    return orjson.dumps(record.model_dump(mode="json"))


def _float(rnd: random.Random) -> float:
    kind = rnd.randrange(4)
    if kind == 0:  # any finite double, every exponent
        while True:
            value: float = struct.unpack("d", struct.pack("Q", rnd.getrandbits(64)))[0]
            if value == value and abs(value) != float("inf"):
                return value
    if kind == 1:  # what scores look like: a few decimals
        return round(rnd.uniform(-1e6, 1e6), rnd.randint(0, 8))
    if kind == 2:  # whole numbers as floats, around the exponent-notation thresholds
        return float(rnd.choice([0, 1, 100, 10**15, 10**16, 10**17, 10**21, 10**22, 2**53]))
    return rnd.uniform(0, 1) * 10.0 ** rnd.randint(-30, 30)


_ZONES = [UTC, timezone(timedelta(0)), TzInfo(0), TzInfo(3600), timezone(timedelta(hours=-5, minutes=-30)),
          timezone(timedelta(hours=5, minutes=45)),
          # offsets with seconds: orjson rounds them to the minute, pydantic truncates (left to pydantic)
          timezone(timedelta(hours=1, seconds=30)), timezone(-timedelta(minutes=19, seconds=32)),
          ZoneInfo("Europe/Amsterdam"), None]


def _time(rnd: random.Random) -> datetime:
    micro = rnd.choice([0, 1, 120000, 999999, rnd.randrange(1_000_000)])
    return datetime(rnd.choice([1, 1900, 2025, 9999, rnd.randint(1, 9999)]), rnd.randint(1, 12), rnd.randint(1, 28),
                    rnd.randrange(24),
                    rnd.randrange(60), rnd.randrange(60), micro, tzinfo=rnd.choice(_ZONES))


_TEXT = ["gold", "Platinum Club", "é-tier", "a\"b\\c", "tab\there", "nl\nx", "\x00\x1f\x7f", "\u2028", "😀", "/"]


def _values(rnd: random.Random, **fixed: Any) -> dict[str, Any]:
    values = {
        "policy_version": rnd.choice([0, 1, 7, 2**40]),
        "tier": rnd.choice(_TEXT),
        "scored_tier": rnd.choice([None, *_TEXT]),
        "score": rnd.choice([None, _float(rnd)]),
        "since": _time(rnd),
        "override": None,
        "version": rnd.randrange(10**9),
        "sequence": rnd.choice([None, 0, rnd.randrange(10**6)]),
        "change_id": rnd.choice([None, "0123456789abcdef0123456789abcdef"]),
        "updated_at": _time(rnd),
        "routing": RoutingHints(**rnd.choice([
            {}, {"queue": "vip"},
            {"queue": rnd.choice(_TEXT), "priority": 3, "response_time_target_seconds": abs(_float(rnd))}])),
        "customer_id": "c-1",
        "policy": "five_tier",
    }
    values.update(fixed)
    return values


def test_fast_path_equals_pydantic_on_random_records() -> None:
    rnd = random.Random(19)
    for _ in range(20_000):
        values = _values(rnd)
        # both ways the worker builds records: validated, and unchecked (streams.decide, no validation)
        built = _unchecked_record(values)
        assert codec.encode(built) == _pydantic(built), values
        assert codec.encode_keyed(built) == _keyed(built), values
        if values["since"].tzinfo is None or values["updated_at"].tzinfo is None:
            continue  # the model takes aware times only
        validated = TierRecord(**values)
        assert codec.encode(validated) == _pydantic(validated), values
        assert codec.encode_keyed(validated) == _keyed(validated), values


@pytest.mark.parametrize("fixed", [
    {"score": 100},  # an int score: pydantic writes its own float text (1.152921504606847e+18 for 2**60)
    {"score": 2**60},
    {"score": True},
    {"override": {"kind": "pin", "tier": "gold", "until": None, "x": 1.5, "n": 2**60}},
    {"override": {}},
    {"version": True},  # a bool in an int field (unchecked records): pydantic writes 1
    {"sequence": False},
    {"policy_version": True},
    {"version": 2**64},  # beyond 64 bits: orjson refuses it, pydantic writes it
    {"sequence": -(2**63) - 1},
    {"since": datetime(1900, 1, 1, tzinfo=ZoneInfo("Europe/Amsterdam"))},  # local mean time, +00:19:32
    {"updated_at": datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=1, seconds=30)))},
])
def test_values_left_to_pydantic_encode_as_pydantic_does(fixed: dict[str, Any]) -> None:
    rnd = random.Random(7)
    for _ in range(50):
        record = _unchecked_record(_values(rnd, **fixed))
        assert codec.encode(record) == _pydantic(record)
        try:
            expected = _keyed(record)
        except TypeError:  # orjson refused pydantic's dump of it (an int beyond 64 bits): so does encode_keyed
            with pytest.raises(TypeError):
                codec.encode_keyed(record)
        else:
            assert codec.encode_keyed(record) == expected


class _Hints(RoutingHints):
    extra_field: int = 5


class _Record(TierRecord):
    pass


def test_subclasses_are_left_to_pydantic() -> None:
    # a RoutingHints subclass's extra field is not in pydantic's output (it serializes the declared schema)
    record = _unchecked_record(_values(random.Random(3), routing=_Hints(queue="x")))
    assert b"extra_field" not in codec.encode(record)
    assert codec.encode(record) == _pydantic(record)
    assert codec.encode_keyed(record) == _keyed(record)
    sub = _Record(**_values(random.Random(4), **_AWARE))
    assert codec.encode(sub) == _pydantic(sub)
    assert codec.encode_keyed(sub) == _keyed(sub)


def test_fields_are_the_records_fields() -> None:
    # the fast path writes a fixed field list: a field added to TierRecord must be added there too
    record = TierRecord(**_values(random.Random(1), **_AWARE))
    assert list(orjson.loads(codec.encode(record))) == [
        name for name in TierRecord.model_fields if name not in ("customer_id", "policy")]
    assert list(orjson.loads(codec.encode_keyed(record))) == list(TierRecord.model_fields)


def test_routing_json_is_per_object_not_per_id() -> None:
    # the cache is keyed by id(); an id reused by a new object after the old one died must not serve the old
    # object's JSON
    first = RoutingHints(queue="a")
    record = TierRecord(**_values(random.Random(2), routing=first, **_AWARE))
    assert b'"queue":"a"' in codec.encode(record)
    second = RoutingHints(queue="b")
    codec._ROUTING_JSON[id(second)] = (first, codec._ROUTING_JSON[id(first)][1])  # a stale entry under second's id
    record = TierRecord(**_values(random.Random(2), routing=second, **_AWARE))
    assert b'"queue":"b"' in codec.encode(record)


def test_the_value_holds_no_spare_buffer() -> None:
    # orjson's output buffer starts at 4 kB and is never shrunk (orjson#483): a batch holds tens of thousands
    # of values, so each must be copied to its own size
    import tracemalloc

    hints = RoutingHints(queue="vip")
    records = [TierRecord(**_values(random.Random(i), routing=hints, **_AWARE)) for i in range(200)]
    codec.encode(records[0])  # the routing cache's entry is made before measuring
    tracemalloc.start()
    try:
        values = [codec.encode(r) for r in records]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(values) == 200 and held < 200 * 1024  # ~0.4 kB a value; 4 kB each without the copy
