"""HTTP API against real Redis and the embedded broker: every endpoint, auth scopes, JSON error bodies,
404/405/422/503, batch limit, tier history, admin commands (read back from the admin topic), and one end
to end test (a worker applies an override set through the API).

Data are written with the real :class:`ReadModelWriter` under a unique prefix on the shared Redis; only
those keys are deleted afterwards. Admin commands go to topics under a unique prefix.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from redis.asyncio import Redis

import streams.worker
from schemas.admin import (
    ApproveProposal,
    CommandResult,
    RejectProposal,
    RemoveOverride,
    SetOverride,
    parse_command,
)
from schemas.outputs import TierChangeEvent, change_id
from schemas.readmodel import (
    BatchGetResponse,
    CommandAccepted,
    CustomerHistory,
    CustomerTiers,
    ErrorBody,
    Status,
    TierCounts,
    TierRecord,
)
from streams.topics import Topics
from tierstream.api import create_app
from tierstream.kafka_io import ensure_topics, producer, read_topic
from tierstream.readmodel import ReadModelWriter
from tierstream.settings import Settings

pytestmark = pytest.mark.integration

SHARED_URL = "redis://127.0.0.1:6379/0"
READ, ADMIN = "read-token-1", "admin-token-1"
READ_H = {"Authorization": f"Bearer {READ}"}
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
ACTOR_H = {**ADMIN_H, "X-Actor": "agent-7"}
NOW = datetime.now(UTC).replace(microsecond=0)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _dead_broker() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"kafka://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


DEAD_BROKER = _dead_broker()


def rec(customer: str, tier: str, policy: str = "five_tier", version: int = 1) -> TierRecord:
    return TierRecord(
        customer_id=customer,
        policy=policy,
        policy_version=3,
        tier=tier,
        score=72.5,
        since=NOW - timedelta(days=10),
        override={"tier": tier, "by": "exec-1", "reason": "strategic"} if customer == "c-override" else None,
        version=version,
        updated_at=NOW - timedelta(seconds=30),
        routing={"queue": f"support-{tier}", "priority": 2, "response_time_target_seconds": 120},
    )


def change(customer: str, seq: int, to: str, frm: str | None, days: float, policy: str = "five_tier"):
    return TierChangeEvent(
        change_id=change_id(customer, policy, 1, seq, to), customer_id=customer, policy=policy, policy_version=1,
        from_tier=frm, to_tier=to, direction="new" if frm is None else "up", cause="event", score=1.0,
        sequence=seq, event_id=f"e{seq}", effective_at=T0 + timedelta(days=days), decided_at=T0,
    )


SEED = [
    rec("c1", "gold"),
    rec("c1", "A", policy="sabcd"),
    rec("c2", "silver"),
    rec("c-override", "diamond"),
    *[rec(f"bulk{i}", "bronze") for i in range(1000)],
]
#: c1's history: five_tier bronze (day 1) -> silver (day 10) -> gold (day 20); sabcd B (day 5) -> A (day 15).
#: c2 has a tier but no history; h-only has a history but no tier record.
LEDGER_SEED = [
    change("c1", 1, "bronze", None, 1),
    change("c1", 2, "silver", "bronze", 10),
    change("c1", 3, "gold", "silver", 20),
    change("c1", 1, "B", None, 5, policy="sabcd"),
    change("c1", 2, "A", "B", 15, policy="sabcd"),
    change("h-only", 1, "bronze", None, 3),
]


def make_settings(prefix: str, redis_url: str = SHARED_URL, broker: str = DEAD_BROKER, topic_prefix: str = "x.",
                  **kwargs) -> Settings:
    return Settings(redis_url=redis_url, redis_prefix=prefix, api_read_tokens=(READ,), api_admin_tokens=(ADMIN,),
                    broker=broker, topic_prefix=topic_prefix, embedded_broker=True, **kwargs)


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    p = f"test:{uuid.uuid4().hex}:"

    async def seed() -> None:
        writer = ReadModelWriter(SHARED_URL, p)
        await writer.start()
        await writer.write(SEED)
        await writer.write_changes(LEDGER_SEED)
        assert writer.pending == 0
        await writer.stop()

    async def cleanup() -> None:
        client = Redis.from_url(SHARED_URL)
        keys = [k async for k in client.scan_iter(f"{p}*", count=10000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    asyncio.run(seed())
    yield p
    asyncio.run(cleanup())


@pytest.fixture(scope="module")
def topics(stack) -> Topics:
    """Topics under a prefix of this module; the admin topic exists (as the worker would create it)."""
    t = Topics(f"api{uuid.uuid4().hex[:8]}.")
    ensure_topics(stack.broker_url, [t.admin_commands], 4)
    return t


@pytest.fixture(scope="module")
def client(prefix: str, stack, topics: Topics) -> Iterator[TestClient]:
    app = create_app(make_settings(prefix, broker=stack.broker_url, topic_prefix=topics.prefix))
    with TestClient(app) as c:
        yield c


def admin_commands(stack, topics: Topics, want: int) -> dict[str, tuple[bytes | None, bytes]]:
    """command_id -> (key, value) of the admin topic, once it has at least ``want`` records."""
    records = read_topic(stack.broker_url, topics.admin_commands, timeout=0.5, min_records=want, max_seconds=20)
    return {orjson.loads(v)["command_id"]: (k, v) for k, v, _ in records}


def assert_error(response, status: int, code: str) -> ErrorBody:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = ErrorBody.model_validate(response.json())
    assert body.error.code == code
    assert body.error.message
    return body


# ---------------------------------------------------------------------------------------- GET tier


def test_get_tier_every_policy(client: TestClient) -> None:
    r = client.get("/v1/customers/c1/tier", headers=READ_H)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = CustomerTiers.model_validate(r.json())
    assert body.customer_id == "c1"
    assert [(t.policy, t.tier) for t in body.tiers] == [("five_tier", "gold"), ("sabcd", "A")]
    view = body.tiers[0]
    assert view.score == 72.5 and view.version == 1 and view.policy_version == 3
    assert view.since == NOW - timedelta(days=10)
    assert view.routing.queue == "support-gold" and view.routing.response_time_target_seconds == 120
    assert view.override is None
    assert 29 <= view.staleness_seconds < 120


def test_get_tier_one_policy_and_override(client: TestClient) -> None:
    r = client.get("/v1/customers/c1/tier", params={"policy": "sabcd"}, headers=READ_H)
    assert [t["tier"] for t in r.json()["tiers"]] == ["A"]
    r = client.get("/v1/customers/c-override/tier", headers=READ_H)
    assert r.json()["tiers"][0]["override"] == {"tier": "diamond", "by": "exec-1", "reason": "strategic"}


def test_get_tier_unknown_customer_or_policy_is_404(client: TestClient) -> None:
    body = assert_error(client.get("/v1/customers/nobody/tier", headers=READ_H), 404, "not_found")
    assert "nobody" in body.error.message
    assert_error(client.get("/v1/customers/c2/tier", params={"policy": "sabcd"}, headers=READ_H), 404, "not_found")


def test_unknown_query_parameters_are_422(client: TestClient) -> None:
    # A misspelt filter must not silently answer for every policy.
    body = assert_error(client.get("/v1/customers/c1/tier?polcy=sabcd", headers=READ_H), 422, "invalid_request")
    assert body.error.details == [
        {"loc": ["query", "polcy"], "msg": "unknown query parameter", "type": "extra_forbidden"}
    ]
    assert_error(client.post("/v1/tiers:batchGet?x=1", json={"ids": ["c1"]}, headers=READ_H), 422, "invalid_request")
    assert_error(client.get("/healthz?x=1"), 422, "invalid_request")


def test_get_tier_bad_input_is_422(client: TestClient) -> None:
    body = assert_error(client.get(f"/v1/customers/{'x' * 129}/tier", headers=READ_H), 422, "invalid_request")
    assert body.error.details and body.error.details[0]["loc"] == ["path", "customer_id"]
    assert_error(client.get("/v1/customers/c1/tier?policy=", headers=READ_H), 422, "invalid_request")


# ---------------------------------------------------------------------------------------- batchGet


def test_batch_get(client: TestClient) -> None:
    r = client.post("/v1/tiers:batchGet", json={"ids": ["c2", "nobody", "c1", "c2"]}, headers=READ_H)
    assert r.status_code == 200
    body = BatchGetResponse.model_validate(r.json())
    assert [c.customer_id for c in body.results] == ["c2", "c1"]
    assert body.not_found == ["nobody"]
    assert len(body.results[1].tiers) == 2
    r = client.post("/v1/tiers:batchGet", json={"ids": ["c1", "c2"], "policy": "sabcd"}, headers=READ_H)
    body = BatchGetResponse.model_validate(r.json())
    assert [(c.customer_id, c.tiers[0].tier) for c in body.results] == [("c1", "A")]
    assert body.not_found == ["c2"]


def test_batch_get_limit_is_1000(client: TestClient) -> None:
    ids = [f"bulk{i}" for i in range(1000)]
    r = client.post("/v1/tiers:batchGet", json={"ids": ids}, headers=READ_H)
    assert r.status_code == 200
    assert len(r.json()["results"]) == 1000
    body = assert_error(
        client.post("/v1/tiers:batchGet", json={"ids": [*ids, "one-more"]}, headers=READ_H), 422, "invalid_request"
    )
    assert body.error.details and body.error.details[0]["loc"] == ["body", "ids"]


@pytest.mark.parametrize(
    "payload",
    [
        {"ids": []},
        {},
        {"ids": "c1"},
        {"ids": [""]},
        {"ids": ["c1"], "unexpected": 1},
        {"ids": ["c1"], "policy": ""},
        [1, 2],
    ],
)
def test_batch_get_bad_bodies_are_422(client: TestClient, payload: object) -> None:
    assert_error(client.post("/v1/tiers:batchGet", json=payload, headers=READ_H), 422, "invalid_request")


def test_batch_get_malformed_json_is_422(client: TestClient) -> None:
    headers = {**READ_H, "Content-Type": "application/json"}
    assert_error(client.post("/v1/tiers:batchGet", content=b"{not json", headers=headers), 422, "invalid_request")


# ---------------------------------------------------------------------------------------- counts


def test_counts(client: TestClient) -> None:
    r = client.get("/v1/policies/five_tier/counts", headers=READ_H)
    body = TierCounts.model_validate(r.json())
    assert body.counts == {"gold": 1, "silver": 1, "diamond": 1, "bronze": 1000}
    assert body.total == 1003
    assert client.get("/v1/policies/unknown/counts", headers=READ_H).json() == {
        "policy": "unknown",
        "counts": {},
        "total": 0,
    }


# ---------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {READ}"},
        {"Authorization": "Bearer "},
        {"Authorization": READ},
        {"Authorization": "Bearer tökén".encode()},  # non-ASCII must be a 401, not a 500
    ],
)
def test_read_routes_need_a_valid_token(client: TestClient, headers: dict[str, str]) -> None:
    for response in (
        client.get("/v1/customers/c1/tier", headers=headers),
        client.post("/v1/tiers:batchGet", json={"ids": ["c1"]}, headers=headers),
        client.get("/v1/policies/five_tier/counts", headers=headers),
    ):
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


def test_admin_token_has_read_scope(client: TestClient) -> None:
    assert client.get("/v1/customers/c1/tier", headers=ADMIN_H).status_code == 200


ADMIN_CALLS = [
    ("PUT", "/v1/customers/c1/overrides/five_tier", {"kind": "pin", "tier": "gold", "reason": "r"}),
    ("DELETE", "/v1/customers/c1/overrides/five_tier?reason=r", None),
    ("POST", "/v1/customers/c1/proposals/p-1:approve", {"policy": "five_tier", "reason": "r"}),
    ("POST", "/v1/customers/c1/proposals/p-1:reject", {"policy": "five_tier", "reason": "r"}),
]


@pytest.mark.parametrize(("method", "url", "body"), ADMIN_CALLS)
def test_admin_routes_need_the_admin_scope(client: TestClient, method: str, url: str, body: dict | None) -> None:
    actor = {"X-Actor": "agent-7"}
    assert_error(client.request(method, url, json=body, headers={**READ_H, **actor}), 403, "forbidden")
    response = client.request(method, url, json=body, headers=actor)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(client.request(method, url, json=body, headers={"Authorization": "Bearer nope", **actor}), 401,
                 "unauthorized")


def test_no_configured_tokens_means_no_access(prefix: str) -> None:
    settings = Settings(redis_url=SHARED_URL, redis_prefix=prefix)
    with TestClient(create_app(settings)) as c:
        assert_error(c.get("/v1/customers/c1/tier", headers={"Authorization": "Bearer "}), 401, "unauthorized")
        assert_error(c.get("/v1/customers/c1/tier", headers=READ_H), 401, "unauthorized")


# ---------------------------------------------------------------------------------------- generic errors


def test_unknown_path_and_method_are_json(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing-here", headers=READ_H), 404, "not_found")
    assert_error(client.delete("/v1/customers/c1/tier", headers=READ_H), 405, "method_not_allowed")


# ---------------------------------------------------------------------------------------- probes, metrics


def test_healthz_readyz(client: TestClient) -> None:
    assert Status.model_validate(client.get("/healthz").json()).status == "ok"
    assert Status.model_validate(client.get("/readyz").json()).status == "ready"


def test_metrics(client: TestClient) -> None:
    client.get("/v1/customers/c1/tier", headers=READ_H)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'tierstream_api_requests_total{method="GET",route="/v1/customers/{customer_id}/tier",status="200"}' in text
    assert (
        'tierstream_api_request_seconds_bucket{le="0.001",method="GET",route="/v1/customers/{customer_id}/tier"}'
        in text
    )
    assert "/v1/customers/c1/" not in text  # customer ids never become labels
    line = next(x for x in text.splitlines() if x.startswith("tierstream_readmodel_last_write_timestamp_seconds "))
    assert float(line.split()[1]) > time.time() - 3600


def test_openapi_served(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert {"/v1/customers/{customer_id}/tier", "/v1/tiers:batchGet", "/healthz", "/readyz", "/metrics"} <= set(
        doc["paths"]
    )


# ---------------------------------------------------------------------------------------- Redis down


def test_redis_down_gives_503_and_not_ready(prefix: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    with TestClient(create_app(make_settings(prefix, f"redis://127.0.0.1:{port}/0"))) as c:
        assert_error(c.get("/readyz"), 503, "unavailable")
        assert_error(c.get("/v1/customers/c1/tier", headers=READ_H), 503, "unavailable")
        assert_error(c.post("/v1/tiers:batchGet", json={"ids": ["c1"]}, headers=READ_H), 503, "unavailable")
        assert c.get("/healthz").status_code == 200  # alive: restarting would not bring Redis back
        assert c.get("/metrics").status_code == 200


# ---------------------------------------------------------------------------------------- history


def test_history_newest_first(client: TestClient) -> None:
    r = client.get("/v1/customers/c1/history", headers=READ_H)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = CustomerHistory.model_validate(r.json())
    assert body.customer_id == "c1" and body.as_of is None and body.tiers_as_of is None
    assert [(e.policy, e.to_tier) for e in body.entries] == [
        ("five_tier", "gold"), ("sabcd", "A"), ("five_tier", "silver"), ("sabcd", "B"), ("five_tier", "bronze")]
    first = r.json()["entries"][0]
    assert first == {"change_id": change_id("c1", "five_tier", 1, 3, "gold"), "sequence": 3, "from": "silver",
                     "to": "gold", "cause": "event", "effective_at": "2025-01-21T00:00:00Z", "event_id": "e3",
                     "policy": "five_tier"}
    only = client.get("/v1/customers/c1/history", params={"policy": "sabcd"}, headers=ADMIN_H).json()
    assert [e["to"] for e in only["entries"]] == ["A", "B"]


def test_history_as_of(client: TestClient) -> None:
    as_of = "2025-01-12T00:00:00Z"
    body = CustomerHistory.model_validate(
        client.get("/v1/customers/c1/history", params={"as_of": as_of}, headers=READ_H).json())
    assert body.as_of == datetime(2025, 1, 12, tzinfo=UTC)
    assert [e.to_tier for e in body.entries] == ["silver", "B", "bronze"]
    assert [(t.policy, t.tier, t.since) for t in body.tiers_as_of or []] == [
        ("five_tier", "silver", T0 + timedelta(days=10)), ("sabcd", "B", T0 + timedelta(days=5))]
    # the same instant with another offset ("+" encoded by httpx), and a time before any change
    body = client.get("/v1/customers/c1/history", params={"as_of": "2025-01-12T02:00:00+02:00", "policy": "sabcd"},
                      headers=READ_H).json()
    assert body["tiers_as_of"] == [{"policy": "sabcd", "tier": "B", "since": "2025-01-06T00:00:00Z"}]
    body = client.get("/v1/customers/c1/history", params={"as_of": "2024-06-01T00:00:00Z"}, headers=READ_H).json()
    assert body["entries"] == []
    assert body["tiers_as_of"] == [{"policy": "five_tier", "tier": None, "since": None},
                                   {"policy": "sabcd", "tier": None, "since": None}]


def test_history_known_customer_without_changes_and_unknown(client: TestClient) -> None:
    body = client.get("/v1/customers/c2/history", headers=READ_H).json()  # a tier, no ledger yet
    assert body["entries"] == [] and body["customer_id"] == "c2"
    assert [e["to"] for e in client.get("/v1/customers/h-only/history", headers=READ_H).json()["entries"]] == [
        "bronze"]
    assert_error(client.get("/v1/customers/nobody/history", headers=READ_H), 404, "not_found")
    assert_error(client.get("/v1/customers/c2/history?policy=sabcd", headers=READ_H), 404, "not_found")
    assert_error(client.get("/v1/customers/c1/history"), 401, "unauthorized")


@pytest.mark.parametrize(
    "query", ["as_of=yesterday", "as_of=2025-01-12T00:00:00", "as_of=2025-13-01T00:00:00Z", "as_of=", "asof=x",
              "policy="])
def test_history_bad_query_is_422(client: TestClient, query: str) -> None:
    assert_error(client.get(f"/v1/customers/c1/history?{query}", headers=READ_H), 422, "invalid_request")


# ---------------------------------------------------------------------------------------- admin commands


def test_admin_routes_publish_the_exact_commands(client: TestClient, stack, topics: Topics) -> None:
    expires = "2030-01-01T00:00:00Z"
    r = client.put("/v1/customers/cust:1/overrides/five_tier", headers={**ACTOR_H, "Idempotency-Key": "idem-1"},
                   json={"kind": "floor", "tier": "gold", "reason": "key account", "expires_at": expires})
    assert r.status_code == 202, r.text
    assert CommandAccepted.model_validate(r.json()) == CommandAccepted(
        command_id="idem-1", command="set_override", customer_id="cust:1", policy="five_tier")
    r = client.delete("/v1/customers/cust:1/overrides/five_tier", params={"reason": "no longer"}, headers=ACTOR_H)
    assert r.status_code == 202, r.text
    remove_id = r.json()["command_id"]
    assert uuid.UUID(remove_id)  # a fresh uuid4 without Idempotency-Key
    r = client.post("/v1/customers/cust:1/proposals/p-abc:approve", headers={**ACTOR_H, "Idempotency-Key": "idem-2"},
                    json={"policy": "five_tier", "reason": "checked"})
    assert r.status_code == 202 and r.json()["command"] == "approve_proposal"
    r = client.post("/v1/customers/c9/proposals/p-def:reject", headers={**ACTOR_H, "Idempotency-Key": "idem-3"},
                    json={"policy": "sabcd", "reason": "not yet"})
    assert r.status_code == 202 and r.json()["command"] == "reject_proposal"

    found = admin_commands(stack, topics, want=4)
    key, value = found["idem-1"]
    assert key == b"cust:1"
    assert parse_command(value) == SetOverride(
        command_id="idem-1", customer_id="cust:1", policy="five_tier", actor="agent-7", reason="key account",
        kind="floor", tier="gold", expires_at=datetime(2030, 1, 1, tzinfo=UTC))
    assert parse_command(found[remove_id][1]) == RemoveOverride(
        command_id=remove_id, customer_id="cust:1", policy="five_tier", actor="agent-7", reason="no longer")
    assert parse_command(found["idem-2"][1]) == ApproveProposal(
        command_id="idem-2", customer_id="cust:1", policy="five_tier", actor="agent-7", reason="checked",
        proposal_id="p-abc")
    assert found["idem-3"][0] == b"c9"
    assert parse_command(found["idem-3"][1]) == RejectProposal(
        command_id="idem-3", customer_id="c9", policy="sabcd", actor="agent-7", reason="not yet",
        proposal_id="p-def")


@pytest.mark.parametrize(
    ("method", "url", "body", "headers"),
    [
        ("PUT", "/v1/customers/c1/overrides/five_tier", {"kind": "pin", "tier": "gold", "reason": "r"}, ADMIN_H),
        ("PUT", "/v1/customers/c1/overrides/five_tier", {"kind": "max", "tier": "gold", "reason": "r"}, ACTOR_H),
        ("PUT", "/v1/customers/c1/overrides/five_tier", {"kind": "pin", "tier": "gold"}, ACTOR_H),
        ("PUT", "/v1/customers/c1/overrides/five_tier", {"kind": "pin", "tier": "gold", "reason": ""}, ACTOR_H),
        ("PUT", "/v1/customers/c1/overrides/five_tier", {"kind": "pin", "tier": "gold", "reason": "r", "x": 1},
         ACTOR_H),
        ("PUT", "/v1/customers/c1/overrides/five_tier",
         {"kind": "pin", "tier": "gold", "reason": "r", "expires_at": "2030-01-01T00:00:00"}, ACTOR_H),
        ("PUT", "/v1/customers/c1/overrides/five_tier?dry_run=1", {"kind": "pin", "tier": "gold", "reason": "r"},
         ACTOR_H),
        ("PUT", "/v1/customers/c1/overrides/five_tier", {"kind": "pin", "tier": "gold", "reason": "r"},
         {**ACTOR_H, "Idempotency-Key": "k" * 129}),
        ("PUT", "/v1/customers/c1/overrides/five_tier", {"kind": "pin", "tier": "gold", "reason": "r"},
         {**ADMIN_H, "X-Actor": "a" * 129}),
        ("DELETE", "/v1/customers/c1/overrides/five_tier", None, ACTOR_H),
        ("DELETE", "/v1/customers/c1/overrides/five_tier?reason=r&force=1", None, ACTOR_H),
        ("POST", "/v1/customers/c1/proposals/p-1:approve", {"reason": "r"}, ACTOR_H),
        ("POST", "/v1/customers/c1/proposals/p-1:reject", {"policy": "five_tier", "reason": "r"}, ADMIN_H),
        ("POST", "/v1/customers/c1/proposals/p-1:reject", [1], ACTOR_H),
    ],
)
def test_admin_bad_requests_are_422(client: TestClient, method: str, url: str, body: object, headers: dict) -> None:
    assert_error(client.request(method, url, json=body, headers=headers), 422, "invalid_request")


def test_405_lists_every_method_of_the_path(client: TestClient) -> None:
    # One route per method on this path: Starlette alone would answer "Allow: PUT".
    response = client.patch("/v1/customers/c1/overrides/five_tier", headers=ACTOR_H)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "DELETE, PUT"


def test_admin_unknown_verb_is_404(client: TestClient) -> None:
    assert_error(client.post("/v1/customers/c1/proposals/p-1:maybe", json={"policy": "p", "reason": "r"},
                             headers=ACTOR_H), 404, "not_found")


def test_broker_down_gives_503_for_admin_routes_only(prefix: str) -> None:
    with TestClient(create_app(make_settings(prefix, broker=DEAD_BROKER))) as c:
        for method, url, body in ADMIN_CALLS:
            assert_error(c.request(method, url, json=body, headers=ACTOR_H), 503, "unavailable")
        assert c.get("/v1/customers/c1/tier", headers=READ_H).status_code == 200
        assert c.get("/readyz").status_code == 200  # lookups do not depend on the broker


# ---------------------------------------------------------------------------------------- end to end


def test_override_through_the_api_is_applied_by_the_worker(stack, make_worker) -> None:
    """A worker runs; PUT a pin through the API; Redis shows the pinned tier and the audit says accepted."""
    w = make_worker()
    ensure_topics(stack.broker_url, [*w.topics.all_consumed(), *w.topics.all_produced()], 4)
    w.start()
    redis_prefix = w.env["TIERSTREAM_REDIS_PREFIX"]
    prod = producer(stack.broker_url)
    prod.send(w.topics.input("order"), key=b"e2e-1", value=orjson.dumps({
        "event_id": "e2e-o1", "customer_id": "e2e-1", "occurred_at": (NOW - timedelta(days=3)).isoformat(),
        "type": "order", "order_id": "o-e2e-1", "status": "placed", "amount": "100"}))
    prod.flush()
    prod.close()
    settings = make_settings(redis_prefix, redis_url=stack.redis_url, broker=stack.broker_url,
                             topic_prefix=w.topics.prefix)
    with TestClient(create_app(settings)) as c:
        before = wait_for(lambda: (r := c.get("/v1/customers/e2e-1/tier", headers=READ_H)).status_code == 200 and r,
                          "the customer's first tier")
        assert before.json()["tiers"][0]["tier"] != "diamond"
        r = c.put("/v1/customers/e2e-1/overrides/five_tier", headers=ACTOR_H,
                  json={"kind": "pin", "tier": "diamond", "reason": "strategic account"})
        assert r.status_code == 202, r.text
        command_id = r.json()["command_id"]

        def pinned() -> dict | None:
            view = c.get("/v1/customers/e2e-1/tier", params={"policy": "five_tier"}, headers=READ_H).json()["tiers"][0]
            return view if view["tier"] == "diamond" else None

        view = wait_for(pinned, "the pinned tier in Redis")
        assert view["override"]["kind"] == "pin" and view["override"]["tier"] == "diamond"
        assert view["override"]["actor"] == "agent-7" and view["override"]["command_id"] == command_id
        assert view["scored_tier"] != "diamond"  # the score keeps being computed underneath

        results = [CommandResult.model_validate_json(v)
                   for _, v, _ in read_topic(stack.broker_url, w.topics.admin_audit, timeout=0.5, min_records=1)]
        mine = [res for res in results if res.command_id == command_id]
        assert len(mine) == 1 and mine[0].accepted, results
        assert (mine[0].command, mine[0].customer_id, mine[0].actor) == ("set_override", "e2e-1", "agent-7")

        if "write_changes" in Path(streams.worker.__file__).read_text():  # once the worker writes the ledger
            entries = wait_for(lambda: [e for e in c.get("/v1/customers/e2e-1/history", headers=READ_H).json()
                                        ["entries"] if e["cause"] == "override"], "the override in the ledger")
            assert entries[0]["to"] == "diamond"


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_batch_get_undecodable_body_is_422(client: TestClient) -> None:
    headers = {**READ_H, "Content-Type": "application/json"}
    assert_error(
        client.post("/v1/tiers:batchGet", content=b"\xff\xfe\x00garbage", headers=headers), 422, "invalid_request"
    )
