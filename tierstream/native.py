"""Build the compiled hot path: mypyc over :data:`scoring.accel.COMPILED` into ``.native/`` (``make native``).

Why: the worker is CPU-bound on its pure per-event and per-decision Python (docs/performance.md). mypyc
compiles that typed code to C extension modules with the same semantics, which decide identically (same
digests in bench/bench_hotpath.py) in less CPU. The build is optional: without a C compiler, or with
``TIERSTREAM_COMPILED=0``, everything runs from source (:mod:`scoring.accel` picks, and never runs a stale
build).

Output: ``.native/<package>/<module>.<ext>`` for each module, the shared native library
``scoring/_compiled_core__mypyc.<ext>``, and ``manifest.json`` (the sources' SHA-256, the interpreter's
extension suffix, mypy's version), written last so a failed build leaves no usable manifest.
Intermediate C sources and objects go to ``.native/build`` (kept: a rebuild after a small edit reuses
unchanged objects).

Run: ``.venv/bin/python -m tierstream.native [build|status]``; exit status 1 when the build fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path

from scoring.accel import COMPILED, GROUP, MANIFEST, NATIVE_DIR, ROOT, check, source_digests


def build(native_dir: Path = NATIVE_DIR, opt_level: str = "3") -> Path:
    """Compile :data:`COMPILED` into ``native_dir``; returns the manifest's path. Raises on failure (the
    previous manifest is removed first, so a failed build is never mistaken for a usable one)."""
    from mypy.version import __version__ as mypy_version  # a dev dependency: only the build needs it
    from mypyc.build import mypycify
    from setuptools import Distribution

    native_dir.mkdir(parents=True, exist_ok=True)
    (native_dir / MANIFEST).unlink(missing_ok=True)
    digests = source_digests(ROOT)  # the sources as compiled (an edit during the build makes it stale)
    cwd = Path.cwd()
    os.chdir(ROOT)  # mypycify reads pyproject.toml's [tool.mypy] and wants paths relative to the root
    try:
        extensions = mypycify(list(COMPILED), opt_level=opt_level, group_name=GROUP,
                              target_dir=str(native_dir / "build"))
        dist = Distribution({"name": "tierstream-native", "ext_modules": extensions})
        dist.script_name = "tierstream.native"
        dist.script_args = ["-q", "build_ext", "--build-lib", str(native_dir),
                            "--build-temp", str(native_dir / "build" / "temp"), "--parallel", str(os.cpu_count() or 1)]
        dist.parse_command_line()
        dist.run_commands()
    finally:
        os.chdir(cwd)
    manifest = native_dir / MANIFEST
    manifest.write_text(json.dumps({
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        "python": sys.version.split()[0],
        "mypy": mypy_version,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": digests,
    }, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """``build``: compile (skipped when the build matches the sources); ``status``: say whether a process
    started now would run compiled; ``clean``: remove the build."""
    ap = argparse.ArgumentParser(prog="python -m tierstream.native", description=__doc__.splitlines()[0])
    ap.add_argument("action", nargs="?", default="build", choices=("build", "status", "clean"))
    ap.add_argument("--force", action="store_true", help="rebuild even when the build is current")
    args = ap.parse_args(argv)
    if args.action == "clean":
        shutil.rmtree(NATIVE_DIR, ignore_errors=True)
        print(f"removed {NATIVE_DIR}")
        return 0
    current = check(environ={})
    if args.action == "status":
        print("compiled core: " + ("current" if current.compiled else current.reason))
        return 0 if current.compiled else 1
    if current.compiled and not args.force:
        print("compiled core: current (nothing to build)")
        return 0
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        print(f"compiled core: no C compiler ({compiler}); the worker runs the Python source "
              "(Debian: apt-get install gcc python3-dev)", file=sys.stderr)
        return 1
    print(f"compiling {len(COMPILED)} hot-path modules with mypyc into {NATIVE_DIR} (1-2 minutes on 2 cores)...",
          flush=True)
    started = time.monotonic()
    try:
        build()
    except (Exception, SystemExit) as exc:  # setuptools reports compiler failures as SystemExit
        print(f"compiled core: build failed ({exc}); the worker runs the Python source", file=sys.stderr)
        return 1
    print(f"compiled core: built in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
