"""Reader of the Redis read model, used by the HTTP API (stateless: any number of replicas).

Every lookup is one round trip: HGET / HGETALL for one customer, one pipeline for many. Reads go to the
primary the worker writes to; since the upsert script only ever replaces a value with a newer version, two
successive reads can never show a tier older than one already shown. (Reading from replicas would break
that guarantee across replicas, so do not point the API at a replica.)

The tier ledger (``ledger``, ``history``, ``tier_as_of``) is read in at most two round trips: the
customer's ledger policies (a set), then one ZRANGEBYSCORE per policy in a pipeline. "Tier as of T" is the
newest kept change with ``effective_at <= T`` (``scoring.lifecycle.tier_as_of``, the rule the engine itself
uses); ``None`` before the first kept change.

Redis failures are raised (``redis.exceptions.RedisError`` / ``OSError``); the API maps them to 503.
Corrupt stored values are skipped and logged (see ``codec.decode``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from schemas.readmodel import HistoryEntry, LedgerEntry, TierRecord
from scoring.lifecycle import tier_as_of as _tier_as_of
from tierstream.readmodel import codec
from tierstream.readmodel.keys import LAST_WRITE_AT, Keys


class ReadModelReader:
    """Async lookups of live tiers under one key ``prefix``."""

    def __init__(
        self,
        redis_url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "ts:",
        *,
        client: Redis | None = None,
        socket_timeout_seconds: float = 1.0,
        max_connections: int = 64,
    ) -> None:
        """``client`` overrides ``redis_url`` (the caller then owns and closes it)."""
        self._owns_client = client is None
        # Short timeouts: a support lookup that cannot answer within a second should fail fast (503)
        # and let the caller fall back to default routing, not hang the phone queue. A blocking pool:
        # under a burst, requests wait (up to the timeout) for one of a few connections instead of
        # failing with "too many connections"; one event loop gains nothing from hundreds of them.
        if client is None:
            pool = BlockingConnectionPool.from_url(
                redis_url,
                max_connections=max_connections,
                timeout=socket_timeout_seconds,
                socket_timeout=socket_timeout_seconds,
                socket_connect_timeout=socket_timeout_seconds,
            )
            client = Redis(connection_pool=pool)
        self._client: Redis = client
        self._keys = Keys(prefix)

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> ReadModelReader:
        """A reader for ``settings.redis_url`` / ``settings.redis_prefix``."""
        return cls(settings.redis_url, settings.redis_prefix, **kwargs)

    async def aclose(self) -> None:
        """Close the connection pool if this reader created it."""
        if self._owns_client:
            await self._client.aclose(close_connection_pool=True)

    async def ping(self) -> bool:
        """True if Redis answers PING (raises if it cannot be reached)."""
        return bool(await self._client.ping())

    async def get(self, customer_id: str, policy: str | None = None) -> list[TierRecord]:
        """The customer's records (one per policy, sorted by policy; only ``policy`` if given).
        Empty list: unknown customer (or no record under ``policy``)."""
        key = self._keys.tier(customer_id)
        if policy is not None:
            raw = await self._client.hget(key, policy)
            return _decode_one(customer_id, policy, raw)
        return _decode_all(customer_id, await self._client.hgetall(key))

    async def get_many(self, customer_ids: Sequence[str], policy: str | None = None) -> dict[str, list[TierRecord]]:
        """Records of several customers in one pipeline; only customers with a record appear, in input
        order (a repeated id once)."""
        ids = list(dict.fromkeys(customer_ids))
        pipe = self._client.pipeline(transaction=False)
        for customer_id in ids:
            if policy is None:
                pipe.hgetall(self._keys.tier(customer_id))
            else:
                pipe.hget(self._keys.tier(customer_id), policy)
        replies = await pipe.execute()
        found: dict[str, list[TierRecord]] = {}
        for customer_id, reply in zip(ids, replies, strict=True):
            records = _decode_all(customer_id, reply) if policy is None else _decode_one(customer_id, policy, reply)
            if records:
                found[customer_id] = records
        return found

    async def counts(self, policy: str) -> dict[str, int]:
        """Customers per tier under ``policy`` (empty if the policy has no customer)."""
        raw = await self._client.hgetall(self._keys.counts(policy))
        return {_text(tier): int(n) for tier, n in raw.items() if int(n) > 0}

    async def last_write_at(self) -> float | None:
        """Epoch seconds of the newest write batch, or ``None`` if nothing was ever written."""
        raw = await self._client.hget(self._keys.meta, LAST_WRITE_AT)
        return float(raw) if raw is not None else None


    # ------------------------------------------------------------------ tier ledger

    async def ledger(
        self, customer_id: str, policy: str | None = None, as_of: datetime | None = None
    ) -> dict[str, list[LedgerEntry]]:
        """The customer's kept tier changes per policy (sorted by policy), each list oldest first by
        (effective_at, sequence); only changes with ``effective_at <= as_of`` if given (aware datetime).

        A policy with a ledger but no change at or before ``as_of`` maps to an empty list. Empty dict: no
        ledger at all (unknown customer, or none under ``policy``)."""
        if policy is None:
            members = await self._client.smembers(self._keys.ledger_policies(customer_id))
            policies = sorted(_text(p) for p in members)
            if not policies:
                return {}
        else:
            policies = [policy]
        upper: float | str = as_of.timestamp() if as_of is not None else "+inf"
        pipe = self._client.pipeline(transaction=False)
        for name in policies:
            pipe.zrangebyscore(self._keys.ledger(customer_id, name), "-inf", upper)
        if policy is not None:
            # One named policy: "no ledger" (absent) differs from "no change before as_of" (empty list).
            pipe.exists(self._keys.ledger(customer_id, policy))
        replies = await pipe.execute()
        if policy is not None and not replies.pop():
            return {}
        found: dict[str, list[LedgerEntry]] = {}
        for name, raw_entries in zip(policies, replies, strict=True):
            decoded = (codec.decode_entry(customer_id, name, raw) for raw in raw_entries)
            kept = [entry for entry in decoded if entry is not None]
            # Score order is effective_at; sequence breaks ties between changes of one instant.
            kept.sort(key=lambda e: (e.effective_at, e.sequence))
            found[name] = kept
        return found

    async def history(
        self, customer_id: str, policy: str | None = None, as_of: datetime | None = None
    ) -> list[HistoryEntry]:
        """The customer's kept tier changes, newest first (effective_at, then sequence, then policy); only
        ``policy``'s if given, only those at or before ``as_of`` if given. Empty: no such change."""
        return history_entries(await self.ledger(customer_id, policy, as_of))

    async def tier_as_of(self, customer_id: str, policy: str, as_of: datetime) -> str | None:
        """The customer's effective tier under ``policy`` at ``as_of``; ``None`` if the kept ledger has no
        change at or before it (no tier yet, or older than the newest ``LEDGER_MAX`` changes kept)."""
        entries = (await self.ledger(customer_id, policy, as_of)).get(policy, [])
        return tier_at(entries, as_of)


def history_entries(ledger: dict[str, list[LedgerEntry]]) -> list[HistoryEntry]:
    """Flatten :meth:`ReadModelReader.ledger` into API entries, newest first (effective_at, sequence, policy)."""
    merged = [
        HistoryEntry(**entry.model_dump(), policy=policy) for policy, entries in ledger.items() for entry in entries
    ]
    merged.sort(key=lambda e: (e.effective_at, e.sequence, e.policy), reverse=True)
    return merged


def tier_at(entries: list[LedgerEntry], as_of: datetime) -> str | None:
    """The tier of ``entries`` (one policy, oldest first) at ``as_of``, by the engine's own rule."""
    return _tier_as_of([(e.effective_at, e.to_tier, e.sequence, e.cause) for e in entries], as_of)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _decode_one(customer_id: str, policy: str, raw: bytes | None) -> list[TierRecord]:
    if raw is None:
        return []
    record = codec.decode(customer_id, policy, raw)
    return [record] if record is not None else []


def _decode_all(customer_id: str, fields: dict[bytes, bytes]) -> list[TierRecord]:
    records = (codec.decode(customer_id, _text(policy), raw) for policy, raw in sorted(fields.items()))
    return [record for record in records if record is not None]
