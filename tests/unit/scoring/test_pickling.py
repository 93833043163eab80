"""The value classes of the compiled core pickle, copy and deep-copy to equal values, in either build.

Regression (session 18 review): a mypyc class with its own ``__init__`` (the per-decision classes since
session 17) cannot be created empty, which is how the default pickle / copy protocol rebuilds an object, and a
compiled frozen dataclass refuses the protocol's field assignments; each raised ``TypeError`` or
``FrozenInstanceError`` in the compiled build only. Each class now reduces to its constructor and its fields;
these tests check that the fields given are all of them, in the constructor's order.

Nothing in the worker sends these objects between processes today (the decision pool ships tuples and
pydantic outputs), but tools, tests and future callers may, and must not see the build decide whether they can.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scoring.lifecycle.results import StepResult, TierChange
from scoring.lifecycle.track import Override, Pending, Proposal, TierTrack
from scoring.policy.compiled import Decision
from streams.batch import DeadLetter, InRecord
from streams.topics import Topics

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
T1 = T0 + timedelta(days=2)


def _samples() -> list[Any]:
    """One instance of each class, every field set to a value distinct from its default and its neighbours'."""
    override = Override("floor", "Gold", "agent-7", "complaint", T0, T1, "cmd-1")
    pending = Pending("down", "Silver", T0, T1, "grace", True, "Bronze")
    proposal = Proposal("prop-1", "Silver", "Gold", T0, T1, "score", "evt-9", 3)
    track = TierTrack(
        "cust-1", "Gold", T0, 4, "Gold", T1, "Silver", 71.5, (70.0, True, 65.0), pending, proposal, override,
        T1, T0, 2, 5, [(T0, "Gold", 4, "event")], ["cmd-1"],
    )
    change = TierChange(
        customer_id="cust-1", policy="five-tier", policy_version=3, from_tier="Silver", to_tier="Gold",
        direction="up", cause="event", sequence=4, effective_at=T0, event_id="evt-9", score=71.5,
        scored_tier="Gold", held_tier="Silver", override=override.view(), note={"why": "spend"},
    )
    record = InRecord("tierstream.events.order", 3, 1234, b"cust-1", b'{"x": 1}', 1_700_000_000.5)
    return [
        Decision("five-tier", 3, "Gold", 71.5, {"spend": 1200.0}, 2),
        override,
        pending,
        proposal,
        track,
        change,
        StepResult(track, (change,), (), (), (), None, 1),
        record,
        DeadLetter(record, "schema", "missing customer_id"),
        Topics("acme."),
    ]


def _field_values(value: Any) -> tuple[Any, ...]:
    if isinstance(value, Decision):
        return (value.policy, value.version, value.tier, value.score, value.explanation, value.entitlements)
    return tuple(getattr(value, f.name) for f in dataclasses.fields(value))


SAMPLES = _samples()
IDS = [type(s).__name__ for s in SAMPLES]


@pytest.mark.parametrize("value", SAMPLES, ids=IDS)
def test_reduces_to_its_constructor_and_every_field_in_order(value: Any) -> None:
    rebuild, args = value.__reduce__()
    assert rebuild is type(value)
    assert args == _field_values(value)


@pytest.mark.parametrize("value", SAMPLES, ids=IDS)
@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_pickles_and_copies_to_an_equal_value(value: Any, how: str) -> None:
    if how == "pickle":
        again = pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    elif how == "copy":
        again = copy.copy(value)
    else:
        again = copy.deepcopy(value)
    assert type(again) is type(value)
    assert _field_values(again) == _field_values(value)
    assert repr(again) == repr(value)
