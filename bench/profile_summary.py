"""Summarize a py-spy ``--format raw`` profile (collapsed stacks): top inclusive and self frames.

Run: ``.venv/bin/python bench/profile_summary.py bench/results/profile_one_policy.txt [--top 30]``.
A frame is ``function (file)`` with the line number dropped, so all lines of a function add up;
inclusive counts each frame once per stack (recursion is not double counted).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def _frame(raw: str) -> str:
    # "handle (streams/worker.py:97)" -> "handle (streams/worker.py)"; shorten site-packages paths.
    frame = _LINE.sub(")", raw.strip())
    return re.sub(r"\(.*?site-packages/", "(", frame)


def summarize(path: Path, top: int = 30) -> dict[str, object]:
    """Total samples and the ``top`` frames by inclusive and by self samples, each with its share."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        # py-spy puts the thread name first ("process 123:..." / "thread (0x...)"): not a code frame.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        for f in set(frames):
            inclusive[f] += count
        own[frames[-1]] += count

    def rows(counter: Counter[str]) -> list[dict[str, object]]:
        return [{"frame": f, "samples": n, "share": round(n / total, 4) if total else 0.0}
                for f, n in counter.most_common(top)]

    return {"samples": total, "inclusive": rows(inclusive), "self": rows(own)}


def render(summary: dict[str, object]) -> str:
    """Plain-text tables of a :func:`summarize` result."""
    out = [f"samples (non-idle): {summary['samples']}"]
    for kind in ("inclusive", "self"):
        out.append(f"\n{kind}:")
        for row in summary[kind]:  # type: ignore[attr-defined]
            out.append(f"  {100 * row['share']:5.1f}%  {row['samples']:>7}  {row['frame']}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    print(render(summarize(args.profile, args.top)))


if __name__ == "__main__":
    main()
