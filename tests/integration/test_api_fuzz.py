"""Schemathesis fuzz of the API from its checked-in OpenAPI document: no 5xx, responses match the document.

A real uvicorn server (subprocess) reads the shared Redis under a unique, seeded prefix (tiers and a tier
ledger) and produces admin commands to the embedded broker (``stack``) under a unique topic prefix, so the
admin routes are fuzzed through to the broker (202), not only to their 503. The document fuzzed is
``docs/openapi.json``, which ``tests/unit/test_openapi_drift.py`` keeps equal to the code. Bounded by
``max_examples`` so the whole module runs well under a minute.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from redis.asyncio import Redis
from schemathesis.config import SchemathesisConfig

from schemas.outputs import TierChangeEvent
from schemas.readmodel import TierRecord
from streams.topics import Topics
from tierstream.api.openapi import OPENAPI_PATH
from tierstream.kafka_io import ensure_topics
from tierstream.readmodel import ReadModelWriter

pytestmark = pytest.mark.integration

SHARED_URL = "redis://127.0.0.1:6379/0"
TOKEN = "fuzz-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# Security parameters are not generated: every call carries a valid admin token (admin implies read), so
# the fuzz reaches every handler; missing/invalid/wrong-scope tokens are covered by test_api.py.
schema = schemathesis.openapi.from_path(
    OPENAPI_PATH, config=SchemathesisConfig.from_dict({"generation": {"with-security-parameters": False}})
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(stack) -> Iterator[str]:
    prefix = f"test:{uuid.uuid4().hex}:"
    topics = Topics(f"fuzz{uuid.uuid4().hex[:8]}.")
    ensure_topics(stack.broker_url, [topics.admin_commands], 4)
    now = datetime.now(UTC)

    async def seed() -> None:
        writer = ReadModelWriter(SHARED_URL, prefix)
        await writer.start()
        await writer.write(
            [
                TierRecord(
                    customer_id=c,
                    policy="five_tier",
                    policy_version=1,
                    tier="gold",
                    score=1.0,
                    since=now,
                    version=1,
                    updated_at=now,
                    routing={"queue": "q"},
                )
                for c in ("0", "a", "c1", "customer-1")
            ]
        )
        await writer.write_changes(
            [
                TierChangeEvent(
                    change_id=f"ch-{c}-{seq}", customer_id=c, policy="five_tier", policy_version=1,
                    from_tier=None if seq == 1 else "silver", to_tier="silver" if seq == 1 else "gold",
                    direction="new" if seq == 1 else "up", cause="event", score=1.0, sequence=seq, event_id=None,
                    effective_at=now, decided_at=now,
                )
                for c in ("0", "a", "c1", "customer-1")
                for seq in (1, 2)
            ]
        )
        await writer.stop()

    async def cleanup() -> None:
        client = Redis.from_url(SHARED_URL)
        keys = [k async for k in client.scan_iter(f"{prefix}*", count=10000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    asyncio.run(seed())
    port = _free_port()
    env = {
        **os.environ,
        "TIERSTREAM_REDIS_URL": SHARED_URL,
        "TIERSTREAM_REDIS_PREFIX": prefix,
        "TIERSTREAM_API_READ_TOKENS": "fuzz-read-token",
        "TIERSTREAM_API_ADMIN_TOKENS": TOKEN,
        "TIERSTREAM_BROKER": stack.broker_url,  # admin commands go to the embedded broker
        "TIERSTREAM_EMBEDDED_BROKER": "1",
        "TIERSTREAM_TOPIC_PREFIX": topics.prefix,
    }
    cmd = [sys.executable, "-m", "uvicorn", "tierstream.api.app:create_app_from_env", "--factory"]
    server = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "API server did not start"
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)
        asyncio.run(cleanup())


@schema.parametrize()
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_fuzz(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers=AUTH)
