"""Routes of the tier API: lookups and tier history (read scope), admin commands (admin scope), tier
counts, probes and metrics.

Admin routes (overrides, proposal approvals) do not change anything themselves: each builds the exact
``schemas.admin`` command, validates it as the worker will parse it, produces it to the admin-commands
topic (:mod:`tierstream.api.commands`) and answers 202 with its ``command_id``. The worker applies it and
writes one ``CommandResult`` (accepted or refused, and why) to the admin-audit topic. Who: the admin token
authenticates the calling system (e.g. the support console); the required ``X-Actor`` header names the
person it acts for, recorded as the command's ``actor`` (tokens carry no names in the settings). A client
``Idempotency-Key`` header becomes the ``command_id``, so a retried request is applied once.

Lookups answer with ``Cache-Control: no-store``: tier data are confidential and must not sit in caches.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from schemas.admin import ApproveProposal, InvalidCommand, RejectProposal, RemoveOverride, SetOverride, parse_command
from schemas.readmodel import (
    BatchGetRequest,
    BatchGetResponse,
    CommandAccepted,
    CustomerHistory,
    CustomerTiers,
    OverrideRequest,
    ProposalDecisionRequest,
    Rfc3339Datetime,
    Status,
    TierAsOf,
    TierCounts,
    TierRecord,
)
from tierstream.api.auth import SECURITY_REQUIREMENT, require_scope
from tierstream.api.commands import AdminCommand, CommandPublisher, PublishUnavailable
from tierstream.api.errors import ApiError, error_responses
from tierstream.api.metrics import READMODEL_LAST_WRITE, REGISTRY
from tierstream.readmodel import ReadModelReader
from tierstream.readmodel.reader import history_entries, tier_at

#: How long a readiness or metrics probe waits for Redis.
PROBE_TIMEOUT_SECONDS = 0.5

CustomerIdPath = Annotated[str, Path(min_length=1, max_length=128, description="Customer id.")]
PolicyQuery = Annotated[
    str | None, Query(min_length=1, max_length=128, description="Only this policy (default: every policy).")
]
PolicyPath = Annotated[str, Path(min_length=1, max_length=128, description="Policy id.")]
AsOfQuery = Annotated[
    Rfc3339Datetime | None,
    Query(
        description="RFC 3339 time with an offset (e.g. 2026-03-01T00:00:00Z; send `+` as `%2B`): only "
        "changes at or before it, and the tier per policy at that time."
    ),
]
ActorHeader = Annotated[
    str,
    Header(
        alias="X-Actor",
        min_length=1,
        max_length=128,
        description="Who gives the command (user id); recorded as the command's actor in the audit.",
    ),
]
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        description="Becomes the command_id (default: a new UUID): a retried request is applied once.",
    ),
]

router = APIRouter()
_NO_STORE = {"Cache-Control": "no-store"}


def _strict_query(request: Request, allowed: frozenset[str] = frozenset()) -> ReadModelReader:
    """Refuse unknown query parameters (422) and return the reader.

    A misspelt ``?polcy=`` must not silently answer for every policy; support routing would pick the
    wrong tier. Inline rather than a dependency: each dependency costs time on the lookup hot path."""
    _refuse_unknown_query(request, allowed)
    return request.app.state.reader


def _refuse_unknown_query(request: Request, allowed: frozenset[str]) -> None:
    """422 if the query string has a parameter not in ``allowed``."""
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        details = [
            {"loc": ["query", name], "msg": "unknown query parameter", "type": "extra_forbidden"} for name in unknown
        ]
        raise ApiError(
            422, "invalid_request", f"invalid request: unknown query parameter(s) {', '.join(unknown)}", details
        )


_POLICY_ONLY = frozenset(("policy",))
_HISTORY_QUERY = frozenset(("policy", "as_of"))
_REASON_ONLY = frozenset(("reason",))


def _view(record: TierRecord, now: datetime) -> dict[str, Any]:
    """The JSON of a :class:`TierView`, built without re-validating a record already validated on read."""
    data = record.model_dump(mode="json", exclude={"customer_id"})
    data["staleness_seconds"] = max(0.0, (now - record.updated_at).total_seconds())
    return data


def _customer(customer_id: str, records: list[TierRecord], now: datetime) -> dict[str, Any]:
    return {"customer_id": customer_id, "tiers": [_view(r, now) for r in records]}


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json", headers=_NO_STORE)


@router.get(
    "/v1/customers/{customer_id}/tier",
    response_model=CustomerTiers,
    responses=error_responses(401, 403, 404, 422, 503),
    dependencies=[Depends(require_scope("read"))],
    openapi_extra={"security": SECURITY_REQUIREMENT},
    summary="Live tier of one customer",
    tags=["tiers"],
)
async def get_tier(
    customer_id: CustomerIdPath,
    request: Request,
    policy: PolicyQuery = None,
) -> Response:
    """Tier, score, since, routing hints, override and staleness per policy; 404 if the customer has none."""
    records = await _strict_query(request, _POLICY_ONLY).get(customer_id, policy)
    if not records:
        where = f" under policy {policy!r}" if policy else ""
        raise ApiError(404, "not_found", f"customer {customer_id!r} has no tier{where}")
    return _json(_customer(customer_id, records, datetime.now(UTC)))


@router.post(
    "/v1/tiers:batchGet",
    response_model=BatchGetResponse,
    responses=error_responses(401, 403, 422, 503),
    dependencies=[Depends(require_scope("read"))],
    openapi_extra={"security": SECURITY_REQUIREMENT},
    summary="Live tiers of up to 1,000 customers",
    tags=["tiers"],
)
async def batch_get(body: BatchGetRequest, request: Request) -> Response:
    """Tiers of every known id (request order, duplicates once) and the list of unknown ids."""
    found = await _strict_query(request).get_many(body.ids, body.policy)
    now = datetime.now(UTC)
    results = [_customer(cid, records, now) for cid, records in found.items()]
    not_found = [cid for cid in dict.fromkeys(body.ids) if cid not in found]
    return _json({"results": results, "not_found": not_found})


@router.get(
    "/v1/policies/{policy}/counts",
    response_model=TierCounts,
    responses=error_responses(401, 403, 422, 503),
    dependencies=[Depends(require_scope("read"))],
    openapi_extra={"security": SECURITY_REQUIREMENT},
    summary="Customers per tier under one policy",
    tags=["tiers"],
)
async def tier_counts(policy: Annotated[str, Path(min_length=1, max_length=128)], request: Request) -> Response:
    """Counts maintained by the writer's guarded upsert (for dashboards); empty for an unknown policy."""
    counts = await _strict_query(request).counts(policy)
    return _json({"policy": policy, "counts": counts, "total": sum(counts.values())})


@router.get(
    "/v1/customers/{customer_id}/history",
    response_model=CustomerHistory,
    responses=error_responses(401, 403, 404, 422, 503),
    dependencies=[Depends(require_scope("read"))],
    openapi_extra={"security": SECURITY_REQUIREMENT},
    summary="Tier history of one customer, and its tiers as of a time",
    tags=["tiers"],
)
async def get_history(
    customer_id: CustomerIdPath,
    request: Request,
    policy: PolicyQuery = None,
    as_of: AsOfQuery = None,
) -> Response:
    """Tier changes from the read model's ledger, newest first (the newest 200 per policy are kept; the
    tier-changes topic has the rest). With ``as_of``: only changes at or before it, and per policy the tier
    then (null if no kept change is that old). 404 if the customer has neither a tier nor a history (under
    ``policy``, if given)."""
    reader = _strict_query(request, _HISTORY_QUERY)
    ledger = await reader.ledger(customer_id, policy, as_of)
    if not ledger and not await reader.get(customer_id, policy):
        where = f" under policy {policy!r}" if policy else ""
        raise ApiError(404, "not_found", f"customer {customer_id!r} has no tier history{where}")
    body = CustomerHistory(
        customer_id=customer_id,
        as_of=as_of,
        entries=history_entries(ledger),
        tiers_as_of=None if as_of is None else [
            TierAsOf(policy=name, tier=tier_at(entries, as_of), since=entries[-1].effective_at if entries else None)
            for name, entries in ledger.items()
        ],
    )
    return _json(body.model_dump(mode="json", by_alias=True))


# ---------------------------------------------------------------------------------------- admin commands

_ADMIN_ROUTE: dict[str, Any] = {
    "status_code": 202,
    "response_model": CommandAccepted,
    "responses": error_responses(401, 403, 422, 503),
    "dependencies": [Depends(require_scope("admin"))],
    "openapi_extra": {"security": SECURITY_REQUIREMENT},
    "tags": ["admin"],
}


async def _publish(request: Request, build: Any, **fields: Any) -> Response:
    """Build the command with ``build(**fields)``, check it parses exactly as the worker will parse it,
    produce it and answer 202. 422 if it is invalid, 503 if the broker does not take it."""
    try:
        command: AdminCommand = build(**fields)
        parse_command(command.model_dump_json())  # what the worker will read: refuse here, not in the audit
    except ValidationError as exc:
        details = [
            {"loc": ["command", *map(str, e["loc"])], "msg": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        raise ApiError(422, "invalid_request", f"invalid command: {details[0]['msg']}", details) from None
    except InvalidCommand as exc:
        raise ApiError(422, "invalid_request", f"invalid command: {exc.reason}") from None
    publisher: CommandPublisher = request.app.state.commands
    try:
        await publisher.publish(command)
    except PublishUnavailable as exc:
        raise ApiError(
            503,
            "unavailable",
            "admin commands are temporarily unavailable (broker unreachable); retry with the same "
            "Idempotency-Key",
        ) from exc
    body = {"command_id": command.command_id, "command": command.type,
            "customer_id": command.customer_id, "policy": command.policy}
    return Response(orjson.dumps(body), status_code=202, media_type="application/json", headers=_NO_STORE)


def _command_id(idempotency_key: str | None) -> str:
    return idempotency_key if idempotency_key is not None else str(uuid.uuid4())


@router.put(
    "/v1/customers/{customer_id}/overrides/{policy}",
    summary="Set (or replace) a customer's override under one policy",
    **_ADMIN_ROUTE,
)
async def put_override(
    customer_id: CustomerIdPath,
    policy: PolicyPath,
    body: OverrideRequest,
    request: Request,
    x_actor: ActorHeader,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Publish a ``set_override`` command (pin, floor or ceiling; effective when the worker applies it)."""
    _refuse_unknown_query(request, frozenset())
    return await _publish(
        request, SetOverride, command_id=_command_id(idempotency_key), customer_id=customer_id, policy=policy,
        actor=x_actor, reason=body.reason, kind=body.kind, tier=body.tier, expires_at=body.expires_at,
    )


@router.delete(
    "/v1/customers/{customer_id}/overrides/{policy}",
    summary="Remove a customer's override under one policy",
    **_ADMIN_ROUTE,
)
async def delete_override(
    customer_id: CustomerIdPath,
    policy: PolicyPath,
    request: Request,
    x_actor: ActorHeader,
    reason: Annotated[str, Query(min_length=1, max_length=2000, description="Why; recorded in the audit.")],
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Publish a ``remove_override`` command. ``reason`` is a query parameter: DELETE bodies are dropped by
    some clients and proxies."""
    _refuse_unknown_query(request, _REASON_ONLY)
    return await _publish(
        request, RemoveOverride, command_id=_command_id(idempotency_key), customer_id=customer_id, policy=policy,
        actor=x_actor, reason=reason,
    )


@router.post(
    "/v1/customers/{customer_id}/proposals/{proposal_id}:approve",
    summary="Approve an open tier-change proposal",
    **_ADMIN_ROUTE,
)
async def approve_proposal(
    customer_id: CustomerIdPath,
    proposal_id: Annotated[str, Path(min_length=1, max_length=128, description="Proposal id.")],
    body: ProposalDecisionRequest,
    request: Request,
    x_actor: ActorHeader,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Publish an ``approve_proposal`` command: the proposed change takes effect when the worker applies it
    (refused in the audit if the proposal is no longer open)."""
    _refuse_unknown_query(request, frozenset())
    return await _publish(
        request, ApproveProposal, command_id=_command_id(idempotency_key), customer_id=customer_id,
        policy=body.policy, actor=x_actor, reason=body.reason, proposal_id=proposal_id,
    )


@router.post(
    "/v1/customers/{customer_id}/proposals/{proposal_id}:reject",
    summary="Reject an open tier-change proposal",
    **_ADMIN_ROUTE,
)
async def reject_proposal(
    customer_id: CustomerIdPath,
    proposal_id: Annotated[str, Path(min_length=1, max_length=128, description="Proposal id.")],
    body: ProposalDecisionRequest,
    request: Request,
    x_actor: ActorHeader,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Publish a ``reject_proposal`` command: the customer keeps the held tier (recorded in the audit)."""
    _refuse_unknown_query(request, frozenset())
    return await _publish(
        request, RejectProposal, command_id=_command_id(idempotency_key), customer_id=customer_id,
        policy=body.policy, actor=x_actor, reason=body.reason, proposal_id=proposal_id,
    )


@router.get("/healthz", response_model=Status, summary="Liveness", tags=["probes"])
async def healthz(request: Request) -> Status:
    """200 while the process serves requests (no dependency checked: restarting would not fix Redis)."""
    _strict_query(request)
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses=error_responses(503), summary="Readiness", tags=["probes"])
async def readyz(request: Request) -> Status:
    """200 when Redis answers PING within the probe timeout, else 503 (take the replica out of rotation)."""
    model = _strict_query(request)
    try:
        await asyncio.wait_for(model.ping(), PROBE_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure to reach Redis means not ready
        raise ApiError(503, "unavailable", "the tier read model (Redis) is not reachable") from exc
    return Status(status="ready")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
    summary="Prometheus metrics",
    tags=["probes"],
)
async def metrics(request: Request) -> Response:
    """API metrics; refreshes the last-write gauge from Redis first (kept as is if Redis is down)."""
    model = _strict_query(request)
    try:
        last = await asyncio.wait_for(model.last_write_at(), PROBE_TIMEOUT_SECONDS)
    except Exception:  # a scrape must succeed even when Redis does not
        last = None
    if last is not None:
        READMODEL_LAST_WRITE.set(last)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
