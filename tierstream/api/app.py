"""FastAPI application factory of the tier API: a stateless service reading the Redis read model.

Any number of replicas may run behind a load balancer: they share nothing but Redis. Interactive docs
(Swagger/ReDoc) are off, since they load scripts from a CDN; the OpenAPI document is at ``/openapi.json``
and checked in as ``docs/openapi.json``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from streams.topics import Topics
from tierstream.api import errors
from tierstream.api.auth import TokenStore, document_security
from tierstream.api.commands import CommandPublisher
from tierstream.api.metrics import MetricsMiddleware
from tierstream.api.routes import router
from tierstream.readmodel import ReadModelReader
from tierstream.settings import Settings

#: Version of the HTTP contract (not of the package): bump on any change of docs/openapi.json.
API_VERSION = "1.1.0"

DESCRIPTION = """\
Live customer tiers for support routing, read from the tierstream Redis read model.

Authentication: `Authorization: Bearer <token>`; tokens have the `read` or `admin` scope (admin implies
read). Every error has the body `{"error": {"code", "message", "details"?}}`. Tier data are confidential.

Admin routes (admin scope) publish a command to the stream workers and answer 202 with its `command_id`;
the worker applies it and records the outcome (accepted or refused, and why) on the admin-audit topic.
They require `X-Actor` (the person the calling system acts for; recorded as the actor) and accept
`Idempotency-Key` (becomes the `command_id`: retry with the same key and the command is applied once).
"""


def create_app(settings: Settings) -> FastAPI:
    """The API for ``settings`` (Redis URL and prefix, tokens, broker and topic prefix for admin commands).
    Redis and the broker are connected at start-up (lifespan); neither being down stops the start."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.reader = ReadModelReader.from_settings(settings)
        # Admin commands go to the workers through the broker; lookups must not depend on it, so a broker
        # that is down at start-up only makes admin routes answer 503 until it is back.
        app.state.commands = CommandPublisher(
            settings.broker, Topics(settings.topic_prefix).admin_commands, embedded_broker=settings.embedded_broker
        )
        await app.state.commands.start()
        try:
            yield
        finally:
            await app.state.commands.aclose()
            await app.state.reader.aclose()

    app = FastAPI(
        title="tierstream API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.tokens = TokenStore.from_settings(settings.api_read_tokens, settings.api_admin_tokens)
    errors.install(app)
    app.include_router(router)
    app.state.api_routes = tuple(router.routes)  # for the 405 handler's Allow header (errors.py)
    app.add_middleware(MetricsMiddleware)
    document_security(app)
    return app


def create_app_from_env() -> FastAPI:
    """App factory for uvicorn (``factory=True``): settings from the environment, read once per process."""
    from tierstream.settings import get_settings

    return create_app(get_settings())
