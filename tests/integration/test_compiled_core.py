"""The compiled hot path (make native, scoring.accel) is the one under test, and decides what the source decides.

Runs bench/bench_hotpath.py (the worker's batch and decay path over a dict store, both scenarios: one policy
and all eleven presets) once from the compiled build and once from the Python source, and compares its three
digests: every output, every read-model record, every final state.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from scoring import accel

ROOT = Path(__file__).resolve().parents[2]


def _has_compiler() -> bool:
    return shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is not None


def _digests(compiled: bool) -> tuple[str, list[str]]:
    env = {**os.environ, "TIERSTREAM_COMPILED": "1" if compiled else "0"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_hotpath.py"), "--customers", "300", "--batch", "400",
         "--repeat", "1", "--scenarios", "one,all"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    core = re.search(r"^core: (.*)$", done.stdout, re.M)
    assert core is not None, done.stdout
    return core.group(1), re.findall(r"^\s+outputs \S+  states \S+  decisions \S+$", done.stdout, re.M)


@pytest.mark.skipif(not _has_compiler(), reason="no C compiler: the build is optional and the source runs")
def test_the_compiled_build_is_current_and_in_use() -> None:
    """make test builds it first (make native); a stale or failed build would leave the source under test."""
    status = accel.status()
    assert status.compiled, f"the compiled hot path is not in use: {status.reason}"


@pytest.mark.skipif(not accel.check().compiled, reason="no usable compiled build (make native)")
def test_compiled_and_source_decide_identically() -> None:
    compiled_core, compiled = _digests(compiled=True)
    source_core, source = _digests(compiled=False)
    assert compiled_core == "compiled (.native)"
    assert source_core.startswith("Python source")
    assert len(compiled) == 2 and compiled == source
