"""``tierstream replay``: tier every customer of an event file (JSON lines) at a point in event time.

Prints one JSON line per customer and policy, sorted by (customer_id, policy), to stdout. Invalid input
lines are reported on stderr with their line number and reason and skipped; exit code 0 when every line
was valid, 3 when some were not, 2 for unusable arguments (unknown policy, unreadable file).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tierstream.commands.argtypes import timestamp

EXIT_INVALID_LINES = 3


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``replay`` subcommand."""
    p = sub.add_parser("replay", help="tier every customer of an events file at a point in event time")
    p.add_argument("--policy", action="append", required=True, metavar="FILE_OR_PRESET",
                   help="policy file or preset name (repeatable)")
    p.add_argument("--events", type=Path, required=True, metavar="FILE.jsonl", help="events, one JSON per line")
    p.add_argument("--as-of", type=timestamp, default=None, metavar="TIMESTAMP",
                   help="evaluation time, RFC 3339 (default: the newest occurred_at in the file)")
    p.add_argument("--horizon-days", type=int, default=None, metavar="N",
                   help="lateness horizon in days (default: the longest window of the policies, capped)")
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    """Replay the file; returns the exit code (0 all valid, 3 some lines invalid, 2 bad arguments)."""
    import orjson

    from schemas.events import InvalidEvent, parse_event
    from scoring.policy import PolicyError, load_policies
    from scoring.replay import replay
    from scoring.state import MAX_RETENTION_DAYS

    try:
        policies = load_policies(args.policy)
    except PolicyError as exc:
        print(f"tierstream replay: {exc}", file=sys.stderr)
        return 2
    days = args.horizon_days or max(p.max_window_days for p in policies)
    horizon = timedelta(days=max(1, min(days, MAX_RETENTION_DAYS)))
    # Future-timestamp check against the wall clock, with the worker's default skew: a replayed file is
    # history, so only events that could not have happened yet are refused.
    now, skew = datetime.now(UTC), timedelta(seconds=300)
    events = []
    invalid = 0
    try:
        with args.events.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    events.append(parse_event(raw, now, skew))
                except InvalidEvent as exc:
                    invalid += 1
                    print(f"{args.events}:{number}: {exc.reason}: {exc.detail}", file=sys.stderr)
    except OSError as exc:
        print(f"tierstream replay: cannot read {args.events}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    out = sys.stdout.buffer
    for row in replay(events, policies, args.as_of, horizon):
        out.write(orjson.dumps(row.to_dict()) + b"\n")
    out.flush()
    if invalid:
        print(f"tierstream replay: {invalid} invalid line(s) skipped", file=sys.stderr)
        return EXIT_INVALID_LINES
    return 0
