"""Writer of the Redis read model, used by the stream worker on its hot path.

:class:`ReadModelWriter` turns a batch of :class:`~schemas.readmodel.TierRecord` into one pipelined batch
of EVALSHA calls of the version-guarded upsert (``lua.py``), and a batch of tier changes
(:class:`~schemas.outputs.TierChangeEvent`) into one pipeline of ledger writes (``write_changes``). It
never raises on Redis failure: what could not be written waits in a pending map (newest record per
(customer, policy); each distinct ledger entry once) that a background task retries with exponential
backoff and jitter until Redis answers again. Records and ledger entries share that one mechanism
(:meth:`ReadModelWriter._submit`, the retry loop, :meth:`ReadModelWriter._drain`).

The tier ledger (``{p}ledger:{customer}:{policy}``, see ``keys.py``) is a sorted set scored by
``effective_at``; the member is the canonical JSON of the change's :class:`~schemas.readmodel.LedgerEntry`,
so a replayed or re-delivered change adds nothing. Each write trims the set to the newest
:data:`~tierstream.readmodel.keys.LEDGER_MAX` entries: the read model answers "what tier when" for recent
history; older history stays on the tier-changes topic (``tierstream resync --ledger`` re-reads it).

Invariants:
- no update is lost while the process lives: a record leaves the pending map only after Redis ran the
  upsert for it (or for a newer record of the same key);
- nothing goes back in time: the script refuses versions not greater than the stored one, so retries,
  replays, a pending map flushed late, or two workers during a rebalance are all safe in any order;
- when Redis comes back with a different ``run_id`` (it restarted, maybe empty: the shared Redis keeps
  nothing on disk), the writer rebuilds the read model from ``resync_source`` (the worker's table state),
  so Redis converges to the table state, not only to the updates made during the outage. (The ledger is
  not in the table state: after such a restart it holds the changes since; ``tierstream resync --ledger``
  rebuilds the rest from the tier-changes topic.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    DataError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.retry import Retry

from schemas.outputs import TierChangeEvent
from schemas.readmodel import TierRecord
from streams.metrics import REDIS_PENDING, REDIS_WRITE_FAILURES, REDIS_WRITE_SECONDS
from tierstream.readmodel import codec
from tierstream.readmodel.keys import LEDGER_MAX, Keys
from tierstream.readmodel.lua import LEDGER_LUA, LEDGER_SHA, UPSERT_LUA, UPSERT_SHA

log = logging.getLogger(__name__)

#: Whole-batch failures: Redis unreachable, timed out, connection dropped. Retried later.
_TRANSIENT = (RedisError, OSError, TimeoutError)
#: Per-command replies that mean "Redis cannot take writes right now" (failover, loading, memory): retried.
_RETRYABLE_REPLIES = (NoScriptError, ReadOnlyError, BusyLoadingError, MasterDownError, OutOfMemoryError, TryAgainError)

#: Customers per call of the upsert and ledger scripts: fewer calls cost less client CPU (each command is
#: packed and its reply parsed: ~20 µs per call with redis-py's pipeline, bench/bench_redis_write.py), but a
#: script blocks Redis while it runs, so a call is bounded to keep other clients' (the API's) latency low.
CUSTOMERS_PER_CALL = 100

RecordSource = AsyncIterable[TierRecord] | Iterable[TierRecord]
ChangeSource = AsyncIterable[TierChangeEvent] | Iterable[TierChangeEvent]
PendingKey = tuple[str, str]
T = TypeVar("T")
G = TypeVar("G")  # one customer's writes as a script call takes them


class LedgerWrite(NamedTuple):
    """One ledger entry ready for Redis: its sorted set (customer, policy), member bytes and score."""

    customer_id: str
    policy: str
    member: bytes  # canonical JSON: identical for a re-delivered change
    score: float  # effective_at, epoch seconds

    @classmethod
    def of(cls, change: TierChangeEvent) -> LedgerWrite:
        """The ledger write of one tier change."""
        # the same bytes as encode_entry(ledger_entry(change)) (tests/integration/test_ledger.py checks a
        # re-delivered change stores nothing new), without validating an entry model per change
        return cls(change.customer_id, change.policy, codec.encode_entry(change), change.effective_at.timestamp())


class RecordWrite(NamedTuple):
    """One read-model record ready for Redis: its key (customer, policy), the fields the upsert script
    guards and counts on, and its stored value. Built where the record is decided (streams.encoded), so the
    worker's process neither unpickles nor encodes a model per record."""

    customer_id: str
    policy: str
    version: int  # per-customer sequence: the script refuses a version not greater than the stored one
    tier: str
    value: bytes  # codec.encode(record)

    @classmethod
    def of(cls, record: TierRecord) -> RecordWrite:
        """The write of one record."""
        return cls(record.customer_id, record.policy, record.version, record.tier, codec.encode(record))


def pack_command(*args: str | bytes | bytearray | memoryview | int | float) -> bytes:
    """One Redis command in the protocol (RESP) as redis-py's encoder sends it with the writer's client
    (UTF-8): ``str`` as UTF-8, bytes-like as they are, ``int`` and ``float`` as their ``repr``. Anything else
    (a ``bool`` included) raises redis-py's ``DataError``, as its encoder does."""
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, (bytearray, memoryview)):
            data = bytes(arg)
        elif isinstance(arg, (int, float)) and not isinstance(arg, bool):
            data = repr(arg).encode()
        else:
            raise DataError(f"cannot send {type(arg).__name__} to Redis: {arg!r}")
        append(b"$%d\r\n" % len(data))
        append(data)
        append(b"\r\n")
    return b"".join(parts)


#: Pending-map key of a ledger write: (customer, policy, member); equal keys are equal writes.
ChangeKey = tuple[str, str, bytes]


@dataclass(frozen=True, slots=True)
class ResyncResult:
    """Outcome of :meth:`ReadModelWriter.resync`: records sent, stored (newer than Redis) and skipped."""

    total: int
    applied: int
    skipped: int


class ReadModelWriter:
    """Version-guarded, pipelined, outage-tolerant writer of ``{prefix}tier:*`` hashes, tier counts and the
    tier ledger.

    Use: ``await start()`` once, ``await write(records)`` and ``await write_changes(changes)`` per processed
    batch, ``await stop()`` at shutdown. ``resync_source`` (optional) returns the worker's current records;
    it is called after Redis restarted.
    """

    def __init__(
        self,
        redis_url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "ts:",
        *,
        client: Redis | None = None,
        resync_source: Callable[[], RecordSource] | None = None,
        batch_size: int = 500,
        retry_base_seconds: float = 0.05,
        retry_max_seconds: float = 5.0,
        max_pending: int | None = None,
        socket_timeout_seconds: float = 2.0,
    ) -> None:
        """``client`` overrides ``redis_url`` (the caller then owns and closes it). ``max_pending`` bounds the
        pending map (default: unbounded, i.e. bounded by the distinct (customer, policy) keys); beyond it new
        keys are dropped and :attr:`overflowed` tells the worker to resync once Redis is back. It bounds the
        pending ledger entries too (separately); those beyond it are dropped and counted in
        :attr:`ledger_dropped` (the tier-changes topic still has them)."""
        self._owns_client = client is None
        # retry=0: a dropped connection (e.g. Redis restarted) must surface here, not be retried silently
        # inside redis-py, so that the writer notices the restart and resyncs; our own loop does retries.
        self._client: Redis = client or Redis.from_url(
            redis_url,
            socket_timeout=socket_timeout_seconds,
            socket_connect_timeout=socket_timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )
        self._keys = Keys(prefix)
        self._resync_source = resync_source
        self._batch_size = batch_size
        self._retry_base = retry_base_seconds
        self._retry_max = retry_max_seconds
        self._max_pending = max_pending
        self._pending: dict[PendingKey, RecordWrite] = {}
        self._pending_changes: dict[ChangeKey, LedgerWrite] = {}
        self._failures = 0  # consecutive failed attempts; drives the backoff
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._run_id: str | None = None  # Redis server identity last seen; a change means a restart
        self._resync_needed = False
        self._restart_check_needed = False  # set by any failure: after recovery, compare run_id
        self.overflowed = False
        self.ledger_dropped = 0

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> ReadModelWriter:
        """A writer for ``settings.redis_url`` / ``settings.redis_prefix``; ``kwargs`` as in the constructor."""
        return cls(settings.redis_url, settings.redis_prefix, **kwargs)

    @property
    def pending(self) -> int:
        """Number of writes waiting for Redis: (customer, policy) records plus ledger entries."""
        return len(self._pending) + len(self._pending_changes)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the script and remember the server identity if Redis is up; start the retry task.

        Never raises on Redis failure (the worker must start while Redis is down)."""
        try:
            await self._client.script_load(UPSERT_LUA)
            await self._client.script_load(LEDGER_LUA)
            self._run_id = await self._server_run_id()
        except _TRANSIENT as exc:
            log.warning("Redis read model unavailable at start (%s); updates will be buffered", exc)
            self._resync_needed = self._resync_source is not None
            self._on_failure(exc)  # so that write() buffers at once instead of waiting for a timeout
        self._ensure_task()

    async def stop(self, flush_timeout_seconds: float = 5.0) -> None:
        """Stop retrying, flush what is pending (best effort, bounded by the timeout) and close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.pending:
            try:
                await asyncio.wait_for(self._drain(), flush_timeout_seconds)
            except (TimeoutError, *_TRANSIENT) as exc:
                log.error("stopping with %d read-model updates not written: %s", self.pending, exc)
        if self._owns_client:
            await self._client.aclose()

    # ------------------------------------------------------------------ hot path

    async def write(self, records: Sequence[TierRecord]) -> None:
        """Upsert ``records`` in one pipeline. Never raises on Redis failure: failed records are kept
        (newest per key) and retried in the background. Records may come in any order and repeat."""
        await self.write_records([RecordWrite.of(r) for r in records])

    async def write_records(self, writes: Sequence[RecordWrite]) -> None:
        """:meth:`write` of records already encoded (``RecordWrite.of``; streams.encoded)."""
        if writes:
            await self._submit(writes, self._send, self._merge)

    async def write_changes(self, changes: Sequence[TierChangeEvent]) -> None:
        """Add ``changes`` to their customers' tier ledgers in one pipeline (ZADD, trim to the newest
        :data:`LEDGER_MAX`, index the policy). Idempotent: a change written again (replay, re-delivery)
        stores nothing new. Never raises on Redis failure: entries are kept and retried like records."""
        await self.write_ledger([LedgerWrite.of(c) for c in changes])

    async def write_ledger(self, writes: Sequence[LedgerWrite]) -> None:
        """:meth:`write_changes` of changes already encoded (``LedgerWrite.of``; streams.encoded)."""
        if writes:
            await self._submit(writes, self._send_changes, self._merge_changes)

    async def _submit(
        self,
        items: Sequence[T],
        send: Callable[[Sequence[T]], Awaitable[list[T]]],
        merge: Callable[[Iterable[T]], None],
    ) -> None:
        """The one hot-path write policy, for records and ledger entries: send now, or buffer in the pending
        map (``merge``) for the retry task when Redis is failing, and never raise on Redis failure."""
        self._ensure_task()
        if self.pending or self._failures:
            # Redis is (or just was) failing: buffer without I/O so the worker's batch never waits for
            # timeouts; the retry task flushes in order-independent fashion (version guard, idempotent ZADD).
            merge(items)
            return
        try:
            retry = await send(items)
        except asyncio.CancelledError:
            merge(items)  # a cancelled batch may be half-sent: keep it, replays are harmless
            raise
        except _TRANSIENT as exc:
            self._on_failure(exc)
            merge(items)
            return
        if retry:
            REDIS_WRITE_FAILURES.inc()
            merge(retry)

    # ------------------------------------------------------------------ resync

    async def resync(self, records: RecordSource) -> ResyncResult:
        """Write every record of ``records`` (sync or async iterable) in pipelines of ``batch_size``.

        Rebuilds the read model from worker state: missing or older entries are replaced, newer ones kept.
        Unlike :meth:`write`, raises the Redis error if Redis fails (callers are tools and the retry task)."""

        async def flush(chunk: list[TierRecord]) -> int:
            stored, retry = await self._send_counted([RecordWrite.of(r) for r in chunk])
            if retry:
                self._merge(retry)
            return stored

        return await self._in_chunks(records, flush)

    async def resync_ledger(self, changes: ChangeSource) -> ResyncResult:
        """Add every change of ``changes`` (e.g. the tier-changes topic from the beginning) to the ledgers,
        in pipelines of ``batch_size``; ``applied`` counts entries that were missing. Raises on Redis failure.

        Safe while workers run: adds are idempotent and each trims to the newest :data:`LEDGER_MAX`."""

        async def flush(chunk: list[TierChangeEvent]) -> int:
            stored, retry = await self._send_changes_counted([LedgerWrite.of(c) for c in chunk])
            if retry:
                self._merge_changes(retry)
            return stored

        return await self._in_chunks(changes, flush)

    async def _in_chunks(
        self, items: AsyncIterable[T] | Iterable[T], flush: Callable[[list[T]], Awaitable[int]]
    ) -> ResyncResult:
        """Feed ``items`` (sync or async) to ``flush`` in chunks of ``batch_size``; sum what it applied."""
        total = applied = 0
        chunk: list[T] = []
        if isinstance(items, AsyncIterable):
            async for item in items:
                chunk.append(item)
                if len(chunk) >= self._batch_size:
                    total, applied = total + len(chunk), applied + await flush(chunk)
                    chunk = []
        else:
            for item in items:
                chunk.append(item)
                if len(chunk) >= self._batch_size:
                    total, applied = total + len(chunk), applied + await flush(chunk)
                    chunk = []
        if chunk:
            total, applied = total + len(chunk), applied + await flush(chunk)
        return ResyncResult(total=total, applied=applied, skipped=total - applied)

    # ------------------------------------------------------------------ internals

    async def _send(self, records: Sequence[RecordWrite]) -> list[RecordWrite]:
        """Upsert ``records``; returns the ones to retry (retryable replies). Raises on connection failure."""
        return (await self._send_counted(records))[1]

    async def _send_counted(self, records: Sequence[RecordWrite]) -> tuple[int, list[RecordWrite]]:
        """One pipeline of EVALSHA calls of the upsert script, each with all records of up to
        :data:`CUSTOMERS_PER_CALL` customers (:meth:`_calls`). Returns (records stored, records to retry)."""
        groups: dict[str, list[RecordWrite]] = {}
        for r in records:
            groups.setdefault(r.customer_id, []).append(r)
        keys = self._keys

        def pack(call: Sequence[tuple[str, list[RecordWrite]]]) -> bytes:
            names: list[str] = [keys.meta]
            args: list[Any] = [f"{time.time():.6f}"]
            for customer_id, group in call:
                names.append(keys.tier(customer_id))
                names += [keys.counts(r.policy) for r in group]
                args.append(len(group))
                for r in group:
                    args += (r.policy, r.version, r.tier, r.value)
            return pack_command("EVALSHA", UPSERT_SHA, len(names), *names, *args)

        return await self._calls(list(groups.items()), pack, UPSERT_LUA, lambda group: group, "read-model write")

    async def _send_changes(self, changes: Sequence[LedgerWrite]) -> list[LedgerWrite]:
        """Write ledger entries; returns the ones to retry. Raises on connection failure."""
        return (await self._send_changes_counted(changes))[1]

    async def _send_changes_counted(self, changes: Sequence[LedgerWrite]) -> tuple[int, list[LedgerWrite]]:
        """One pipeline of EVALSHA calls of the ledger script, each with the entries of up to
        :data:`CUSTOMERS_PER_CALL` customers (:meth:`_calls`): per customer and policy ZADD of its entries,
        trim to the newest ``LEDGER_MAX``, SADD of the policy to the customer's ledger index. Returns (entries
        added, entries to retry).

        Each step is idempotent, so another writer interleaving (a rebalance) or a retry after a failure
        converges to the same sets."""
        groups: dict[str, dict[str, dict[bytes, LedgerWrite]]] = {}
        for change in changes:
            groups.setdefault(change.customer_id, {}).setdefault(change.policy, {})[change.member] = change
        keys = self._keys

        def pack(call: Sequence[tuple[str, dict[str, dict[bytes, LedgerWrite]]]]) -> bytes:
            names: list[str] = []
            args: list[Any] = [LEDGER_MAX]
            for customer_id, policies in call:
                names.append(keys.ledger_policies(customer_id))
                args.append(len(policies))
                for policy, entries in policies.items():
                    names.append(keys.ledger(customer_id, policy))
                    args += (policy, len(entries))
                    for member, c in entries.items():
                        args += (c.score, member)
            return pack_command("EVALSHA", LEDGER_SHA, len(names), *names, *args)

        def entries(policies: dict[str, dict[bytes, LedgerWrite]]) -> list[LedgerWrite]:
            return [c for by_member in policies.values() for c in by_member.values()]

        return await self._calls(list(groups.items()), pack, LEDGER_LUA, entries, "ledger write")

    async def _calls(
        self,
        items: list[tuple[str, G]],
        pack: Callable[[Sequence[tuple[str, G]]], bytes],
        script: str,
        writes: Callable[[G], list[T]],
        what: str,
    ) -> tuple[int, list[T]]:
        """Send ``items`` (customer, its writes) in one pipeline of script calls of up to
        :data:`CUSTOMERS_PER_CALL` customers each (``pack`` makes a call's command; the script returns how
        many writes it applied); returns (writes applied, writes to retry: ``writes`` of the customers whose
        call got a retryable reply). Raises on connection failure.

        On NOSCRIPT (the script cache emptied, e.g. by a Redis restart) the script is loaded once and the
        calls sent again. A call refused with an error (WRONGTYPE on one customer's key) has applied the
        writes before the failing one (Redis does not roll a script back): its customers are sent again one
        per call, so the scripts' guards (version, ZADD) refuse or ignore what was applied and only the
        failing customer's writes are lost. Permanent errors are logged, counted and dropped (retrying a
        WRONGTYPE forever would block nothing but would never succeed either); ``applied`` then does not
        count the writes applied by the failed call."""
        calls = [items[i:i + CUSTOMERS_PER_CALL] for i in range(0, len(items), CUSTOMERS_PER_CALL)]
        applied = 0
        retry: list[T] = []
        for attempt in range(3):
            commands = [pack(call) for call in calls]
            started = time.perf_counter()
            results = await self._pipeline(commands)
            REDIS_WRITE_SECONDS.observe(time.perf_counter() - started)
            self._on_success()
            again: list[Sequence[tuple[str, G]]] = []
            reload = False
            for call, result in zip(calls, results, strict=True):
                if isinstance(result, NoScriptError) and attempt == 0:
                    again.append(call)
                    reload = True
                elif isinstance(result, _RETRYABLE_REPLIES):
                    retry += [w for _, group in call for w in writes(group)]
                elif isinstance(result, ResponseError):
                    if len(call) > 1 and attempt < 2:
                        again += [[item] for item in call]  # isolate the customer whose key fails
                    else:
                        REDIS_WRITE_FAILURES.inc()
                        log.error("%s of %r refused: %s", what, call[0][0], result)
                else:
                    applied += int(result)
            if not again:
                break
            if reload:
                await self._client.script_load(script)
            calls = again
        return applied, retry

    async def _pipeline(self, commands: Sequence[bytes]) -> list[Any]:
        """Send ``commands`` (each from :func:`pack_command`) in one write on one pooled connection and read
        their replies, in order: what redis-py's ``pipeline(transaction=False).execute(raise_on_error=
        False)`` does, an error reply standing in the list as its exception. Raises on connection failure
        (the connection is then dropped, never returned to the pool half read).

        Why not redis-py's pipeline: it packs each argument in Python (an encoder call and a bytes join per
        argument), which was 11 % of the worker's own process with eleven presets (py-spy, session 13)."""
        if not commands:
            return []  # as redis-py's pipeline: no connection taken for nothing
        pool = self._client.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(b"".join(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # this command's error reply; the connection stays in step
                    replies.append(exc)
            return replies
        except BaseException:
            # redis-py disconnects on a failed read or write already; this covers anything else (a cancel
            # between the two), without waiting, and never replaces the exception being raised
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)

    def _merge_changes(self, changes: Iterable[LedgerWrite]) -> None:
        """Keep each distinct ledger entry once in the pending map and wake the retry task."""
        pending = self._pending_changes
        for change in changes:
            key = (change.customer_id, change.policy, change.member)
            if key not in pending and self._max_pending is not None and len(pending) >= self._max_pending:
                if not self.ledger_dropped:
                    log.error("ledger pending map full (%d entries): dropping entries; rebuild the ledger with "
                              "`tierstream resync --ledger` once Redis is back", self._max_pending)
                self.ledger_dropped += 1
                continue
            pending[key] = change
        REDIS_PENDING.set(self.pending)
        self._wake.set()

    def _merge(self, records: Iterable[RecordWrite]) -> None:
        """Keep the newest record per (customer, policy) in the pending map and wake the retry task."""
        pending = self._pending
        for record in records:
            key = (record.customer_id, record.policy)
            current = pending.get(key)
            if current is None:
                if self._max_pending is not None and len(pending) >= self._max_pending:
                    if not self.overflowed:
                        log.error("read-model pending map full (%d keys): resync needed", self._max_pending)
                    self.overflowed = True
                    self._resync_needed = self._resync_source is not None
                    continue
                pending[key] = record
            elif record.version >= current.version:
                pending[key] = record
        REDIS_PENDING.set(self.pending)
        self._wake.set()

    def _on_failure(self, exc: BaseException) -> None:
        self._failures += 1
        self._restart_check_needed = True
        self._wake.set()
        REDIS_WRITE_FAILURES.inc()
        log.warning("read-model write failed (attempt %d, %d pending): %s", self._failures, self.pending, exc)

    def _on_success(self) -> None:
        if self._failures:
            log.info("Redis read model reachable again after %d failed attempts", self._failures)
        self._failures = 0

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._retry_loop(), name="readmodel-retry")

    def _backoff(self) -> float:
        """Exponential backoff with jitter (half fixed, half random) so restarted workers do not stampede."""
        if self._failures == 0:
            return 0.0
        ceiling = min(self._retry_max, self._retry_base * 2 ** (self._failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _retry_loop(self) -> None:
        """Background task: flush the pending map and run restart resyncs until both are done; repeat."""
        while True:
            await self._wake.wait()
            if not self.pending and not self._resync_needed and not self._restart_check_needed:
                self._wake.clear()
                continue
            await asyncio.sleep(self._backoff())
            try:
                await self._drain()
                await self._check_restart()
            except _TRANSIENT as exc:
                self._on_failure(exc)

    async def _drain(self) -> None:
        """Write the pending maps (records, then ledger entries) in chunks; an entry leaves only if it was
        not replaced meanwhile (a ledger entry is never replaced: equal key, equal write)."""
        await self._drain_map(self._pending, self._send, self._merge)
        await self._drain_map(self._pending_changes, self._send_changes, self._merge_changes)

    async def _drain_map(
        self,
        pending: dict[Any, T],
        send: Callable[[Sequence[T]], Awaitable[list[T]]],
        merge: Callable[[Iterable[T]], None],
    ) -> None:
        while pending:
            batch = list(pending.items())[: self._batch_size]
            retry = await send([item for _, item in batch])
            for key, item in batch:
                if pending.get(key) is item:
                    del pending[key]
            if retry:
                merge(retry)
                raise RedisError(f"{len(retry)} read-model writes refused with a retryable reply")
            REDIS_PENDING.set(self.pending)

    async def _check_restart(self) -> None:
        """After recovery: if Redis is a different server run (restarted, maybe empty), resync from state."""
        run_id = await self._server_run_id()
        if run_id != self._run_id:
            if self._run_id is not None:
                log.warning("Redis restarted (run_id %s -> %s): resync from worker state", self._run_id, run_id)
            self._resync_needed = self._resync_source is not None
        if self._resync_needed and self._resync_source is not None:
            result = await self.resync(self._resync_source())
            log.info("read model resynced: %s", result)
            self.overflowed = False
        self._resync_needed = False
        self._restart_check_needed = False
        self._run_id = run_id

    async def _server_run_id(self) -> str | None:
        info = await self._client.info("server")
        return str(info.get("run_id")) if info else None
