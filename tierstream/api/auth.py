"""Bearer-token authentication with two scopes: ``read`` (tier lookups) and ``admin`` (admin implies read).

Tokens come from settings (``api_read_tokens``, ``api_admin_tokens``). Every configured token is compared
with :func:`hmac.compare_digest` and all comparisons run (no early exit), so response time does not reveal
how much of a token matched nor which list it is in. No token configured for a scope = nobody has it.
Missing/unknown token: 401 with ``WWW-Authenticate: Bearer``; known token without the scope: 403.

The header is parsed here rather than by FastAPI's ``HTTPBearer`` dependency: each dependency costs
tens of microseconds per request on the lookup hot path. The bearer scheme is declared in OpenAPI by
:func:`document_security` and :data:`SECURITY_REQUIREMENT` instead.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request

from tierstream.api.errors import ApiError

Scope = Literal["read", "admin"]

#: OpenAPI security scheme name and definition, and the requirement routes declare (``openapi_extra``).
SECURITY_SCHEME_NAME = "HTTPBearer"
SECURITY_SCHEME: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "description": "Bearer token with read or admin scope (admin implies read).",
}
SECURITY_REQUIREMENT: list[dict[str, list[str]]] = [{SECURITY_SCHEME_NAME: []}]


@dataclass(frozen=True, slots=True)
class TokenStore:
    """The configured tokens, as bytes (compare_digest on str refuses non-ASCII input)."""

    read: tuple[bytes, ...]
    admin: tuple[bytes, ...]

    @classmethod
    def from_settings(cls, read_tokens: tuple[str, ...], admin_tokens: tuple[str, ...]) -> TokenStore:
        """Tokens of both scopes; empty strings are ignored (they would match an empty header)."""
        return cls(
            read=tuple(t.encode("utf-8") for t in read_tokens if t),
            admin=tuple(t.encode("utf-8") for t in admin_tokens if t),
        )

    def scopes(self, token: str) -> frozenset[Scope] | None:
        """Scopes of ``token``; ``None`` if it is no configured token."""
        presented = token.encode("utf-8", "surrogateescape")
        is_read = _any_equal(presented, self.read)
        is_admin = _any_equal(presented, self.admin)
        if is_admin:
            return _ADMIN
        if is_read:
            return _READ
        return None


_READ: frozenset[Scope] = frozenset(("read",))
_ADMIN: frozenset[Scope] = frozenset(("read", "admin"))
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _any_equal(presented: bytes, tokens: tuple[bytes, ...]) -> bool:
    found = False
    for token in tokens:
        found |= hmac.compare_digest(presented, token)  # no short-circuit: constant work per list
    return found


def authorize(request: Request, scope: Scope) -> None:
    """Raise 401 unless ``request`` carries ``Authorization: Bearer <configured token>``, 403 unless that
    token has ``scope``; return otherwise."""
    header = request.headers.get("authorization", "")
    kind, _, token = header.partition(" ")
    token = token.strip()
    if kind.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "missing bearer token", headers=_CHALLENGE)
    tokens: TokenStore = request.app.state.tokens
    scopes = tokens.scopes(token)
    if scopes is None:
        raise ApiError(401, "unauthorized", "invalid bearer token", headers=_CHALLENGE)
    if scope not in scopes:
        raise ApiError(403, "forbidden", f"this token lacks the {scope!r} scope")


def require_scope(scope: Scope) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency (use with ``openapi_extra={"security": SECURITY_REQUIREMENT}``) admitting only
    requests with a token of ``scope``."""

    async def check(request: Request) -> None:
        authorize(request, scope)

    return check


def document_security(app: FastAPI) -> None:
    """Add the bearer scheme to ``app``'s OpenAPI components (routes reference it by name)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})[SECURITY_SCHEME_NAME] = (
                SECURITY_SCHEME
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
