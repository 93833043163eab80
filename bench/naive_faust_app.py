"""Baseline (b) of ``bench_throughput``: the naive Faust design, one table write per event.

One agent per input topic; each event is decoded by Faust (JSON) and folded into a per-customer dict
aggregate (event counts per type, spend) that is written back with ``table[customer_id] = aggregate``:
one changelog record per event. Settings match ``streams.app.create_app`` (rocksdb store, at-least-once,
the short session timeout, ``producer_max_batch_size=1`` when ``NAIVE_EMBEDDED=1``, i.e. on Tansu, as our
worker by default), so the comparison isolates the design (per-event Faust stream + table write vs. our
batches), not the config.

Run by the harness as a child process: ``python bench/naive_faust_app.py`` with ``NAIVE_BROKER``,
``NAIVE_PREFIX`` (topic prefix), ``NAIVE_APP_ID``, ``NAIVE_DATA_DIR``, ``NAIVE_WEB_PORT``, ``NAIVE_PARTITIONS``
and ``NAIVE_EMBEDDED``. ``GET /count`` answers ``{"n": events, "first": unix time, "last": unix time}``.
"""

from __future__ import annotations

import logging
import os
import time
from decimal import Decimal
from typing import Any

import faust
import faust.web

EVENT_TYPES = ("order", "payment", "login", "ticket", "profile")  # mirrors schemas.events.EVENT_TYPES


def build_app() -> faust.App:
    """The naive app: agents and table registered, not started."""
    prefix = os.environ["NAIVE_PREFIX"]
    partitions = int(os.environ.get("NAIVE_PARTITIONS", "4"))
    extra: dict[str, object] = {}
    if os.environ.get("NAIVE_EMBEDDED") == "1":
        # Same Tansu work-around as our worker (streams/app.py): every record its own producer batch, so
        # the naive table's changelog also pays one batch per write.
        extra["producer_max_batch_size"] = 1
    app = faust.App(
        os.environ["NAIVE_APP_ID"],
        broker=os.environ["NAIVE_BROKER"],
        store="rocksdb://",
        datadir=os.environ["NAIVE_DATA_DIR"],
        topic_partitions=partitions,
        processing_guarantee="at_least_once",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_port=int(os.environ["NAIVE_WEB_PORT"]),
        web_host="127.0.0.1",
        web_in_thread=False,
        table_standby_replicas=0,
        topic_allow_declare=True,
        **extra,
    )
    table = app.Table("naive-agg", default=dict, partitions=partitions)  # JSON: the app default codec
    stats: dict[str, float] = {"n": 0, "first": 0.0, "last": 0.0}

    def fold(event: dict[str, Any]) -> None:
        # The per-event work of the naive design: read the aggregate, update it, write it back (one
        # changelog record per event). Decimal keeps money exact as our state does.
        cid = event.get("customer_id") or "?"
        agg = dict(table[cid])
        kind = event.get("type", "?")
        agg[kind] = agg.get(kind, 0) + 1
        if kind == "order" and event.get("status") == "placed":
            agg["spend"] = str(Decimal(agg.get("spend", "0")) + Decimal(event.get("amount", "0")))
        agg["last"] = event.get("occurred_at")
        table[cid] = agg
        now = time.time()
        if not stats["n"]:
            stats["first"] = now
        stats["n"] += 1
        stats["last"] = now

    for kind in EVENT_TYPES:
        topic = app.topic(f"{prefix}events.{kind}", key_type=bytes, value_serializer="json")

        async def agent(stream: faust.StreamT) -> None:
            async for event in stream:
                fold(event)

        app.agent(topic, name=f"naive-{kind}")(agent)

    @app.page("/count")
    async def _count(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.json(stats)

    for noisy in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return app


def main() -> None:
    """Run the app as a Faust worker until SIGTERM."""
    app = build_app()
    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
