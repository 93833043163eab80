"""The Faust application: broker, store and consumer settings, and the customer-state table.

Built from :class:`tierstream.settings.Settings` and nothing else, apart from ``main``: the topology
(agents) is attached by :func:`streams.topology.build_topology`, so tests can build an app without
starting it.

Why these settings (measured, see BROKER-NOTES.md):
- ``processing_guarantee="at_least_once"``: Faust's exactly-once mode needs broker transactions (absent on
  Tansu, buggy upstream); every effect of the worker is idempotent instead.
- session timeout / heartbeat: group join takes half the session timeout; the 60 s default makes a worker
  need ~30 s to get partitions. 6 s / 1 s joins in ~3 s and tolerates handlers that block briefly.
- embedded broker only: Tansu answers list-offsets wrongly, which corrupts changelog recovery unless
  every record is its own producer batch (``producer_max_batch_size=1``, the broker notes' work-around).
  :mod:`streams.tansu` corrects the answer for Faust's recovery instead (the default;
  ``TIERSTREAM_EMBEDDED_OFFSET_CORRECTION=0`` restores the work-around), so producers batch as on Kafka
  and the worker produces in bulk (:mod:`streams.bulk`): 1.6-1.9 x the throughput, and the tests run the
  production path. It was opt-in after session 3, when the kill -9 test lost records in 2 of its last
  11 runs with it; that test then stopped waiting on "nothing changed for 3 s" (a long recovery also
  satisfies it), waits until the group has committed every input record, and passed 20 of 20 runs with
  the correction (docs/performance.md, session 4).
- ``topic_partitions``: Faust's internal topics must match the inputs or agents crash with
  PartitionsMismatch.
- :func:`streams.consumer_positions.guard_positions`: Faust seeks from the app's thread while aiokafka
  consumes in its own; without it a seek racing a fetch result is lost (a partition can then stand
  behind its end).
"""

from __future__ import annotations

import logging

import faust

from streams.consumer_positions import guard_positions
from streams.faust_patches import (
    deliver_every_record,
    deliver_without_tasks,
    disable_gap_commits,
    track_end_offsets_per_fetch,
    tune_fetch_wait,
)
from tierstream.settings import Settings

STATE_TABLE = "customer-state"
ROLLOUT_TABLE = "rollout-progress"


def create_app(settings: Settings) -> faust.App:
    """A configured (not started) Faust app with the customer-state table registered as ``app.state``."""
    tune_fetch_wait(settings.fetch_max_wait_ms)
    disable_gap_commits()
    deliver_every_record()
    deliver_without_tasks()
    guard_positions()
    track_end_offsets_per_fetch()
    extra: dict[str, object] = {}
    if settings.embedded_broker:
        if settings.embedded_offset_correction:
            from streams import tansu
            from tierstream.kafka_io import bootstrap

            tansu.install(bootstrap(settings.broker))
        else:
            extra["producer_max_batch_size"] = 1
    if settings.instance_id:
        extra["consumer_group_instance_id"] = settings.instance_id
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee="at_least_once",
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_in_thread=False,
        table_standby_replicas=0,
        topic_allow_declare=True,
        **extra,
    )
    # Customer state as opaque bytes (scoring.state owns the encoding, orjson): the raw codec keeps
    # Faust from re-encoding on every write. Batch processing sets Faust's current event per customer
    # (streams.worker.event_context), so reads and writes go to that record's partition store and
    # changelog partition; the worker checks every input record's partition against murmur2 of its
    # customer_id (streams.partitioning), so a customer's state always lives on one partition.
    app.state_table = app.Table(  # type: ignore[attr-defined]
        STATE_TABLE,
        default=None,
        key_type=bytes,  # bytes key/value types make Faust use the raw codec
        value_type=bytes,
        partitions=settings.partitions,
    )
    # Per partition and policy, the policy version whose rollout is complete there (streams.rollout): lets
    # a worker that gets a partition skip the full scan when nothing changed. Keys name the partition, so
    # the memory store (one dict for all partitions) keeps them apart too.
    app.rollout_table = app.Table(  # type: ignore[attr-defined]
        ROLLOUT_TABLE,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
    )
    # Faust sets the root logger to DEBUG even with -l warn; keep third-party noise out of our logs.
    for noisy in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return app
