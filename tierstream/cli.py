"""The ``tierstream`` console command: one subcommand per module in :mod:`tierstream.commands`.

Each command module exposes ``register(subparsers) -> None``, which adds its parser and sets
``func`` (``args -> int`` exit code) as a default. Modules are imported lazily by name so that a quick
command (``schemas``) does not pay for importing Faust.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Subcommand modules under tierstream.commands, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "worker",
    "replay",
    "generate",
    "simulate",
    "schemas",
    "api",
    "resync",
    "demo",
    "embedded",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every available subcommand registered)."""
    parser = argparse.ArgumentParser(prog="tierstream", description="Streaming customer-tier engine.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"tierstream.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tierstream.commands.{name}":
                continue  # command not part of this build yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run the chosen subcommand; returns its exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
