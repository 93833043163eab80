"""The batch core without a broker: routing, dead letters, re-emission after a crash, decay, shadow
policies and admin commands (streams/batch.py, streams/decide.py).

Expectations by hand from five_tier (see tests/integration/test_pipeline.py for the ladder).
"""

from __future__ import annotations

import pathlib
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from scoring.policy import load_policies
from streams.batch import BatchProcessor, InRecord
from streams.partitioning import partition_for
from streams.topics import Topics

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TOPICS = Topics("t.")


def processor(shadows=()) -> BatchProcessor:
    return BatchProcessor(load_policies(["five_tier"]), TOPICS, 4, timedelta(minutes=5), timedelta(days=1100),
                          shadows=shadows)


def rec(offset: int, event: dict, *, key: bytes | str | None = "auto", partition: int | None = None,
        topic: str | None = None) -> InRecord:
    cid = event.get("customer_id", "c1").encode()
    return InRecord(
        topic or TOPICS.input(event.get("type", "order")),
        partition if partition is not None else partition_for(cid, 4),
        offset,
        cid if key == "auto" else key,
        orjson.dumps(event),
        NOW.timestamp(),
    )


def order(eid: str, amount: str, days_before: float = 1, cid: str = "c1") -> dict:
    return {"event_id": eid, "customer_id": cid, "occurred_at": (NOW - timedelta(days=days_before)).isoformat(),
            "type": "order", "order_id": f"o-{eid}", "status": "placed", "amount": amount}


class Store(dict):
    def load(self, customer_id: str, partition: int) -> bytes | None:
        return self.get(customer_id)

    def save(self, out) -> None:
        for customer_id, (_, data) in out.state_writes.items():
            self[customer_id] = data


def test_bad_records_are_dead_lettered_with_reasons_and_the_rest_processed():
    store = Store()
    login_on_order_topic = rec(2, {"event_id": "l", "customer_id": "c1", "occurred_at": NOW.isoformat(),
                                   "type": "login"}, topic=TOPICS.input("order"))
    out = processor().process(
        [rec(0, order("e1", "100")), InRecord(TOPICS.input("order"), 0, 1, b"c1", b"{nope"), login_on_order_topic],
        store.load, NOW)
    assert [(d.reason, d.record.offset) for d in out.dead_letters] == [("invalid_json", 1), ("wrong_topic", 2)]
    assert out.dead_letters[0].record.value == b"{nope"
    assert [c.to_tier for c in out.tier_changes] == ["bronze"]


def test_mis_keyed_records_go_to_the_repartition_topic_unchanged():
    event = order("e1", "100")
    wrong_partition = (partition_for(b"c1", 4) + 1) % 4
    out = processor().process([rec(0, event, key=None), rec(1, event, partition=wrong_partition)], Store().load, NOW)
    assert out.repartition == [(b"c1", orjson.dumps(event))] * 2
    assert not out.state_writes and not out.tier_changes


def test_replayed_event_re_emits_the_stored_change_with_the_same_id():
    # state first: the state (with the decision) reached the changelog, the outputs may not have.
    store = Store()
    first = processor().process([rec(0, order("e1", "6000000"))], store.load, NOW)
    store.save(first)
    again = processor().process([rec(0, order("e1", "6000000"))], store.load, NOW + timedelta(seconds=5))
    assert again.counts == {("order", "duplicate"): 1}
    assert [c.change_id for c in again.tier_changes] == [c.change_id for c in first.tier_changes]
    assert again.tier_changes[0].decided_at == first.tier_changes[0].decided_at  # byte-identical decision


def test_replay_after_kill_9_re_emits_every_recent_step_not_only_the_last():
    # Regression (kill -9 test: sequences 1 and 3 on the topic, 2 missing): two batches decided changes 1
    # and 2 for c1, the store kept the second batch's state, neither batch's outputs left, and both
    # batches' events are re-delivered. Every stored step whose event is replayed goes out again, in order.
    # order_volume (no lifecycle): 4 orders of 3,000 units -> B (more than 3 orders, over 10K); 2 more of
    # 50,000 -> A (more than 5 orders, over 100K).
    volume = BatchProcessor(load_policies(["order_volume"]), TOPICS, 4, timedelta(minutes=5), timedelta(days=1100))

    def orders(first: int, n: int, quantity: int) -> list[InRecord]:
        return [rec(i, order(f"e{i}", "10", days_before=2 - i / 10) | {"quantity": quantity})
                for i in range(first, first + n)]

    store = Store()
    batch1, batch2 = orders(0, 4, 3000), orders(4, 2, 50000)
    first = volume.process(batch1, store.load, NOW)
    store.save(first)
    second = volume.process(batch2, store.load, NOW)
    store.save(second)
    lost = [*first.tier_changes, *second.tier_changes]
    assert [(c.sequence, c.from_tier, c.to_tier) for c in lost] == [(1, None, "B"), (2, "B", "A")]
    again = volume.process([*batch1, *batch2], store.load, NOW + timedelta(seconds=5))
    assert again.counts == {("order", "duplicate"): 6}
    assert [(c.sequence, c.change_id) for c in again.tier_changes] == [(c.sequence, c.change_id) for c in lost]


def test_replayed_events_rewrite_the_stored_decisions_read_model_records():
    # Regression (kill -9 test: a customer's Redis tier stayed one decision behind its state, bronze while
    # the oracle said silver): the store kept a batch's state, the worker died before the Redis write, and
    # the re-delivered events are duplicates, so no new decision writes Redis. The replay must carry the
    # stored decision's records, with the stored version (Redis refuses it if it has it already).
    volume = BatchProcessor(load_policies(["order_volume"]), TOPICS, 4, timedelta(minutes=5), timedelta(days=1100))
    batch = [rec(i, order(f"e{i}", "10", days_before=2 - i / 10) | {"quantity": 3000}) for i in range(4)]
    store = Store()
    first = volume.process(batch, store.load, NOW)
    store.save(first)
    assert [(r.tier, r.version) for r in first.read_model] == [("B", 1)]
    again = volume.process(batch, store.load, NOW + timedelta(seconds=5))
    assert again.counts == {("order", "duplicate"): 4}
    assert [(r.customer_id, r.policy, r.tier, r.version, r.sequence) for r in again.read_model] == [
        (r.customer_id, r.policy, r.tier, r.version, r.sequence) for r in first.read_model]


def test_decay_is_a_pure_function_of_state_and_due_time():
    # 6 orders on the 6 days up to 2025-05-02: the first feature to move with time alone is the oldest
    # active day (2025-04-27) leaving the 30-day activity window at 2025-05-27 00:00 UTC (whole UTC days)
    store = Store()
    events = [rec(i, order(f"e{i}", "200000", days_before=400 - i)) for i in range(6)]
    out = processor().process(events, store.load, NOW)
    store.save(out)
    partition, due = out.due["c1"]
    assert due == datetime(2025, 5, 27, tzinfo=UTC)
    a = processor().decay([("c1", partition, due)], store.load, NOW)
    b = processor().decay([("c1", partition, due)], store.load, NOW + timedelta(hours=1))  # re-run later
    assert [(r.tier, r.score, r.version) for r in a.read_model] == [(r.tier, r.score, r.version) for r in b.read_model]
    assert a.due == b.due and a.due["c1"][1] > due
    assert [c.change_id for c in a.tier_changes] == [c.change_id for c in b.tier_changes]


def test_shadow_policy_differences_are_counted_not_emitted(tmp_path: pathlib.Path):
    v2 = pathlib.Path("scoring/presets/five_tier.yaml").read_text().replace("version: 1", "version: 2", 1)
    v2 = v2.replace("{tier: silver, gt: 40, le: 60}", "{tier: silver, gt: 10, le: 60}")
    path = tmp_path / "five_tier_v2.yaml"
    path.write_text(v2)
    # one order of 100: 10 (spend) + 5 (1 order) + 3 (1 day) + 2 (< 1 year) = 20 -> bronze live, silver in v2
    out = processor(load_policies([str(path)])).process([rec(0, order("e1", "100"))], Store().load, NOW)
    assert [c.to_tier for c in out.tier_changes] == ["bronze"]
    assert out.shadow == {("five_tier", "2", "bronze", "silver"): 1}
    assert out.shadow_evaluations == {("five_tier", "2"): 1}


@pytest.mark.parametrize("kind", ["pin", "floor", "ceiling"])
def test_admin_override_applies_and_is_audited(kind):
    store = Store()
    store.save(processor().process([rec(0, order("e1", "100"))], store.load, NOW))  # bronze (20)
    tier = {"pin": "gold", "floor": "silver", "ceiling": "bronze"}[kind]
    command = {"type": "set_override", "command_id": f"cmd-{kind}", "customer_id": "c1", "policy": "five_tier",
               "kind": kind, "tier": tier, "actor": "exec@example.com", "reason": "board decision"}
    out = processor().process([rec(1, command, topic=TOPICS.admin_commands)], store.load, NOW)
    assert [(a.command_id, a.accepted) for a in out.audit] == [(f"cmd-{kind}", True)]
    expected = {"pin": "gold", "floor": "silver", "ceiling": "bronze"}[kind]
    assert out.read_model[-1].tier == expected and out.read_model[-1].override["kind"] == kind
    assert out.read_model[-1].scored_tier == "bronze"  # the score keeps being computed underneath


def test_invalid_admin_command_is_dead_lettered_with_reason():
    out = processor().process([rec(0, {"type": "set_override", "customer_id": "c1"}, topic=TOPICS.admin_commands)],
                              Store().load, NOW)
    assert [d.reason for d in out.dead_letters] == ["invalid_command"]


def _mixed_batch(customers: int, per_customer: int) -> list[InRecord]:
    """Orders of ``customers`` customers interleaved, plus one admin command and two records routed away."""
    records = [rec(i * customers + c, order(f"e{c}-{i}", "100", days_before=1 + i / 10, cid=f"c{c}"))
               for i in range(per_customer) for c in range(customers)]
    command = {"type": "set_override", "command_id": "cmd-1", "customer_id": "c1", "policy": "five_tier",
               "kind": "pin", "tier": "gold", "actor": "exec@example.com", "reason": "board decision"}
    records.append(rec(len(records), command, topic=TOPICS.admin_commands))
    records.append(InRecord(TOPICS.input("order"), 0, len(records), b"c1", b"{nope"))
    records.append(rec(len(records), order("x", "5", cid="c2"), key=None))  # mis-keyed: repartitioned
    return records


def test_steps_yield_between_records_and_customers_and_decide_as_process_does():
    # 40 customers x 15 orders + 3 = 603 records; with no time allowed per step, a step ends every 64 records
    # routed (the clock is read that often) and after every customer decided
    records = _mixed_batch(40, 15)
    store = Store()
    store.save(processor().process(records[:40], store.load, NOW))  # some customers known, some not
    steps = processor().steps(records, store.load, NOW, step_seconds=0)
    yields = 0
    while True:
        try:
            next(steps)
            yields += 1
        except StopIteration as done:
            stepped = done.value
            break
    assert yields == len(records) // 64 + 40 == 49
    assert stepped == processor().process(records, store.load, NOW)
    assert len(stepped.state_writes) == 40 and stepped.audit and stepped.dead_letters and stepped.repartition
    # a step longer than the whole batch: no yield at all
    assert sum(1 for _ in processor().steps(records, store.load, NOW, step_seconds=60)) == 0


def test_read_ahead_reads_every_state_a_batch_needs_once_and_refuses_any_other():
    from streams.worker import read_ahead

    records = _mixed_batch(5, 3)
    records.append(InRecord(TOPICS.input("order"), 1, 99, b"\xff\xfe", b"{}"))  # not a customer id: skipped
    store = Store()
    store.save(processor().process(records[:5], store.load, NOW))
    reads: list[tuple[str, int]] = []

    def load(customer_id: str, partition: int) -> bytes | None:
        reads.append((customer_id, partition))
        return store.load(customer_id, partition)

    loaded = read_ahead(records, load)
    assert sorted(reads) == sorted({(f"c{c}", partition_for(f"c{c}".encode(), 4)) for c in range(5)}
                                   | {("c1", 0)})  # the unparsable record's key is read too (harmless)
    # the batch decides exactly as with the store itself, reading nothing more
    assert processor().process(records, loaded, NOW) == processor().process(records, store.load, NOW)
    assert len(reads) == 6
    with pytest.raises(LookupError, match="'c9' of partition 2 was not read"):
        loaded("c9", 2)
