"""``tierstream worker``: run one stream worker (configuration from TIERSTREAM_* variables)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``worker`` subcommand."""
    p = sub.add_parser("worker", help="run a stream worker (consume events, score, emit tier changes)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the topology and run it until SIGTERM/SIGINT; returns the exit code."""
    import faust

    from streams.topology import build_worker
    from tierstream import logs
    from tierstream.settings import get_settings

    settings = get_settings()
    logs.configure(settings.log_level)
    app, _ = build_worker(settings)
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0
