"""Regression (session 6 kill -9 stalls, session 7 rollout CI failure): a partition whose newest record
the consumer skipped is sought again and the record applied.

A seek from Faust's thread can be overwritten by aiokafka's consumer thread (streams.stalls): the fetch
position then stands past records that were never handed over. In the middle of a partition the next
record reveals the hole (streams.offsets); at its tail nothing does. Here the fault injector
(tests/faults/sitecustomize.py) withholds the last of a customer's logins once while the position moves
past it, exactly that effect; the worker must notice the partition standing still behind its end, seek
it again and apply the login.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from tests.integration.test_pipeline import scrape, wait_for
from tierstream.kafka_io import ensure_topics, producer

pytestmark = pytest.mark.integration

LOGINS = 6
FAULTS = Path(__file__).resolve().parent.parent / "faults"


def test_a_record_lost_at_a_partition_tail_is_fetched_again(stack, make_worker) -> None:
    worker = make_worker(stall_check_seconds="0.5")
    topic = worker.topics.input("login")
    worker.env["TIERSTREAM_FAULT_LOSE_RECORD"] = f"{topic}:{LOGINS - 1}"
    worker.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAULTS), os.environ.get("PYTHONPATH")) if p)
    ensure_topics(stack.broker_url, [*worker.topics.all_consumed(), *worker.topics.all_produced()], 4)
    worker.start()
    prod = producer(stack.broker_url)

    def send(i: int) -> None:  # one customer: one partition, offsets 0..LOGINS-1
        prod.send(topic, key=b"c1", value=orjson.dumps(
            {"event_id": f"e{i}", "customer_id": "c1", "occurred_at": f"2026-01-01T00:00:0{i}Z", "type": "login"}))
        prod.flush()

    # The lost record comes once the others are applied: lost in the first fetches instead, a seek of the
    # worker's start-up (to the committed offsets) could fetch it again before the stall watch saw anything
    # (a CI run of session 11: every login applied, no stall seek logged).
    for i in range(LOGINS - 1):
        send(i)
    wait_for(lambda: scrape(worker, "tierstream_events_consumed_total") >= LOGINS - 1, 30, "the first logins applied")
    send(LOGINS - 1)
    prod.close()
    wait_for(lambda: scrape(worker, "tierstream_events_consumed_total") >= LOGINS, 30, "every login applied")
    log = worker.log()
    assert f"FAULT: lost {topic}" in log, "the fault was injected"
    assert "input partition stalled behind its end: seeking it again" in log
    assert scrape(worker, "tierstream_input_stalls_total") >= 1
    assert scrape(worker, "tierstream_events_consumed_total") == LOGINS
