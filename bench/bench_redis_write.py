"""Client CPU of the read-model writer per record: ``ReadModelWriter.write`` of 10,000 one-policy records,
and per ledger entry: ``ReadModelWriter.write_ledger`` of 10,000 tier changes.

What it measures: wall time and this process's CPU time (``time.process_time``: command packing, reply
parsing, record encoding) per record, over ``--rounds`` writes of ``--records`` records of distinct
customers (each round a newer version, so every record is stored); then per ledger entry, over ``--rounds``
writes of one new tier change for each of ``--records`` distinct customers (the worker's usual batch: a
customer rarely changes tier twice in one batch), already encoded (``LedgerWrite``, as the worker gets them
from its decision processes). Needs Redis (``REDIS_URL``, default 127.0.0.1:6379); its keys live under a
fresh prefix, deleted at the end.

Run: ``.venv/bin/python bench/bench_redis_write.py [--records 10000] [--rounds 3]``.
Session 4, side by side: one script call per customer cost 21.6-27.3 µs of client CPU per record, 100
customers per call 10.3-11.4 µs (docs/performance.md). Ledger entries: session 21 (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project packages importable
    sys.path.insert(0, str(ROOT))

from schemas.readmodel import RoutingHints, TierRecord  # noqa: E402
from tierstream.readmodel.writer import LedgerWrite, ReadModelWriter  # noqa: E402


def records(n: int, version: int, now: datetime) -> list[TierRecord]:
    """``n`` records of distinct customers under one policy, all at ``version``."""
    return [TierRecord(policy_version=1, tier="gold", scored_tier="gold", score=61.5, since=now, version=version,
                       sequence=1, change_id="c", updated_at=now, routing=RoutingHints(), customer_id=f"c{i}",
                       policy="five_tier") for i in range(n)]


def ledger_writes(n: int, round_: int) -> list[LedgerWrite]:
    """One new ledger entry for each of ``n`` distinct customers (a member of ~300 bytes, like a real one)."""
    pad = "x" * 240
    return [LedgerWrite(f"c{i}", "five_tier", b'{"change_id":"%d-%d","pad":"%s"}' % (i, round_, pad.encode()),
                        1_767_225_600.0 + round_) for i in range(n)]


async def main(n: int, rounds: int) -> None:
    now = datetime.now(UTC)
    writer = ReadModelWriter(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                             prefix=f"bench:{uuid.uuid4().hex[:8]}:")
    await writer.start()
    try:
        for version in range(1, rounds + 1):
            batch = records(n, version, now)
            wall, cpu = time.perf_counter(), time.process_time()
            await writer.write(batch)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"round {version}: {wall / n * 1e6:6.1f} µs/record wall, {cpu / n * 1e6:6.1f} µs/record client CPU"
                  f" (pending {writer.pending})")
        for round_ in range(1, rounds + 1):
            entries = ledger_writes(n, round_)
            wall, cpu = time.perf_counter(), time.process_time()
            await writer.write_ledger(entries)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"ledger round {round_}: {wall / n * 1e6:6.1f} µs/entry wall, {cpu / n * 1e6:6.1f} µs/entry client "
                  f"CPU (pending {writer.pending})")
    finally:
        client = writer._client
        keys = [k async for k in client.scan_iter(match=f"{writer._keys.prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await writer.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    asyncio.run(main(args.records, args.rounds))
