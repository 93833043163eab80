"""``streams.batch.encode_change`` (a tier change's wire form, one per change) writes exactly the bytes of
``orjson.dumps(change.model_dump(mode="json", by_alias=True))``: on its orjson fast path for every value
orjson takes, and through pydantic for the rest (session 19). The CRM's contract is these bytes; a
re-emitted change must be byte-identical to the first one."""

from __future__ import annotations

import dataclasses
import enum
import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from pydantic_core import TzInfo

from schemas.outputs import TierChangeEvent
from streams.batch import encode_change


def _pydantic(change: TierChangeEvent) -> bytes:
    return orjson.dumps(change.model_dump(mode="json", by_alias=True))


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class _Detail:
    """orjson writes a dataclass's __dict__ (no _private field, plus attributes set later), pydantic its fields."""

    a: int
    _private: int

    def __post_init__(self) -> None:
        self.later = 9


_ZONES = [UTC, TzInfo(0), TzInfo(-7200), timezone(timedelta(hours=5, minutes=30)), ZoneInfo("Europe/London"),
          # offsets with seconds: orjson rounds them to the minute, pydantic truncates (left to pydantic)
          timezone(timedelta(hours=1, seconds=30)), ZoneInfo("Europe/Amsterdam")]
_TEXT = ["gold", "é", "a\"b\\", "\x00\x1f", "😀", ""]


def _float(rnd: random.Random) -> float:
    return rnd.choice([0.0, -0.0, 1.0, 1e16, 1e22, 1e-7, float("nan"), float("inf"),
                       round(rnd.uniform(-1e6, 1e6), rnd.randint(0, 6)),
                       rnd.uniform(0, 1) * 10.0 ** rnd.randint(-30, 30)])


def _time(rnd: random.Random) -> datetime:
    return datetime(rnd.choice([1900, 2025]), rnd.randint(1, 12), rnd.randint(1, 28), rnd.randrange(24),
                    rnd.randrange(60), rnd.randrange(60), rnd.choice([0, 1, 500000, rnd.randrange(10**6)]),
                    tzinfo=rnd.choice(_ZONES))


def _value(rnd: random.Random, depth: int, odd: bool) -> Any:
    """A JSON-like explanation value; ``odd`` adds values orjson refuses or pydantic converts."""
    kinds = ["str", "float", "int", "bool", "none", "datetime", "date"]
    if depth < 3:
        kinds += ["dict", "list", "tuple"]
    if odd:
        kinds += ["decimal", "set", "intkey", "timedelta", "enum", "dataclass", "naive"]
    kind = rnd.choice(kinds)
    if kind == "str":
        return rnd.choice(_TEXT)
    if kind == "float":
        return _float(rnd)
    if kind == "int":
        return rnd.choice([0, -1, 7, 2**62])
    if kind == "bool":
        return rnd.random() < 0.5
    if kind == "none":
        return None
    if kind == "datetime":
        return _time(rnd)
    if kind == "date":
        return date(2025, 1, rnd.randint(1, 28))
    if kind == "dict":
        return {rnd.choice(_TEXT) + str(i): _value(rnd, depth + 1, odd) for i in range(rnd.randrange(4))}
    if kind in ("list", "tuple"):
        items = [_value(rnd, depth + 1, odd) for _ in range(rnd.randrange(4))]
        return items if kind == "list" else tuple(items)
    if kind == "dataclass":
        return _Detail(1, 2)
    if kind == "naive":
        return datetime(2025, 1, 2, 3, 4, 5, rnd.choice([0, 7]))
    if kind == "decimal":
        return Decimal(rnd.choice(["1.50", "1E+2", "-0.000001"]))
    if kind == "set":
        return {1}
    if kind == "intkey":
        return {1: "x"}
    if kind == "timedelta":
        return timedelta(days=1, seconds=5)
    return Colour.RED


def _change(rnd: random.Random, odd: bool = False, **fixed: Any) -> TierChangeEvent:
    values: dict[str, Any] = {
        "change_id": "0ad0b3364650a83a0b64093ae7bd004f", "customer_id": rnd.choice(_TEXT) + "c1",
        "policy": "size_class", "policy_version": rnd.choice([0, 3]), "from": rnd.choice([None, "small"]),
        "to": rnd.choice(_TEXT) + "x", "direction": rnd.choice(["up", "down", "new"]),
        "cause": rnd.choice(["event", "decay"]), "score": rnd.choice([None, _float(rnd)]),
        "sequence": rnd.randint(1, 10**6), "event_id": rnd.choice([None, "e-1"]), "effective_at": _time(rnd),
        "decided_at": _time(rnd),
        "explanation": {"policy": "p", "detail": _value(rnd, 0, odd), "lifecycle": {"held_tier": "small"}},
    }
    values.update(fixed)
    return TierChangeEvent.model_validate(values)  # NaN and infinity scores included: the field takes them


def test_fast_path_equals_pydantic_on_random_changes() -> None:
    rnd = random.Random(19)
    for _ in range(5_000):
        change = _change(rnd)
        assert encode_change(change) == _pydantic(change), change


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_values_orjson_refuses_go_through_pydantic() -> None:
    rnd = random.Random(8)
    for _ in range(2_000):
        change = _change(rnd, odd=True)
        assert encode_change(change) == _pydantic(change), change


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # pydantic's own, on the int key
@pytest.mark.parametrize("explanation", [
    {"amount": Decimal("12.50")},  # pydantic writes a Decimal as text; orjson refuses it
    {1: "int key"},
    {"tags": {"a"}},
    {"window": timedelta(days=30)},
])
def test_each_refused_value(explanation: dict[Any, Any]) -> None:
    change = _change(random.Random(1)).model_copy(update={"explanation": explanation})
    assert encode_change(change) == _pydantic(change)


def test_an_int_beyond_64_bits_is_refused_as_before() -> None:
    # pydantic leaves it an int and orjson refuses it: the old pipeline raised too
    change = _change(random.Random(3)).model_copy(update={"explanation": {"n": 2**70}})
    with pytest.raises(TypeError):
        _pydantic(change)
    with pytest.raises(TypeError):
        encode_change(change)


class _Change(TierChangeEvent):
    extra: int = 1


def test_a_subclass_is_left_to_pydantic() -> None:
    change = _change(random.Random(4), effective_at=datetime(2025, 3, 1, tzinfo=UTC),
                     decided_at=datetime(2025, 3, 2, tzinfo=UTC), explanation={"policy": "p"})
    assert encode_change(change) == _pydantic(change)
    sub = _Change.model_validate(change.model_dump(by_alias=True))
    assert encode_change(sub) == _pydantic(sub)
    assert b'"extra":1' in encode_change(sub)


@pytest.mark.parametrize("update", [{"sequence": True}, {"policy_version": False}])
def test_a_bool_in_an_int_field_is_written_as_pydantic_writes_it(update: dict[str, Any]) -> None:
    change = _change(random.Random(5), effective_at=datetime(2025, 3, 1, tzinfo=UTC),
                     explanation={"policy": "p"}).model_copy(update=update)
    assert encode_change(change) == _pydantic(change)


def test_an_int_score_is_written_as_pydantic_writes_it() -> None:
    # model_construct-like paths do not coerce: an int in the float field is pydantic's to write
    change = _change(random.Random(2)).model_copy(update={"score": 2**60})
    assert encode_change(change) == _pydantic(change)
