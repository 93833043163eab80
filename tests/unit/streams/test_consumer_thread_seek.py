"""Regression: seeking Faust's consumer from the app's thread crashed its fetcher.

Faust's ``Consumer.seek`` calls aiokafka's ``seek`` from the app's thread while the aiokafka consumer runs in
its own thread: a kill -9 restart on a loaded machine died with ``KeyError: TopicPartition(...)`` in
``Fetcher.fetched_records`` (the seek deleted the fetch result the fetcher was reading). The worker seeks
through :func:`streams.faust_patches.seek` (``seek_wait``: run in the consumer thread). Seeks happen only
after rebalances and on verified holes, so no test can hit the race reliably; this one keeps any direct
``.seek(`` on a Faust consumer out of ``streams/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

STREAMS = Path(__file__).resolve().parents[3] / "streams"
#: modules whose ``.seek(`` calls are not on Faust's consumer (tansu.py: its own kafka-python consumer)
NOT_FAUST = {"tansu.py"}


def test_streams_never_seek_faust_consumers_from_the_app_thread() -> None:
    direct = []
    for path in sorted(STREAMS.glob("*.py")):
        if path.name in NOT_FAUST:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "seek":
                owner = node.func.value
                if not (isinstance(owner, ast.Name) and owner.id == "faust_patches"):
                    direct.append(f"{path.name}:{node.lineno}")
    assert direct == [], f"seek Faust's consumer with streams.faust_patches.seek: {direct}"
