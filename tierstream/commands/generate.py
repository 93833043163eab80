"""``tierstream generate``: write a deterministic synthetic event stream as JSON lines.

Same arguments (and explicit ``--start``/``--end``) give a byte-identical file. See :mod:`tierstream.synth`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tierstream.commands.argtypes import share, timestamp


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``generate`` subcommand."""
    p = sub.add_parser("generate", help="write a synthetic event stream (JSON lines)")
    p.add_argument("--customers", type=int, required=True, metavar="N", help="number of customers")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.jsonl", help="output file ('-' for stdout)")
    p.add_argument("--start", type=timestamp, default=None, metavar="ISO", help="first event time (default end-730d)")
    p.add_argument("--end", type=timestamp, default=None, metavar="ISO", help="last event time (default now)")
    p.add_argument("--duplicates", type=share, default=0.05, help="share of exact duplicates (default 0.05)")
    p.add_argument("--late", type=share, default=0.02, help="share of events emitted late (default 0.02)")
    p.add_argument("--invalid", type=share, default=0.0, help="share of invalid lines (default 0)")
    p.set_defaults(func=run)




def run(args: argparse.Namespace) -> int:
    """Generate and write the file; prints a one-line summary on stderr; returns 0."""
    import orjson

    from tierstream.synth import generate_events

    if args.customers < 1:
        print("tierstream generate: --customers must be at least 1", file=sys.stderr)
        return 2
    events = generate_events(
        args.customers, args.seed, start=args.start, end=args.end,
        duplicates=args.duplicates, late=args.late, invalid=args.invalid,
    )
    data = b"".join(orjson.dumps(e) + b"\n" for e in events)
    if str(args.out) == "-":
        sys.stdout.buffer.write(data)
    else:
        args.out.write_bytes(data)
    print(f"tierstream generate: {len(events)} events of {args.customers} customers -> {args.out}", file=sys.stderr)
    return 0
