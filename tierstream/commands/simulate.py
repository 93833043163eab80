"""``tierstream simulate``: what would happen to customers' tiers if a new policy replaced the current one.

    tierstream simulate --policy NEW [--against CURRENT] (--events FILE.jsonl | --from-state)
                        [--as-of T] [--horizon-days N] [--out-chart FILE.html] [--max-share 0.2] [--force]
                        [--limit-movers N] [--json] [--no-progress]

Customers come from an event file (folded like ``tierstream replay``: same state code, same horizon rule,
default ``--as-of`` the newest event) or from the worker's state changelog topic
(``{TIERSTREAM_APP_ID}-customer-state-changelog`` on ``TIERSTREAM_BROKER``, latest value per key; default:
each customer at the worker's last evaluation time). The current tier is ``--against``'s decision, or,
without ``--against`` (``--from-state`` only), the tier the worker holds for the new policy's id.

Output (stdout): the migration matrix (rows: current tiers, columns: new tiers), the movers (first N), the
share that changes and the rollout guard's verdict; with ``--json`` one JSON document instead. A progress
line goes to stderr on runs longer than a second when stderr is a terminal. Exit codes: 0 the guard
passes, 4 it refuses, 2 unusable arguments or input (unknown policy, unreadable file, broker error, no
customers, unsupported chart format). Invalid event lines are reported on stderr and skipped (the exit
code stays the guard's: the verdict is about the customers that could be read).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from tierstream.commands.argtypes import share, timestamp

if TYPE_CHECKING:
    from scoring.policy import CompiledPolicy
    from scoring.state import CustomerState
    from scoring.whatif import Migration

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 4
DEFAULT_MAX_SHARE = 0.2
DEFAULT_MOVERS = 20

T = TypeVar("T")


class _Unusable(Exception):
    """Input or arguments that make the simulation impossible (exit 2); the message is for the user."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``simulate`` subcommand."""
    p = sub.add_parser("simulate", help="what-if: tier migration matrix of a new policy, with the rollout guard")
    p.add_argument("--policy", required=True, metavar="FILE_OR_PRESET", help="the new policy (file or preset)")
    p.add_argument("--against", metavar="FILE_OR_PRESET", default=None,
                   help="the current policy (default with --from-state: the tiers the worker stores)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", type=Path, metavar="FILE.jsonl", help="events, one JSON per line")
    source.add_argument("--from-state", action="store_true",
                        help="customer states from the worker's changelog (TIERSTREAM_BROKER, TIERSTREAM_APP_ID)")
    p.add_argument("--as-of", type=timestamp, default=None, metavar="TIMESTAMP",
                   help="evaluation time, RFC 3339 (default: --events the newest occurred_at; --from-state each "
                        "customer's last evaluation)")
    p.add_argument("--horizon-days", type=int, default=None, metavar="N",
                   help="lateness horizon for --events (default: the longest window of the policies, capped)")
    p.add_argument("--out-chart", type=Path, default=None, metavar="FILE.html",
                   help="write the matrix as a self-contained HTML heatmap")
    p.add_argument("--max-share", type=share, default=DEFAULT_MAX_SHARE, metavar="SHARE",
                   help=f"refuse when more than this share of customers changes tier (default {DEFAULT_MAX_SHARE})")
    p.add_argument("--force", action="store_true", help="the guard passes whatever the share (reported as forced)")
    p.add_argument("--limit-movers", type=int, default=DEFAULT_MOVERS, metavar="N",
                   help=f"list at most N movers (default {DEFAULT_MOVERS}; 0: all)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the text report")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=run)




# ---------------------------------------------------------------------- progress
class Progress:
    """A one-line progress indicator on a text stream (stderr), for long runs only.

    Nothing is drawn until ``delay`` seconds have passed (short runs stay quiet), then at most every
    ``interval`` seconds: ``label [#####-----]  45%  4,500/10,000  3.2s`` with a known total, else
    ``label  4,500  3.2s``. ``close()`` ends the line (only if something was drawn). Disabled instances
    cost one comparison per update.
    """

    def __init__(self, stream: IO[str] | None, label: str, total: int | None = None, delay: float = 1.0,
                 interval: float = 0.2, clock: Any = time.monotonic, unit: str = "") -> None:
        self.stream, self.label, self.total, self.unit = stream, label, total, unit
        self.delay, self.interval, self.clock = delay, interval, clock
        self.count = 0
        self.started = clock()
        self._next = self.started + delay
        self.drawn = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units; redraw when due."""
        self.count += n
        if self.stream is not None:
            now = self.clock()
            if now >= self._next:
                self._next = now + self.interval
                self._draw(now)

    def iterate(self, items: Iterable[T], weight: Any = None) -> Iterator[T]:
        """Yield ``items``, counting each (by ``weight(item)`` when given, else 1)."""
        for item in items:
            yield item
            self.update(1 if weight is None else weight(item))

    def render(self, now: float) -> str:
        """The progress line (without carriage return) at ``now``."""
        elapsed = now - self.started
        count = self._amount(self.count)
        if self.total:
            frac = min(1.0, self.count / self.total)
            full = int(20 * frac)  # floor: the bar is full only when the work is
            bar = "#" * full + "-" * (20 - full)
            return f"{self.label} [{bar}] {frac:4.0%}  {count}/{self._amount(self.total)}  {elapsed:.1f}s"
        return f"{self.label}  {count}  {elapsed:.1f}s"

    def _amount(self, n: int) -> str:
        return f"{n / 1048576:,.1f} MiB" if self.unit == "B" else f"{n:,}"

    def _draw(self, now: float) -> None:
        assert self.stream is not None
        self.stream.write("\r" + self.render(now) + "\x1b[K")  # \x1b[K: clear the rest of a longer old line
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """Draw the final state and end the line, if anything was drawn."""
        if self.stream is not None and self.drawn:
            self._draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    """Simulate; returns the exit code (0 guard passes, 4 guard refuses, 2 unusable input)."""
    from scoring.policy import PolicyError, load_policies
    from scoring.whatif import rollout_guard
    from tierstream.charts import ChartError, check_path, write_chart

    progress_stream = None if args.no_progress or not sys.stderr.isatty() else sys.stderr
    try:
        specs = [args.policy] + ([args.against] if args.against else [])
        if args.against and args.against == args.policy:
            raise _Unusable("--policy and --against are the same")
        try:
            # loaded one by one: the same id in both is the normal case (two versions of one policy)
            new, *rest = [load_policies([s])[0] for s in specs]
        except PolicyError as exc:
            raise _Unusable(str(exc)) from exc
        current = rest[0] if rest else None
        if args.events is not None and current is None:
            raise _Unusable("--events needs --against CURRENT (an event file carries no current tiers)")
        if args.out_chart is not None:
            try:
                check_path(args.out_chart)  # fail before the (long) run, not after it
            except ChartError as exc:
                raise _Unusable(str(exc)) from exc
        if args.events is not None:
            states, at = _states_from_events(args, [new, *rest], progress_stream)
        else:
            states, at = _states_from_changelog(progress_stream), args.as_of
        result = _migrate(states, new, current, at, progress_stream)
        if result.customers == 0:
            raise _Unusable("no customers to simulate" + (f" ({result.skipped} states without events)"
                                                          if result.skipped else ""))
        ok, reason = rollout_guard(result, args.max_share, args.force)
        chart = None
        if args.out_chart is not None:
            try:
                chart = write_chart(result, args.out_chart)
            except OSError as exc:
                raise _Unusable(f"cannot write {args.out_chart}: {exc.strerror or exc}") from exc
    except _Unusable as exc:
        print(f"tierstream simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    limit = None if args.limit_movers <= 0 else args.limit_movers
    if args.json:
        import orjson

        doc = result.to_dict(limit) | {"guard": {"ok": ok, "reason": reason, "max_share": args.max_share,
                                                  "forced": bool(args.force)},
                                       "chart": None if chart is None else str(chart)}
        sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
        sys.stdout.flush()
    else:
        sys.stdout.write(report(result, ok, reason, limit, chart))
        sys.stdout.flush()
    return EXIT_OK if ok else EXIT_REFUSED


def _states_from_events(
    args: argparse.Namespace, policies: list[CompiledPolicy], stream: IO[str] | None
) -> tuple[list[CustomerState], datetime | None]:
    """Parse and fold the event file (replay's rules); returns the states and the evaluation time."""
    from schemas.events import InvalidEvent, parse_event
    from scoring.replay import fold_states
    from scoring.state import MAX_RETENTION_DAYS

    days = args.horizon_days or max(p.max_window_days for p in policies)
    horizon = timedelta(days=max(1, min(days, MAX_RETENTION_DAYS)))
    # as in replay: the file is history, so only events that could not have happened yet are refused
    now, skew = datetime.now(UTC), timedelta(seconds=300)
    events = []
    invalid = 0
    try:
        size = args.events.stat().st_size
        bar = Progress(stream, "reading events", size, unit="B")
        with args.events.open("rb") as fh:
            for number, raw in enumerate(bar.iterate(fh, len), start=1):
                if not raw.strip():
                    continue
                try:
                    events.append(parse_event(raw, now, skew))
                except InvalidEvent as exc:
                    invalid += 1
                    print(f"{args.events}:{number}: {exc.reason}: {exc.detail}", file=sys.stderr)
        bar.close()
    except OSError as exc:
        raise _Unusable(f"cannot read {args.events}: {exc.strerror or exc}") from exc
    if invalid:
        print(f"tierstream simulate: {invalid} invalid line(s) skipped", file=sys.stderr)
    at = args.as_of or max((e.occurred_at for e in events), default=None)
    bar = Progress(stream, "folding events", len(events))
    states = fold_states(bar.iterate(events), horizon, at)
    bar.close()
    return list(states.values()), at


def _states_from_changelog(stream: IO[str] | None) -> list[CustomerState]:
    """Latest state per customer from the worker's changelog topic (tombstones delete)."""
    from kafka.errors import KafkaError

    from scoring.state import CustomerState
    from tierstream.kafka_io import latest_per_key, read_topic
    from tierstream.settings import get_settings

    settings = get_settings()
    topic = f"{settings.app_id}-customer-state-changelog"  # Faust's name for the "customer-state" table
    bar = Progress(stream, f"reading {topic}")
    try:
        latest = latest_per_key(bar.iterate(read_topic(settings.broker, topic)))
    except (KafkaError, ValueError) as exc:
        # kafka-python's seek_to_beginning raises ValueError when the topic has no partitions (missing)
        raise _Unusable(f"cannot read {topic} from {settings.broker} (is TIERSTREAM_APP_ID right?): {exc}") from exc
    finally:
        bar.close()
    states = []
    bad = 0
    for key, value in latest.items():
        try:
            states.append(CustomerState.from_bytes(value))
        except ValueError as exc:
            bad += 1
            print(f"tierstream simulate: state {key!r}: {exc}", file=sys.stderr)
    if bad:
        print(f"tierstream simulate: {bad} undecodable state(s) skipped", file=sys.stderr)
    if not latest:
        raise _Unusable(f"no records in {topic} on {settings.broker} (is TIERSTREAM_APP_ID right?)")
    return states


def _migrate(
    states: list[CustomerState], new: CompiledPolicy, current: CompiledPolicy | None, at: datetime | None,
    stream: IO[str] | None,
) -> Migration:
    from scoring.whatif import migration

    bar = Progress(stream, "scoring customers", len(states))
    try:
        return migration(bar.iterate(states), new, current, at)
    finally:
        bar.close()


# ---------------------------------------------------------------------- text report
def table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """Aligned text table, columns two spaces apart. ``align`` has one letter per column, ``l`` or ``r``;
    missing letters default to the first column left, the others right (text left, numbers right)."""
    n = len(header)
    align = (align or "l").ljust(n, "r")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(n)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                         for c, w, a in zip(cells, widths, align, strict=True)).rstrip()

    return [line(header), *(line(r) for r in rows)]


def report(m: Migration, ok: bool, reason: str, limit: int | None, chart: Path | None) -> str:
    """The text report: header, matrix, movers, share and guard verdict (ends with a newline)."""
    from scoring.whatif import NO_TIER_LABEL

    when = m.at.isoformat() if m.at else "each customer's last evaluation time"
    out = [f"policy {m.policy} v{m.version} against {m.against}: {m.customers} customers at {when}", ""]
    row_totals, col_totals = m.row_totals(), m.column_totals()
    body = [[NO_TIER_LABEL if r is None else r, *map(str, m.counts[i]), str(row_totals[i])]
            for i, r in enumerate(m.rows)]
    body.append(["total", *map(str, col_totals), str(m.customers)])
    out += table(["from \\ to", *m.columns, "total"], body)
    out.append("")
    shown = m.movers if limit is None else m.movers[:limit]
    if m.movers:
        more = f", first {len(shown)}" if len(shown) < len(m.movers) else ""
        out.append(f"movers ({len(m.movers)}{more}):")
        rows = [[mv.customer_id, mv.from_tier, mv.to_tier, _num(mv.from_score), _num(mv.score)] for mv in shown]
        out += ["  " + line for line in table(["customer", "from", "to", "old score", "new score"], rows, "lllrr")]
    else:
        out.append("movers: none")
    out.append("")
    tail = f", {m.unassigned} without a current tier" if m.unassigned else ""
    out.append(f"changed: {m.changed} of {m.compared} ({m.share_changed:.1%}), {m.upgrades} up, "
               f"{m.downgrades} down{tail}")
    if m.skipped:
        out.append(f"skipped: {m.skipped} state(s) without events")
    out.append(f"rollout guard: {'PASS' if ok else 'REFUSED'}: {reason}")
    if chart is not None:
        out.append(f"chart: {chart}")
    return "\n".join(out) + "\n"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"

