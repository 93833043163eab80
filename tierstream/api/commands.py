"""Publisher of admin commands (``schemas.admin``) from the API to the admin-commands topic.

The API does not apply commands: it validates one, produces it to ``Topics(prefix).admin_commands`` keyed
by ``customer_id`` (so it lands on the partition of the worker owning the customer's state; aiokafka's
default partitioner is Kafka's murmur2, as ``streams.partitioning`` expects) and answers 202. The worker
applies it and writes exactly one ``CommandResult`` to the admin-audit topic.

Availability: the API must serve lookups while the broker is down, so the producer is connected at start
when possible and otherwise (again) on the next admin request; a command that cannot be produced within
:data:`SEND_TIMEOUT_SECONDS` is answered 503 (:class:`PublishUnavailable`), never 500. A 503 after a
timeout does not prove the command was lost (the broker may still have it): clients retry with the same
``Idempotency-Key``, and the worker applies a repeated ``command_id`` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.admin import ApproveProposal, RejectProposal, RemoveOverride, SetOverride
from tierstream.kafka_io import bootstrap

log = logging.getLogger(__name__)

AdminCommand = SetOverride | RemoveOverride | ApproveProposal | RejectProposal

#: Longest an admin request waits for the broker to take a command (then 503).
SEND_TIMEOUT_SECONDS = 5.0
#: Longest the API waits to connect the producer (at start-up, or again on an admin request).
CONNECT_TIMEOUT_SECONDS = 3.0
#: After a failed connection, admin requests answer 503 at once for this long instead of each one waiting
#: for the broker again (a burst of requests during an outage must not pile up on connection attempts).
RECONNECT_BACKOFF_SECONDS = 1.0

_FAILURES = (KafkaError, OSError, TimeoutError)


class PublishUnavailable(Exception):
    """The command could not be handed to the broker (unreachable, timed out); the API answers 503."""


class CommandPublisher:
    """Produces validated admin commands to one topic; one producer shared by the process's requests."""

    def __init__(self, broker_url: str, topic: str, *, embedded_broker: bool = False) -> None:
        """``broker_url`` in Faust style (``kafka://host:port``); ``topic`` = the admin-commands topic."""
        self.topic = topic
        self._bootstrap = bootstrap(broker_url)
        self._embedded = embedded_broker
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._failed_at = float("-inf")  # monotonic time of the last failed connection

    async def start(self) -> None:
        """Connect if the broker answers; never raises (the API must start while the broker is down)."""
        with contextlib.suppress(PublishUnavailable):
            await self._connected()

    async def aclose(self) -> None:
        """Flush and close the producer, if connected."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(*_FAILURES):
                await producer.stop()

    async def publish(self, command: AdminCommand) -> None:
        """Produce ``command`` (JSON, keyed by its customer id) and wait for the broker's acknowledgement
        (acks=all). Raises :class:`PublishUnavailable` if that cannot happen within the timeout."""
        producer = await self._connected()
        value = command.model_dump_json().encode("utf-8")
        try:
            await asyncio.wait_for(
                producer.send_and_wait(self.topic, value=value, key=command.customer_id.encode("utf-8")),
                SEND_TIMEOUT_SECONDS,
            )
        except _FAILURES as exc:
            log.warning("admin command %s not produced: %s", command.command_id, exc)
            raise PublishUnavailable(str(exc) or type(exc).__name__) from exc

    async def _connected(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is not None:
                return self._producer
            if time.monotonic() - self._failed_at < RECONNECT_BACKOFF_SECONDS:
                raise PublishUnavailable("broker unreachable (recent connection attempt failed)")
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id="tierstream-api",
                acks="all",
                request_timeout_ms=int(SEND_TIMEOUT_SECONDS * 1000),
                # The embedded broker needs one record per producer batch (BROKER-NOTES.md), as the
                # worker's producer does with producer_max_batch_size=1.
                **({"max_batch_size": 1} if self._embedded else {}),
            )
            try:
                await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_SECONDS)
            except _FAILURES as exc:
                self._failed_at = time.monotonic()
                with contextlib.suppress(*_FAILURES):
                    await producer.stop()
                log.warning("admin command producer cannot connect to %s: %s", self._bootstrap, exc)
                raise PublishUnavailable(str(exc) or type(exc).__name__) from exc
            self._producer = producer
            return producer
