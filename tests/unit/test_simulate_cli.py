"""``tierstream simulate --events``: the matrix, the movers, the guard's exit code, the HTML chart, progress."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest

from scoring.policy import load_preset
from tierstream.cli import main
from tierstream.commands.simulate import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, Progress, table
from tierstream.synth import generate_events

END = datetime(2026, 7, 1, tzinfo=UTC)
CUSTOMERS = 50


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate_events(CUSTOMERS, 11, end=END)))
    return path


@pytest.fixture(scope="module")
def five_tier_v2(tmp_path_factory) -> Path:
    """five_tier with a wider gold band (55 instead of 60): some silver customers move up, nobody else."""
    text = load_preset("five_tier").source
    src = Path(text).read_text(encoding="utf-8")
    assert "{tier: gold, gt: 60, le: 75}" in src and "\nversion: 1\n" in src
    src = src.replace("{tier: gold, gt: 60, le: 75}", "{tier: gold, gt: 55, le: 75}")
    src = src.replace("{tier: silver, gt: 40, le: 60}", "{tier: silver, gt: 40, le: 55}")
    path = tmp_path_factory.mktemp("pol") / "five_tier_v2.yaml"
    path.write_text(src.replace("\nversion: 1\n", "\nversion: 2\n"), encoding="utf-8")
    return path


class Cells(HTMLParser):
    """Collects the text of every table cell and checks that tags nest properly."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.cells: list[str] = []
        self.scripts = 0
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag not in ("meta", "br"):
            self.stack.append(tag)
        if tag in ("script", "link", "img", "iframe"):
            self.scripts += 1
        if tag in ("td", "th"):
            self._in = ""

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()
        if tag in ("td", "th"):
            self.cells.append(self._in or "")
            self._in = None

    def handle_data(self, data):
        if self._in is not None and self.stack[-1] != "small":  # <small>: the share of the row, not the count
            self._in += data


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["simulate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_different_ladders_json_matrix_guard_and_chart(events_file, tmp_path, capsys) -> None:
    chart = tmp_path / "m.html"
    code, out, _ = run_cli(capsys, "--policy", "sabcd", "--against", "five_tier", "--events", str(events_file),
                           "--as-of", "2026-07-01T00:00:00Z", "--out-chart", str(chart), "--json")
    doc = orjson.loads(out)
    assert doc["rows"] == list(load_preset("five_tier").tiers)  # rows: the current ladder
    assert doc["columns"] == list(load_preset("sabcd").tiers)  # columns: the new one
    assert sum(map(sum, doc["matrix"])) == CUSTOMERS == doc["customers"]
    # no tier name is shared: everyone moves, far above the default 20% -> refused
    assert doc["changed"] == CUSTOMERS and doc["share_changed"] == 1.0
    assert doc["guard"]["ok"] is False and code == EXIT_REFUSED
    assert len(doc["movers"]) == 20 and doc["movers_total"] == CUSTOMERS  # --limit-movers default
    assert doc["chart"] == str(chart)
    html = chart.read_text(encoding="utf-8")
    for tier in (*load_preset("five_tier").tiers, *load_preset("sabcd").tiers):
        assert f">{tier}</th>" in html
    parser = Cells()
    parser.feed(html)
    parser.close()
    assert parser.stack == [] and parser.scripts == 0  # well nested, self-contained (no JS, no external refs)
    assert "http://" not in html and "https://" not in html
    # the table is the matrix: a header row, then per current tier its name, the counts and the row total
    width = len(doc["columns"]) + 2
    rows = [parser.cells[i:i + width] for i in range(width, len(parser.cells), width)]
    assert [r[0] for r in rows] == [*doc["rows"], "total"]
    assert [[int(c) for c in r[1:-1]] for r in rows[:-1]] == doc["matrix"]
    assert rows[-1][-1] == str(CUSTOMERS)  # grand total


def test_forced_rollout_passes(events_file, capsys) -> None:
    code, out, _ = run_cli(capsys, "--policy", "sabcd", "--against", "five_tier", "--events", str(events_file),
                           "--force", "--no-progress")
    assert code == EXIT_OK
    assert "rollout guard: PASS" in out and "forced" in out


def test_text_report_same_ladder(events_file, five_tier_v2, capsys) -> None:
    code, out, _ = run_cli(capsys, "--policy", str(five_tier_v2), "--against", "five_tier", "--events",
                           str(events_file), "--limit-movers", "3", "--max-share", "1")
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0].startswith("policy five_tier v2 against five_tier v1: 50 customers at ")
    header = lines[2].split()
    assert header == ["from", "\\", "to", "diamond", "platinum", "gold", "silver", "bronze", "total"]
    matrix = {ln.split()[0]: [int(x) for x in ln.split()[1:]] for ln in lines[3:9]}
    assert list(matrix) == ["diamond", "platinum", "gold", "silver", "bronze", "total"]
    assert all(sum(r[:-1]) == r[-1] for r in matrix.values())  # row totals
    assert matrix["total"][-1] == CUSTOMERS
    # only silver -> gold can happen (the gold band grew at silver's expense)
    moved = sum(matrix["silver"][:-1]) - matrix["silver"][3]
    assert moved == matrix["silver"][2] > 0
    for tier in ("diamond", "platinum", "gold", "bronze"):
        row = matrix[tier]
        assert sum(row[:-1]) == row[("diamond", "platinum", "gold", "silver", "bronze").index(tier)]
    assert f"movers ({moved}, first 3):" in out or f"movers ({moved}):" in out
    assert re.search(rf"changed: {moved} of 50 \(\d+\.\d%\), {moved} up, 0 down", out)
    assert "rollout guard: PASS" in out
    # column alignment: every matrix line has the same width as the header
    assert len({len(ln) for ln in lines[2:9]}) == 1


def test_usage_errors(events_file, tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "--policy", "sabcd", "--events", str(events_file))
    assert code == EXIT_USAGE and "--against" in err
    code, _, err = run_cli(capsys, "--policy", "no_such_policy", "--against", "five_tier", "--events",
                           str(events_file))
    assert code == EXIT_USAGE
    code, _, err = run_cli(capsys, "--policy", "sabcd", "--against", "five_tier", "--events",
                           str(events_file), "--out-chart", str(tmp_path / "m.png"))
    assert code == EXIT_USAGE and "matplotlib" in err and not (tmp_path / "m.png").exists()
    code, _, err = run_cli(capsys, "--policy", "sabcd", "--against", "five_tier", "--events",
                           str(tmp_path / "missing.jsonl"))
    assert code == EXIT_USAGE and "cannot read" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, err = run_cli(capsys, "--policy", "sabcd", "--against", "five_tier", "--events", str(empty))
    assert code == EXIT_USAGE and "no customers" in err
    with pytest.raises(SystemExit):  # argparse: share outside [0, 1]
        main(["simulate", "--policy", "sabcd", "--from-state", "--max-share", "2"])
    capsys.readouterr()


def test_progress_line_only_on_long_runs() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = Progress(out, "scoring", total=200, delay=1.0, interval=0.5, clock=lambda: now[0])
    bar.update(50)
    assert out.getvalue() == ""  # short so far: quiet
    now[0] = 1.2
    bar.update(50)
    assert "scoring [##########----------]  50%  100/200  1.2s" in out.getvalue()
    now[0] = 1.3
    bar.update(10)
    assert out.getvalue().count("\r") == 1  # rate-limited
    now[0] = 2.0
    list(bar.iterate(range(90)))
    bar.close()
    assert out.getvalue().rstrip().endswith("200/200  2.0s\x1b[K") and out.getvalue().endswith("\n")
    quiet = io.StringIO()
    bar = Progress(quiet, "x", clock=lambda: 0.0)
    bar.update(5)
    bar.close()
    assert quiet.getvalue() == ""  # nothing drawn, nothing to end
    assert Progress(None, "bytes", total=2 * 1048576, unit="B").render(0.0).startswith("bytes [")
    assert "MiB" in Progress(None, "bytes", total=2 * 1048576, unit="B").render(0.0)


def test_table_alignment() -> None:
    assert table(["a", "bb"], [["xxx", "1"], ["y", "22"]]) == ["a    bb", "xxx   1", "y    22"]
    assert table(["n", "t"], [["1", "ab"]], "rl") == ["n  t", "1  ab"]
