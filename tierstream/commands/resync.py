"""``tierstream resync``: rebuild the Redis read model from the workers' state, while the workers run.

Reads the customer-state table's changelog topic (``<app_id>-customer-state-changelog``) from the
beginning, keeps the latest value per customer (a tombstone removes it), decodes each state and writes the
records it implies (:func:`streams.decide.read_records`, the records the worker last wrote, with
``updated_at`` = now) through :meth:`ReadModelWriter.resync`. Safe at any time: the writer's version guard
keeps whatever Redis holds that is as new or newer (a worker wrote it meanwhile), so the command only
fills in what is missing or older. ``--ledger`` also re-adds every change of the tier-changes topic to the
tier ledger (idempotent; each ledger keeps its newest 200 entries).

Memory: the latest state bytes of every customer are held while the changelog is read (O(customers x
state size)), since the topic may hold many versions per customer (the embedded broker never compacts).

Exit codes: 0 done; 1 Redis failed (nothing is rolled back: run it again); 2 unusable settings (policies).
Progress goes to stderr, the summary line to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

#: Print a progress line at most this often (seconds).
PROGRESS_EVERY_SECONDS = 0.5


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``resync`` subcommand."""
    p = sub.add_parser(
        "resync",
        help="rebuild the Redis read model from worker state (safe while workers run)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--idle-seconds", type=float, default=5.0, metavar="S",
                   help="stop reading a topic after S seconds without a new record (default: 5)")
    p.add_argument("--ledger", action="store_true",
                   help="also rebuild the tier ledger from the tier-changes topic")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    p.set_defaults(func=run)


class Progress:
    """Rate-limited ``\\r`` progress line on ``stream`` (a terminal shows one updating line)."""

    def __init__(self, stream: TextIO, enabled: bool = True) -> None:
        """Write to ``stream`` unless ``enabled`` is false."""
        self.stream = stream
        self.enabled = enabled
        self._last = 0.0

    def update(self, text: str, force: bool = False) -> None:
        """Show ``text`` if enough time passed since the last line (or ``force``)."""
        now = time.monotonic()
        if self.enabled and (force or now - self._last >= PROGRESS_EVERY_SECONDS):
            self._last = now
            self.stream.write(f"\r{text}\033[K")
            self.stream.flush()

    def done(self, text: str) -> None:
        """Final state of the line, then a newline."""
        if self.enabled:
            self.update(text, force=True)
            self.stream.write("\n")
            self.stream.flush()


def bar(done: int, total: int, width: int = 30) -> str:
    """``[#####.....]  50%`` for ``done`` of ``total``."""
    fraction = done / total if total else 1.0
    filled = int(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}"


def latest_states(broker: str, topic: str, idle_seconds: float, progress: Progress) -> dict[bytes, bytes]:
    """Latest value per key of the changelog ``topic`` (tombstones remove the key)."""
    from tierstream.kafka_io import latest_per_key, read_topic

    counts = {"read": 0}

    def counted() -> Iterator[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
        for record in read_topic(broker, topic, timeout=idle_seconds):
            counts["read"] += 1
            progress.update(f"reading {topic}: {counts['read']:,} records")
            yield record

    latest = latest_per_key(counted())
    progress.done(f"read {topic}: {counts['read']:,} records, {len(latest):,} customers")
    return latest


def run(args: argparse.Namespace) -> int:
    """Resync from the configured topics into the configured Redis; returns the exit code."""
    from scoring.policy import PolicyError, load_policies
    from tierstream.settings import get_settings

    settings = get_settings()
    try:
        policies = load_policies(settings.policies)
    except PolicyError as exc:
        print(f"tierstream resync: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_resync(settings, policies, args, Progress(sys.stderr, not args.quiet)))


async def _resync(settings: Any, policies: list[Any], args: argparse.Namespace, progress: Progress) -> int:
    from redis.exceptions import RedisError

    from scoring.state import CustomerState
    from streams.app import STATE_TABLE
    from streams.decide import read_records
    from streams.topics import Topics
    from tierstream.readmodel import ReadModelWriter

    started = time.monotonic()
    changelog = f"{settings.app_id}-{STATE_TABLE}-changelog"
    states = await asyncio.to_thread(latest_states, settings.broker, changelog, args.idle_seconds, progress)
    now = datetime.now(UTC)
    undecodable = 0
    customers = len(states)

    def records() -> Iterator[Any]:
        nonlocal undecodable
        for done, (key, raw) in enumerate(states.items(), start=1):
            try:
                state = CustomerState.from_bytes(raw)
            except (ValueError, KeyError, TypeError) as exc:
                undecodable += 1
                print(f"\ntierstream resync: state of {key!r} does not decode: {exc}", file=sys.stderr)
                continue
            yield from read_records(state, policies, now)
            progress.update(f"writing records {bar(done, customers)} {done:,}/{customers:,} customers")

    writer = ReadModelWriter.from_settings(settings)
    await writer.start()
    try:
        result = await writer.resync(records())
        progress.done(f"writing records {bar(customers, customers)} {customers:,}/{customers:,} customers")
        ledger = None
        if args.ledger:
            ledger = await _resync_ledger(writer, settings, Topics(settings.topic_prefix).tier_changes, args, progress)
    except (RedisError, OSError) as exc:
        print(f"\ntierstream resync: Redis failed: {exc} (nothing is rolled back; run again)", file=sys.stderr)
        return 1
    finally:
        await writer.stop()
    summary = (
        f"resync: {customers:,} customers, {result.total:,} records: {result.applied:,} written, "
        f"{result.skipped:,} already current in Redis"
    )
    if undecodable:
        summary += f", {undecodable:,} undecodable states skipped"
    if ledger is not None:
        summary += f"; ledger: {ledger.total:,} changes, {ledger.applied:,} added"
    print(f"{summary} ({time.monotonic() - started:.1f} s)")
    return 0


async def _resync_ledger(writer: Any, settings: Any, topic: str, args: argparse.Namespace, progress: Progress) -> Any:
    """Re-add every tier change of ``topic`` to the ledger (idempotent); returns the ResyncResult."""
    from pydantic import ValidationError

    from schemas.outputs import TierChangeEvent
    from tierstream.kafka_io import read_topic

    values = await asyncio.to_thread(
        lambda: [value for _key, value, _headers in read_topic(settings.broker, topic, timeout=args.idle_seconds)]
    )

    def changes() -> Iterator[TierChangeEvent]:
        for done, value in enumerate(values, start=1):
            try:
                yield TierChangeEvent.model_validate_json(value)
            except ValidationError as exc:
                print(f"\ntierstream resync: skipping an undecodable tier change: {exc}", file=sys.stderr)
            progress.update(f"writing ledger {bar(done, len(values))} {done:,}/{len(values):,} changes")

    result = await writer.resync_ledger(changes())
    progress.done(f"writing ledger {bar(len(values), len(values))} {len(values):,}/{len(values):,} changes")
    return result
