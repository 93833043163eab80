"""The compiled hot path (make native, scoring.accel) is the one under test, and decides what the source decides.

Runs bench/bench_hotpath.py (the worker's batch and decay path over a dict store, both scenarios: one policy
and all eleven presets) once from the compiled build and once from the Python source, and compares its three
digests: every output, every read-model record, every final state.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from scoring import accel
from tierstream.native import missing_tools

ROOT = Path(__file__).resolve().parents[2]


def _digests(compiled: bool) -> tuple[str, list[str]]:
    env = {**os.environ, "TIERSTREAM_COMPILED": "1" if compiled else "0"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_hotpath.py"), "--customers", "300", "--batch", "400",
         "--repeat", "1", "--scenarios", "one,all"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    core = re.search(r"^core: (.*)$", done.stdout, re.M)
    assert core is not None, done.stdout
    return core.group(1), re.findall(r"^\s+outputs \S+  states \S+  decisions \S+$", done.stdout, re.M)


@pytest.mark.skipif(missing_tools() is not None, reason=f"the build is optional: {missing_tools()}")
@pytest.mark.skipif(accel.disabled(os.environ), reason="TIERSTREAM_COMPILED=0: this run tests the source")
def test_the_compiled_build_is_current_and_every_compiled_module_loads_from_it() -> None:
    """make test builds it first (make native); a stale or failed build would leave the source under test,
    and a package without accel.extend_path would load its modules from source."""
    status = accel.status()
    assert status.compiled, f"the compiled hot path is not in use: {status.reason}"
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for rel in accel.COMPILED:
        module = importlib.import_module(rel.removesuffix(".py").replace("/", "."))
        assert module.__file__ is not None and module.__file__.endswith(suffix), module.__file__
        assert status.path is not None and Path(module.__file__).is_relative_to(status.path)


@pytest.mark.skipif(not accel.check().compiled, reason="no usable compiled build (make native)")
def test_compiled_and_source_decide_identically() -> None:
    compiled_core, compiled = _digests(compiled=True)
    source_core, source = _digests(compiled=False)
    assert compiled_core == "compiled (.native)"
    assert source_core.startswith("Python source")
    assert len(compiled) == 2 and compiled == source
