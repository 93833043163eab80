"""The checked-in OpenAPI document (``docs/openapi.json``): generate it, or check it has not drifted.

``python -m tierstream.api.openapi`` rewrites the file; ``--check`` exits 1 if it differs from the code.
The document depends only on code (never on the environment's settings), so it is reproducible.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: Where the document is checked in, relative to the repository root.
OPENAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def build_openapi() -> dict[str, Any]:
    """The OpenAPI document of :func:`tierstream.api.create_app`, independent of environment settings."""
    from tierstream.api.app import create_app
    from tierstream.settings import Settings

    # Explicit defaults: the document must not depend on TIERSTREAM_* variables of whoever generates it.
    settings = Settings.model_construct(**{n: f.default for n, f in Settings.model_fields.items()})
    return create_app(settings).openapi()


def render(document: dict[str, Any]) -> str:
    """Stable text of ``document`` (sorted keys, 2-space indent, final newline) so diffs stay small."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (default) or ``--check`` the document; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/openapi.json differs from the code")
    parser.add_argument("--path", type=Path, default=OPENAPI_PATH)
    args = parser.parse_args(argv)
    text = render(build_openapi())
    if args.check:
        if not args.path.exists() or args.path.read_text(encoding="utf-8") != text:
            print(f"{args.path} is out of date: run python -m tierstream.api.openapi", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(text, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
