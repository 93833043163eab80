"""Regression: records delivered while the worker's input queue is full are not lost.

When the raw source queue (``streams.source.RawSource``, ``TIERSTREAM_BATCH_MAX`` records) is full,
Faust's conductor hands the record to ``Topic.put``, which refused any channel not iterated with
``aiter()``; the record was lost in a task's exception ("Cannot put on Topic channel before aiter").
Found by a 229,431-event backlog run of bench/bench_throughput.py: records in the middle of a partition
came back through the offset guard's seek back, a partition's last ones never did (the worker stopped
at 229,242). Here a tiny queue and a backlog make the queue full all the time: every record must be
consumed once, with no seek back needed and no such error in the log.
"""

from __future__ import annotations

import orjson
import pytest

from tests.integration.test_pipeline import scrape, wait_for
from tierstream.kafka_io import ensure_topics, producer

pytestmark = pytest.mark.integration

EVENTS = 600


def test_records_delivered_to_a_full_queue_are_all_processed(stack, make_worker) -> None:
    worker = make_worker(batch_max="5")  # queue of 5 records: full whenever a batch is being processed
    ensure_topics(stack.broker_url, [*worker.topics.all_consumed(), *worker.topics.all_produced()], 4)
    prod = producer(stack.broker_url)
    for i in range(EVENTS):  # the backlog is there before the worker starts
        cid = f"c{i % 37}"
        prod.send(worker.topics.input("login"), key=cid.encode(), value=orjson.dumps(
            {"event_id": f"e{i}", "customer_id": cid, "occurred_at": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
             "type": "login"}))
    prod.flush()
    prod.close()
    worker.start()
    wait_for(lambda: scrape(worker, "tierstream_events_consumed_total") >= EVENTS, 90, "every event consumed")
    assert scrape(worker, "tierstream_events_consumed_total") == EVENTS
    assert scrape(worker, "tierstream_input_reseeks_total") == 0
    assert "Cannot put on Topic channel" not in worker.log()
