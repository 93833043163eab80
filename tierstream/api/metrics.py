"""Prometheus metrics of the HTTP API, in a registry of their own (the API is its own service).

- ``tierstream_api_requests_total{route,method,status}``: requests answered;
- ``tierstream_api_request_seconds{route,method}``: time to answer;
- ``tierstream_readmodel_last_write_timestamp_seconds``: the read model's ``last_write_at`` (refreshed at
  each scrape), for a staleness alert (time() - this).

``route`` is the route template (``/v1/customers/{customer_id}/tier``), never the raw path, so customer
ids cannot blow up label cardinality (nor leak into metrics). Unmatched paths count as ``unmatched``.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

API_REQUESTS = Counter(
    "tierstream_api_requests_total", "API requests answered.", ["route", "method", "status"], registry=REGISTRY
)
API_REQUEST_SECONDS = Histogram(
    "tierstream_api_request_seconds", "API request latency.", ["route", "method"], buckets=_BUCKETS, registry=REGISTRY
)
READMODEL_LAST_WRITE = Gauge(
    "tierstream_readmodel_last_write_timestamp_seconds",
    "Unix time of the newest read-model write (from Redis {prefix}meta last_write_at).",
    registry=REGISTRY,
)


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware) counting and timing each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through; record its route template, method, status and duration."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app raises before answering, the server error handler answers 500

        async def send_and_capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            API_REQUESTS.labels(template, method, str(status)).inc()
            API_REQUEST_SECONDS.labels(template, method).observe(time.perf_counter() - started)
