"""Charts of a tier migration for people: a self-contained HTML heatmap (no JavaScript, no CDN).

``write_chart(migration, path)`` writes the from-tier x to-tier matrix of a
:class:`scoring.whatif.Migration` as an HTML table whose cell colours encode the counts: customers who
keep their tier (same name) on a blue scale, customers who move on an orange scale, each relative to the
largest cell of its kind, so the moves stand out even when most customers stay. Every cell also shows
its number and its share of the row, so the colours are never the only carrier of the information.

PNG is not supported: it would need matplotlib, which tierstream does not depend on. A ``.png`` path
raises :class:`ChartError` with that explanation.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from scoring.whatif import NO_TIER_LABEL, Migration

HTML_SUFFIXES = (".html", ".htm")
# Colour scales (light -> dark): kept = blue, moved = orange. Light enough at the low end that a cell
# with one customer is still visibly coloured against the white of empty cells.
_KEPT = ((222, 235, 247), (8, 81, 156))
_MOVED = ((254, 230, 206), (166, 54, 3))


class ChartError(ValueError):
    """The chart cannot be written in the requested format (message says why)."""


def write_chart(migration: Migration, path: Path, title: str | None = None) -> Path:
    """Write the migration chart to ``path`` (``.html`` / ``.htm``); returns the path.

    Raises :class:`ChartError` for another suffix (``.png`` needs matplotlib, not installed) and
    ``OSError`` when the file cannot be written.
    """
    check_path(path)
    path.write_text(migration_html(migration, title), encoding="utf-8")
    return path


def check_path(path: Path) -> None:
    """Raise :class:`ChartError` when ``path``'s format is not supported (so callers can fail early)."""
    suffix = path.suffix.lower()
    if suffix not in HTML_SUFFIXES:
        if suffix == ".png":
            raise ChartError("PNG charts need matplotlib, which is not installed; write .html instead")
        raise ChartError(f"unknown chart format {suffix or '(no suffix)'!r}; use .html")


def _mix(scale: tuple[tuple[int, int, int], tuple[int, int, int]], t: float) -> tuple[int, int, int]:
    lo, hi = scale
    return (round(lo[0] + (hi[0] - lo[0]) * t), round(lo[1] + (hi[1] - lo[1]) * t),
            round(lo[2] + (hi[2] - lo[2]) * t))


def _cell_style(count: int, peak: int, scale: tuple[tuple[int, int, int], tuple[int, int, int]]) -> str:
    if count == 0 or peak == 0:
        return "background:#fff;color:#999"
    # square root: a few large cells would otherwise wash out every small one
    t = (count / peak) ** 0.5
    r, g, b = _mix(scale, t)
    text = "#fff" if t > 0.55 else "#111"  # readable on dark cells
    return f"background:rgb({r},{g},{b});color:{text}"


def migration_html(m: Migration, title: str | None = None) -> str:
    """The chart as one HTML document (inline CSS only). Tier names are HTML-escaped."""
    title = title or f"Tier migration: {m.policy} v{m.version} against {m.against}"
    labels = [NO_TIER_LABEL if r is None else r for r in m.rows]
    kept_peak = max((m.counts[i][j] for i, r in enumerate(m.rows) for j, c in enumerate(m.columns) if r == c),
                    default=0)
    moved_peak = max((m.counts[i][j] for i, r in enumerate(m.rows) for j, c in enumerate(m.columns)
                      if r != c and r is not None), default=0)
    none_peak = max((m.counts[i][j] for i, r in enumerate(m.rows) for j in range(len(m.columns)) if r is None),
                    default=0)
    row_totals, col_totals = m.row_totals(), m.column_totals()
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        "<style>",
        "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#111}",
        "table.matrix{border-collapse:collapse;margin:16px 0}",
        ".matrix th,.matrix td{border:1px solid #ccc;padding:6px 10px;text-align:right;min-width:64px}",
        ".matrix thead th{background:#f3f3f3}",
        ".matrix th.row{background:#f3f3f3;text-align:left}",
        ".matrix td.total,.matrix th.total{background:#fafafa;font-weight:600}",
        ".matrix td.kept{outline:2px solid #111;outline-offset:-2px}",
        ".matrix td small{display:block;font-size:11px;opacity:.8}",
        ".corner{font-weight:400;color:#555;text-align:left!important}",
        ".legend span{display:inline-block;width:14px;height:14px;vertical-align:middle;margin:0 4px 0 12px}",
        ".summary{margin:4px 0}",
        "</style></head><body>",
        f"<h1 style=\"font-size:20px\">{escape(title)}</h1>",
        f'<p class="summary">{m.customers} customers; {m.changed} of {m.compared} with a current tier would '
        f"change ({m.share_changed:.1%}): {m.upgrades} up, {m.downgrades} down"
        + (f"; {m.unassigned} without a current tier" if m.unassigned else "")
        + (f"; at {escape(m.at.isoformat())}" if m.at else "; each customer at its last evaluation time")
        + "</p>",
        '<table class="matrix" aria-label="migration matrix">',
        f'<thead><tr><th class="corner">current ({escape(m.against)}) ↓ &nbsp; new ({escape(m.policy)} '
        f"v{m.version}) →</th>",
    ]
    out += [f'<th scope="col">{escape(c)}</th>' for c in m.columns]
    out.append('<th class="total" scope="col">total</th></tr></thead><tbody>')
    for i, label in enumerate(labels):
        row = m.rows[i]
        out.append(f'<tr><th class="row" scope="row">{escape(label)}</th>')
        for j, col in enumerate(m.columns):
            n = m.counts[i][j]
            if row is None:
                style, cls = _cell_style(n, none_peak, ((240, 240, 240), (99, 99, 99))), ""
            elif row == col:
                style, cls = _cell_style(n, kept_peak, _KEPT), ' class="kept"'
            else:
                style, cls = _cell_style(n, moved_peak, _MOVED), ""
            share = f"<small>{n / row_totals[i]:.0%}</small>" if n and row_totals[i] else ""
            tip = f"{label} → {col}: {n}"
            out.append(f'<td{cls} style="{style}" title="{escape(tip)}">{n}{share}</td>')
        out.append(f'<td class="total">{row_totals[i]}</td></tr>')
    out.append('<tr><th class="row total" scope="row">total</th>')
    out += [f'<td class="total">{t}</td>' for t in col_totals]
    out.append(f'<td class="total">{m.customers}</td></tr></tbody></table>')
    out.append(
        '<p class="legend">'
        f'<span style="background:rgb{_KEPT[1]}"></span>keeps the tier (outlined)'
        f'<span style="background:rgb{_MOVED[1]}"></span>moves'
        '<span style="background:rgb(99,99,99)"></span>no current tier'
        " &nbsp; darker = more customers (square-root scale per kind); small number = share of the row</p>"
    )
    out.append("</body></html>\n")
    return "\n".join(out)
