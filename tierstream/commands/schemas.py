"""``tierstream schemas``: write every contract document (JSON Schema) to a directory or stdout."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``schemas`` subcommand."""
    p = sub.add_parser("schemas", help="export the JSON Schema of every event and output")
    p.add_argument("--out", type=Path, help="directory to write into (default: print the event union)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the documents; returns 0."""
    from schemas.export import documents

    docs = documents()
    if args.out is None:
        print(docs["event.schema.json"], end="")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (args.out / name).write_text(text)
        print(args.out / name)
    return 0
