"""JSON error bodies for every API error (``{"error": {"code", "message", "details"?}}``).

FastAPI's defaults (``{"detail": ...}``, its own 422 shape, HTML/plain 500s) are replaced so a client
handles one shape. Messages never include tokens or stack traces.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from schemas.readmodel import ErrorBody

log = logging.getLogger(__name__)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries with the :class:`ErrorBody` model for ``statuses``."""
    return {s: {"model": ErrorBody, "description": HTTPStatus(s).phrase} for s in statuses}


class ApiError(Exception):
    """An error the API answers with ``status`` and an :class:`ErrorBody`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The JSON response of one error."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status, headers=headers)


_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's only 400 is an undecodable body (e.g. not UTF-8); the API answers bad input with 422.
        return error_response(422, "invalid_request", "invalid request: the body is not valid UTF-8 JSON")
    code = _CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return error_response(exc.status_code, code, message, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method of every route matching the path. Starlette's own ``Allow`` lists only the first such
    route's methods, which is wrong when one path has one route per method (PUT and DELETE of overrides).
    The routes are the ones :func:`tierstream.api.app.create_app` registered in ``app.state.api_routes``
    (``app.router.routes`` holds FastAPI's wrapper of the included router, not the routes)."""
    methods: set[str] = set()
    for route in getattr(request.app.state, "api_routes", ()):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only location, message and type: pydantic's "input"/"ctx" may echo large or non-JSON values.
    details = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:3])
    return error_response(422, "invalid_request", f"invalid request: {summary}", details)


async def _redis_error(_: Request, exc: Exception) -> JSONResponse:
    log.warning("read model unavailable: %s", exc)
    return error_response(503, "unavailable", "the tier read model is temporarily unavailable; retry shortly")


async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled API error", exc_info=exc)
    return error_response(500, "internal", "internal error")


def install(app: FastAPI) -> None:
    """Register the handlers that give every error an :class:`ErrorBody`."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RedisError, _redis_error)
    app.add_exception_handler(OSError, _redis_error)  # includes socket timeouts talking to Redis
    app.add_exception_handler(Exception, _internal_error)
