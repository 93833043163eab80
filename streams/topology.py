"""The worker topology, built apart from ``main``: topics, the batch agent, lifecycle hooks and /metrics.

``build_worker(settings)`` returns a configured app and its :class:`~streams.worker.Worker`; nothing
connects until Faust starts the app. One task consumes every input topic plus the repartition topic in
batches beneath Faust's stream layer (:mod:`streams.source`) and hands each batch to ``Worker.handle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import faust
import faust.web
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import Message

from scoring import accel
from scoring.policy import CompiledPolicy, load_policies
from streams import metrics, pipeline
from streams.app import create_app
from streams.decision_process import DecisionPool, build_processor, fingerprint
from streams.rollout import Rollout
from streams.source import RawSource, ack_all, batches, behind
from streams.topics import Topics
from streams.worker import Worker
from tierstream.readmodel.writer import ReadModelWriter
from tierstream.settings import Settings

log = logging.getLogger("tierstream.topology")


def _initialize_series(policies: list[CompiledPolicy]) -> None:
    """Create every known label set at 0, so dashboards and alerts see a series before the first event of
    its kind (a labelled counter does not exist until incremented)."""
    for policy in policies:
        metrics.TIER_FLIP_FLOPS.labels(policy.id)
        metrics.POLICY_DECISIONS_ELIDED.labels(policy.id)
        metrics.ROLLOUT_BLOCKED.labels(policy.id, str(policy.version)).set(0)
        metrics.ROLLOUT_CHANGING_SHARE.labels(policy.id, str(policy.version)).set(0)
        metrics.PENDING_APPROVALS.labels(policy.id).set(0)
        for kind in ("TierChangeProposed", "ProposalClosed", "TierAtRisk"):
            metrics.TIER_NOTICES.labels(policy.id, kind)
        for kind in ("pin", "floor", "ceiling"):
            metrics.ACTIVE_OVERRIDES.labels(policy.id, kind).set(0)
    for command in ("set_override", "remove_override", "approve_proposal", "reject_proposal"):
        for accepted in ("true", "false"):
            metrics.ADMIN_COMMANDS.labels(command, accepted)


def build_worker(settings: Settings) -> tuple[faust.App, Worker]:
    """The app with its agent and hooks registered (not started)."""
    policies = load_policies(settings.policies)
    topics = Topics(settings.topic_prefix)
    app = create_app(settings)
    processor = build_processor(settings, policies)
    writer = ReadModelWriter.from_settings(settings)
    decisions = (DecisionPool(settings, settings.decision_processes, expect=fingerprint(processor))
                 if settings.decision_processes else None)
    worker = Worker(app, processor, topics, writer, bulk=settings.producer_batching, decisions=decisions)
    rollout = Rollout(worker, settings)
    # One batch's worth of records: the consumer refills it while the current batch is decided (the loop
    # runs between the batch's steps), so the next batch is ready when this one ends.
    source = RawSource(app, topics=topics.all_consumed(), key_serializer="raw", value_serializer="raw",
                       maxsize=settings.batch_max)
    app.topics.add(source)  # subscribe: the conductor delivers its partitions' messages to source.queue
    flow = app.flow_control
    queue = source.queue

    # streams.faust_patches.deliver_without_tasks: when a delivery cannot block now. Input records go
    # straight into the source's queue (RawSource is their only subscriber); other records (changelogs
    # during recovery) through the conductor, which waits for the producer buffer to drain.
    # Also while a batch is being decided (the loop runs between its steps): holding deliveries back until
    # the batch ended made the stall watch seek a partition after 3 of 6 kill -9 restarts under CPU
    # burners (1 of 6 delivering meanwhile), and the gain it was added for had been measured with the
    # harness's poll-timed drains, which session 9 found off by up to a batch.
    def can_receive() -> bool:
        return flow.is_active() and not queue.full()

    def can_deliver() -> bool:
        buffer = app.producer.buffer
        return flow.is_active() and buffer.size <= buffer.max_messages

    app.tierstream_can_deliver = can_deliver  # type: ignore[attr-defined]
    app.tierstream_direct = (frozenset(topics.all_consumed()), queue, can_receive)  # type: ignore[attr-defined]

    def ack(applied: Sequence[Message]) -> None:
        # Acked in batch order, right after the batch's tail (its outputs are on the broker by then): Faust
        # commits the first run of consecutive acked offsets, and for a partition without a commit it does
        # not check where that run starts. Not acked when a rebalance began meanwhile: Faust has forgotten
        # the partitions' acks, and the records come again to the partition's next owner
        # (streams.worker.Worker.epoch).
        if applied and worker.current(applied[0].generation_id):
            ack_all(applied, app.consumer)

    @app.task
    async def _process() -> None:
        try:
            # The batch's outputs are carried out (then its records acked) while the next batch is decided
            # (Worker.follow); while a backlog batch is decided, the next one is cut and prepared
            # (streams.pipeline).
            await pipeline.run(lambda deciding: batches(source, settings.batch_max, settings.batch_wait_seconds,
                                                        settings.batch_max_customers, fill=deciding),
                               worker, ack, behind)
        except asyncio.CancelledError:
            # Stopping: let the batch whose outputs are in flight finish them while the producer still
            # runs (its records are not acked: the app is stopping, so they come again after a restart).
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(worker.settle(), 10.0)
            raise
        except Exception as exc:
            # At-least-once: nothing of this batch was acked; crash so a supervisor restarts us and the
            # records are processed again, instead of carrying on past a batch we could not finish.
            log.exception("batch processing failed")
            await app.crash(exc)

    input_topics = set(topics.all_consumed())
    state = {"ready": False, "recount": None}

    @app.on_partitions_assigned.connect
    async def _assigned(sender: faust.App, assigned: set, **_: object) -> None:  # type: ignore[type-arg]
        metrics.REBALANCES.inc()
        worker.gate.clear()  # until this assignment's rollout is planned (streams.rollout)
        worker.assign({tp.partition for tp in assigned if tp.topic in input_topics})

    @app.on_rebalance_complete.connect
    async def _ready(sender: faust.App, **_: object) -> None:
        state["ready"] = True
        metrics.WORKER_READY.set(1)
        # Recount per-partition gauges and rebuild the decay schedule from the recovered store, in a
        # thread: the store is the truth after any rebalance or restart.
        state["recount"] = asyncio.ensure_future(_recover_schedule(app.rebalancing_count))

    async def _seek_to_commits() -> None:
        """Seek every input partition to its committed offset (0 without a commit) once the rebalance has
        ended (:func:`_rebalance_ended`).

        Not at ``on_rebalance_complete`` itself (sessions 3-7): then Faust had not read the commits yet,
        so every input partition was sought to 0 (traced in session 8: ``507 -> 0`` on this thread, then
        Faust's ``0 -> 507`` on the consumer's), and Faust's seek and flow resume still came after ours.

        Faust seeks to the committed offsets at the end of recovery, before flow resumes; records the
        consumer thread fetches in between are dropped (flow suspended), and the position stays past them.
        In the middle of a partition the offset guard sees the hole; at its tail no later record reveals
        it. aiokafka's ``seek_to_committed`` also skips partitions without a commit. Measured: the kill -9
        test lost the newest records (tickets, payments, profiles) of 70 to 118 customers in 5 of 13 runs
        while only uncommitted partitions, then none, were sought here. Records already queued come again
        and are dropped by the guard as applied.

        Faust's ``seek`` runs aiokafka's from this (the app's) thread while the aiokafka consumer runs in
        its own. Unguarded, a seek racing a fetch result was lost (the partition then stood still at its
        tail) and once in 12 kill -9 restarts the consumer thread crashed (``KeyError`` in
        ``Fetcher.fetched_records``); :mod:`streams.consumer_positions` makes both impossible. Seeking
        through ``seek_wait`` (in the consumer thread) instead made a commit stall in 1 of 5 runs
        (session 4, docs/performance.md), so seeks stay on this thread."""
        consumer = app.consumer
        generation = app.consumer_generation_id
        sought: dict[object, int] = {}
        for tp in consumer.assignment():
            if tp.topic in input_topics:
                offset = worker.start_offset(tp)
                try:
                    await consumer.seek(tp, offset)
                    sought[tp] = offset
                except Exception:
                    log.exception("seeking an input partition to its commit failed",
                                  extra={"topic": tp.topic, "partition": tp.partition})
        # Records queued since Faust resumed flow were fetched before these seeks (streams.offsets).
        worker.offsets.expect(generation, sought)

    async def _rebalance_ended(count: int) -> bool:
        """Wait until Faust has finished rebalance number ``count``: it signals ``on_rebalance_complete``
        before it seeks to the committed offsets and resumes flow, and only then ends the rebalance.
        False when another rebalance began or the app is stopping (that rebalance's signal takes over)."""
        while app.rebalancing and app.rebalancing_count == count and not app.should_stop:
            await asyncio.sleep(0.01)
        return app.rebalancing_count == count and not app.should_stop

    async def _recover_schedule(count: int) -> None:
        if not await _rebalance_ended(count):
            return
        await _seek_to_commits()
        items = list(app.state_table.data.items())
        try:
            await rollout.after_rebalance(items)
        except Exception:
            # The gate stays shut: better a paused worker (alert on lag) than one deciding with an
            # unchecked policy version.
            log.exception("planning the policy rollout failed")
        schedule = await worker.gauges.recount(items)
        async with worker.lock:
            for partition, customer_id, at, due in schedule:
                if partition in worker.owned:
                    worker.due.schedule(partition, customer_id, due)
                    if partition not in worker.watermarks or at > worker.watermarks[partition]:
                        worker.watermarks[partition] = at

    @app.timer(interval=1.0)
    async def _decay() -> None:
        if not app.should_stop:  # the producer may already be stopping
            await worker.run_due()

    @app.timer(interval=0.25)
    async def _rollout() -> None:
        if not app.should_stop:
            await rollout.step()

    @app.timer(interval=settings.stall_check_seconds)
    async def _stalls() -> None:
        # After a rebalance's seeks have run (ready), never during one: then partitions wait on purpose.
        if app.should_stop or not state["ready"] or app.rebalancing:
            return
        try:
            partitions = [tp for tp in app.consumer.assignment() if tp.topic in input_topics]
            await worker.unstall(partitions, source.queue.empty)
        except Exception:  # an exception in a Faust timer crashes the app
            log.exception("checking input partitions for stalls failed")

    @app.task
    async def _started() -> None:
        await writer.start()
        if decisions is not None:
            pids = await decisions.start()
            metrics.DECISION_PROCESSES.set(len(pids))
            log.info("decision processes started", extra={"pids": pids, "compiled_core": decisions.compiled})
            if not all(decisions.compiled):
                log.warning("a decision process runs the Python source, not the compiled build")
        metrics.WORKER_HEALTHY.set(1)
        core = accel.status()
        metrics.COMPILED_CORE.set(int(core.compiled))
        log.info("worker started", extra={"policies": [p.id for p in policies],
                                          "compiled_core": core.compiled or core.reason})
        if not core.compiled:
            log.warning("the hot path runs the Python source, not the compiled build: %s", core.reason)

    @app.timer(interval=5.0)
    async def _export_gauges() -> None:
        # An exception in a Faust timer crashes the app: a metric must never stop the worker.
        try:
            await _export()
        except Exception:
            log.exception("exporting gauges failed")

    async def _export() -> None:
        consumer = app.consumer
        highwaters: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            if tp.topic in input_topics:
                with contextlib.suppress(Exception):  # highwater unknown until the first fetch
                    highwaters[(tp.topic, tp.partition)] = consumer.highwater(tp)
                    if (tp.topic, tp.partition) not in worker.gauges.offsets:
                        position = await consumer.position(tp)
                        if position is not None:
                            worker.gauges.offsets[(tp.topic, tp.partition)] = position
        worker.gauges.export(highwaters)

    @app.on_before_shutdown.connect
    def _stopping(sender: faust.App, **_: object) -> None:
        state["ready"] = False
        if decisions is not None:
            decisions.stop()
            metrics.DECISION_PROCESSES.set(0)
        metrics.WORKER_READY.set(0)
        metrics.WORKER_HEALTHY.set(0)

    @app.page("/healthz")
    async def _healthz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def _readyz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        if rollout.refused:
            return web.json({"ready": False, "rollout_refused": rollout.refused}, status=503)
        ready = bool(state["ready"]) and not app.rebalancing
        return web.json({"ready": ready}, status=200 if ready else 503)

    for topic in topics.all_produced():
        app.topic(topic)  # declared on start, so consumers can subscribe before the first record
    _initialize_series(policies)
    setup_prometheus_sensors(app)
    app.tierstream_writer = writer  # type: ignore[attr-defined]
    app.tierstream_rollout = rollout  # type: ignore[attr-defined]
    return app, worker
