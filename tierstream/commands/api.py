"""``tierstream api``: serve the HTTP tier API (uvicorn) on ``TIERSTREAM_API_HOST``/``_PORT``.

The API is stateless: run as many processes (``--workers``) or replicas as the load needs.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``api`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "api", help="Serve the HTTP tier API (reads the Redis read model).", description=__doc__
    )
    parser.add_argument("--host", default=None, help="Bind address (default: TIERSTREAM_API_HOST).")
    parser.add_argument("--port", type=int, default=None, help="Port (default: TIERSTREAM_API_PORT).")
    parser.add_argument("--workers", type=int, default=1, help="Server processes (default: 1).")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run uvicorn until interrupted; returns the exit code."""
    import uvicorn  # imported here: other commands must not pay for it

    from tierstream.settings import get_settings

    settings = get_settings()
    if not settings.api_read_tokens and not settings.api_admin_tokens:
        print("warning: no API tokens configured (TIERSTREAM_API_READ_TOKENS); every lookup will answer 401")
    uvicorn.run(
        "tierstream.api.app:create_app_from_env",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port if args.port is not None else settings.api_port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        access_log=False,  # per-request logs would cost latency and would log customer ids (confidential)
        proxy_headers=False,
    )
    return 0
