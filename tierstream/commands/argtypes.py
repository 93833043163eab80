"""Argument types shared by the subcommands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse
from datetime import datetime


def timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp with an offset (``Z`` accepted); a naive one is refused."""
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        raise argparse.ArgumentTypeError("timestamp needs an offset, e.g. 2026-07-01T00:00:00Z")
    return ts


def share(text: str) -> float:
    """A fraction within [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a share must be within [0, 1], e.g. 0.2")
    return value
