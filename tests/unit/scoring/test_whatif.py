"""What-if migrations (scoring.whatif): hand-computed matrices, stored tiers, different ladders, the guard."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from schemas.events import EVENT_ADAPTER
from scoring.policy import CompiledPolicy, load_policy
from scoring.state import CustomerState
from scoring.whatif import Migration, Mover, evaluation_time, migration, rollout_guard

T0 = datetime(2026, 3, 1, tzinfo=UTC)
# spend_lifetime of each customer (one order each) and the tiers the two spend policies give:
#            current (gold >= 1000, silver >= 100)   new (gold >= 500, silver >= 200)
# c1    50   bronze                                  bronze
# c2   150   silver                                  bronze   (down)
# c3   600   silver                                  gold     (up)
# c4  1200   gold                                    gold
# c5   300   silver                                  silver
SPEND = {"c1": 50, "c2": 150, "c3": 600, "c4": 1200, "c5": 300}


def write_policy(tmp_path: Path, name: str, text: str) -> CompiledPolicy:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return load_policy(path)


def spend_policy(tmp_path: Path, version: int, gold: int, silver: int, feature: str = "spend_lifetime"
                 ) -> CompiledPolicy:
    return write_policy(tmp_path, f"spend_v{version}_{feature}", f"""
        id: spend
        version: {version}
        tiers: [gold, silver, bronze]
        score: {{feature: {feature}}}
        tier:
          bands:
            bands:
              - {{tier: gold, ge: {gold}}}
              - {{tier: silver, ge: {silver}, lt: {gold}}}
            default: bronze
        """)


@pytest.fixture
def current(tmp_path: Path) -> CompiledPolicy:
    return spend_policy(tmp_path, 1, 1000, 100)


@pytest.fixture
def new(tmp_path: Path) -> CompiledPolicy:
    return spend_policy(tmp_path, 2, 500, 200)


def state(cid: str, amount: float, at: datetime = T0) -> CustomerState:
    s = CustomerState.new(cid)
    event = EVENT_ADAPTER.validate_python({
        "type": "order", "event_id": f"{cid}-1", "customer_id": cid, "occurred_at": at.isoformat(),
        "order_id": f"{cid}-o1", "status": "placed", "amount": str(amount),
    })
    assert s.apply(event, s.horizon_start(timedelta(days=400), at)) == "applied"
    return s


def states() -> list[CustomerState]:
    return [state(cid, amount) for cid, amount in SPEND.items()]


def test_matrix_movers_and_share_against_a_current_policy(current, new) -> None:
    m = migration(reversed(states()), new, current, T0)  # input order does not matter
    assert (m.policy, m.version, m.against, m.at) == ("spend", 2, "spend v1", T0)
    assert m.rows == ("gold", "silver", "bronze") and m.columns == ("gold", "silver", "bronze")
    assert m.counts == (
        (1, 0, 0),  # gold: c4 stays
        (1, 1, 1),  # silver: c3 -> gold, c5 stays, c2 -> bronze
        (0, 0, 1),  # bronze: c1 stays
    )
    assert m.movers == (
        Mover("c2", "silver", "bronze", 150.0, 150.0),
        Mover("c3", "silver", "gold", 600.0, 600.0),
    )
    assert (m.customers, m.compared, m.changed, m.unassigned, m.skipped) == (5, 5, 2, 0, 0)
    assert m.share_changed == pytest.approx(0.4)
    assert (m.upgrades, m.downgrades) == (1, 1)
    assert m.row_totals() == (1, 3, 1) and m.column_totals() == (2, 1, 2)
    assert m.count("silver", "gold") == 1 and m.count("platinum", "gold") == 0
    doc = orjson.loads(orjson.dumps(m.to_dict(movers_limit=1)))
    assert doc["matrix"] == [[1, 0, 0], [1, 1, 1], [0, 0, 1]]
    assert doc["movers_total"] == 2 and [mv["customer_id"] for mv in doc["movers"]] == ["c2"]
    assert doc["share_changed"] == pytest.approx(0.4)


def test_same_policy_moves_nobody(current) -> None:
    m = migration(states(), current, current, T0)
    assert m.movers == () and m.share_changed == 0.0
    assert sum(m.counts[i][i] for i in range(3)) == 5


def test_stored_tiers_are_the_current_tiers_without_a_current_policy(new) -> None:
    ss = states()
    ss[0].tiers["spend"] = {"tier": "bronze", "pv": 1, "score": 50.0}        # c1 stays bronze
    ss[1].tiers["spend"] = {"tier": "gold", "pv": 1, "score": 150.0}         # c2 held gold (e.g. a grace) -> bronze
    ss[2].tiers["spend"] = {"tier": "platinum", "pv": 1, "score": None}      # c3 a tier v2 no longer has -> gold
    ss[3].tiers["spend"] = {"tier": "gold", "pv": 1, "score": 1200.0}        # c4 stays gold
    ss[3].tiers["other"] = {"tier": "bronze"}                                # another policy's record: ignored
    # c5: no record for "spend" -> no current tier (counted, not a mover)
    m = migration(ss, new, None, T0)
    assert m.against == "stored tiers"
    assert m.rows == ("gold", "silver", "bronze", "platinum", None)
    assert m.counts == (
        (1, 0, 1),  # gold: c4 stays, c2 -> bronze
        (0, 0, 0),
        (0, 0, 1),  # c1
        (1, 0, 0),  # platinum: c3 -> gold
        (0, 1, 0),  # no tier: c5 -> silver
    )
    assert [(mv.customer_id, mv.from_tier, mv.to_tier, mv.from_score) for mv in m.movers] == [
        ("c2", "gold", "bronze", 150.0), ("c3", "platinum", "gold", None)]
    assert (m.customers, m.unassigned, m.compared, m.changed) == (5, 1, 4, 2)
    assert m.share_changed == pytest.approx(0.5)
    # up/down only within the new ladder: platinum is not on it
    assert (m.upgrades, m.downgrades) == (0, 1)
    assert m.to_dict()["rows"][-1] == "(none)"


def test_different_tier_sets_rows_follow_current_columns_follow_new(tmp_path, new) -> None:
    rules = write_policy(tmp_path, "hilo", """
        id: hilo
        version: 1
        tiers: [hi, lo]
        tier:
          rules:
            - tier: hi
              when: {feature: spend_lifetime, op: ">=", value: 300}
            - tier: lo
        """)
    m = migration(states(), new, rules, T0)
    assert m.rows == ("hi", "lo") and m.columns == ("gold", "silver", "bronze")
    # hi: c3 (gold), c4 (gold), c5 (silver); lo: c1, c2 (bronze)
    assert m.counts == ((2, 1, 0), (0, 0, 2))
    assert m.changed == 5 and m.share_changed == 1.0  # no name is shared: everyone "moves"
    assert (m.upgrades, m.downgrades) == (0, 0)
    assert m.movers[0].score == 50.0 and m.movers[0].from_score is None  # rule-only current: no score


def test_evaluation_time_and_default_at(tmp_path) -> None:
    # a 12-month window makes the evaluation time visible: the order counts 30 days later, not 400
    p12_old = spend_policy(tmp_path, 1, 1000, 100, feature="spend_12m")
    p12_new = spend_policy(tmp_path, 2, 500, 200, feature="spend_12m")
    recent, old, empty = state("r", 600), state("o", 600), CustomerState.new("e")
    old.tiers["~"] = {"at": (T0 + timedelta(days=400)).isoformat(), "due": None}
    assert evaluation_time(recent) == T0 and evaluation_time(old) == T0 + timedelta(days=400)
    assert evaluation_time(empty) is None
    m = migration([recent, old, empty], p12_new, p12_old, None)
    assert m.skipped == 1 and m.customers == 2 and m.at is None
    assert m.count("silver", "gold") == 1  # r at T0: 600 -> silver under v1, gold under v2
    assert m.count("bronze", "bronze") == 1  # o at its bookkeeping time: spend_12m = 0
    # an explicit at applies to everyone (the empty state too)
    m = migration([recent, old, empty], p12_new, p12_old, T0 + timedelta(days=30))
    assert m.skipped == 0 and m.count("silver", "gold") == 2 and m.count("bronze", "bronze") == 1


def test_percentile_policies_rank_against_the_given_population(tmp_path, current) -> None:
    top = write_policy(tmp_path, "pct", """
        id: pct
        version: 1
        tiers: [top, rest]
        score: {feature: spend_lifetime}
        tier:
          percentile:
            bands:
              - {tier: top, top_percent: 20}
            default: rest
            histogram_low: 0
            histogram_high: 2000
            histogram_bins: 2000
        """)
    assert top.needs_population
    # scores within replay's population histogram (0..100): 10, 30, 50, 70, 90
    small = [state(f"p{i}", 10 + 20 * i) for i in range(5)]
    m = migration(iter(small), top, current, T0)  # a one-shot iterator: both passes need the views kept
    # 20% of 5 customers: only p4 (90) is top; without the second pass everyone would be "rest"
    assert m.count("bronze", "top") == 1 and m.count("bronze", "rest") == 4
    assert [mv.customer_id for mv in m.movers] == ["p0", "p1", "p2", "p3", "p4"]  # different ladders
    # as the current policy too: the ranking applies on both sides
    m = migration(small, current, top, T0)
    assert m.rows == ("top", "rest") and m.count("top", "bronze") == 1 and m.count("rest", "bronze") == 4


def test_rollout_guard_refuses_above_the_share_and_passes_with_force(current, new) -> None:
    m = migration(states(), new, current, T0)  # 2 of 5 change: 40%
    ok, reason = rollout_guard(m, 0.2, force=False)
    assert not ok and "2 of 5" in reason and "40.0%" in reason and "refusing" in reason
    ok, reason = rollout_guard(m, 0.2, force=True)
    assert ok and "forced" in reason
    assert rollout_guard(m, 0.4, force=False)[0]  # exactly at the limit passes ("more than" refuses)
    assert rollout_guard(m, 0.39, force=False)[0] is False
    with pytest.raises(ValueError):
        rollout_guard(m, 1.5, force=False)


def test_rollout_guard_with_nothing_to_compare_passes(new) -> None:
    m = migration(states(), new, None, T0)  # no stored records: nobody has a current tier
    assert m.unassigned == 5 and m.compared == 0 and m.movers == ()
    ok, reason = rollout_guard(m, 0.0, force=False)
    assert ok and "nothing" in reason


def test_empty_input() -> None:
    m = Migration("p", 1, "stored tiers", None, (), ("a",), (), (), 0, 0, 0, 0, 0)
    assert m.share_changed == 0.0 and m.column_totals() == (0,)
