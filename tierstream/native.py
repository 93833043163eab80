"""Build the compiled hot path: mypyc over :data:`scoring.accel.COMPILED` into ``.native/`` (``make native``).

Why: the worker is CPU-bound on its pure per-event and per-decision Python (docs/performance.md). mypyc
compiles that typed code to C extension modules with the same semantics, which decide identically (same
digests in bench/bench_hotpath.py) in less CPU. The build is optional: without a C compiler, or with
``TIERSTREAM_COMPILED=0``, everything runs from source (:mod:`scoring.accel` picks, and never runs a stale
build).

Output: a build directory ``.native/build-<time>-<pid>/`` holding ``<package>/<module>.<ext>`` for each
module and the shared native library ``scoring/_compiled_core__mypyc.<ext>``; then ``manifest.json``
(which directory, the modules compiled, the files built, the interpreter's extension suffix, mypy's
version, and the SHA-256 of every source the build depends on), renamed into place last: a failed build
leaves the previous manifest, and a process never sees half a build. The two newest build directories are
kept. Intermediate C sources and objects go to ``.native/build`` (``make clean`` removes ``.native``).

Run: ``.venv/bin/python -m tierstream.native [build|status|clean] [--force] [--verbose]``; exit status 1
when the build fails or cannot run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path

from scoring.accel import COMPILED, GROUP, MANIFEST, NATIVE_DIR, ROOT, check, dependencies, source_digests

#: build directories kept under .native: the one the manifest points at and the one before it (a process
#: that chose it may still import its modules lazily)
KEEP = 2


def missing_tools() -> str | None:
    """Why this machine cannot build (no C compiler, no Python headers, no mypy or setuptools), or None."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}; Debian: apt-get install gcc)"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        return f"no Python headers ({headers}; Debian: apt-get install python3-dev)"
    for module in ("mypyc", "setuptools"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (make install installs the dev tools)"
    return None


def build(native_dir: Path = NATIVE_DIR, opt_level: str = "3", verbose: bool = False) -> Path:
    """Compile :data:`COMPILED` into a new build directory under ``native_dir``, then point the manifest at
    it (written to a temporary file and renamed: atomic). Returns the build directory. Raises on failure,
    leaving the manifest as it was (the previous build, if any, stays in use). mypyc's notes (e.g. "treating
    generator comprehension as list": harmless) are shown only with ``verbose`` or when the build fails."""
    from mypy.version import __version__ as mypy_version  # a dev dependency: only the build needs it
    from mypyc.build import mypycify
    from setuptools import Distribution

    native_dir.mkdir(parents=True, exist_ok=True)
    files = dependencies(ROOT)
    digests = source_digests(ROOT, files)  # the sources as compiled (an edit during the build makes it stale)
    out = native_dir / f"build-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
    cwd = Path.cwd()
    os.chdir(ROOT)  # mypycify reads pyproject.toml's [tool.mypy] and wants paths relative to the root
    try:
        notes = io.StringIO()
        try:
            with contextlib.redirect_stdout(sys.stdout if verbose else notes):
                extensions = mypycify(list(COMPILED), opt_level=opt_level, group_name=GROUP,
                                      target_dir=str(native_dir / "build"))
        except BaseException:
            print(notes.getvalue(), end="", file=sys.stderr)
            raise
        dist = Distribution({"name": "tierstream-native", "ext_modules": extensions})
        dist.script_name = "tierstream.native"
        # the C sources and objects go to .native/build, outside the build directory the manifest names
        dist.script_args = ["-q", "build_ext", "--build-lib", str(out),
                            "--build-temp", str(native_dir / "build" / "temp")]
        dist.parse_command_line()
        dist.run_commands()
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        os.chdir(cwd)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    outputs = sorted(p.relative_to(out).as_posix() for p in out.rglob(f"*{suffix}"))
    manifest = {
        "dir": out.name,
        "compiled": list(COMPILED),
        "outputs": outputs,
        "ext_suffix": suffix,
        "python": sys.version.split()[0],
        "mypy": mypy_version,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": digests,
    }
    staged = native_dir / f"{MANIFEST}.{os.getpid()}"
    staged.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(staged, native_dir / MANIFEST)
    _prune(native_dir, out)
    return out


def _prune(native_dir: Path, current: Path) -> None:
    """Remove build directories but the newest :data:`KEEP` (``current`` among them) and any file an older
    layout left at the top of ``native_dir``."""
    builds = sorted((p for p in native_dir.glob("build-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    keep = {current, *builds[-KEEP:]}
    for path in native_dir.iterdir():
        if path.name in (MANIFEST, "build") or path in keep:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """``build``: compile (skipped when the build matches the sources); ``status``: say whether a process
    started now would run compiled; ``clean``: remove the build."""
    ap = argparse.ArgumentParser(prog="python -m tierstream.native", description=__doc__.splitlines()[0])
    ap.add_argument("action", nargs="?", default="build", choices=("build", "status", "clean"))
    ap.add_argument("--force", action="store_true", help="rebuild even when the build is current")
    ap.add_argument("--verbose", action="store_true", help="show mypyc's notes")
    args = ap.parse_args(argv)
    if args.action == "clean":
        shutil.rmtree(NATIVE_DIR, ignore_errors=True)
        print(f"removed {NATIVE_DIR}")
        return 0
    current = check(environ={})
    if args.action == "status":
        print("compiled core: " + (f"current ({current.path})" if current.compiled else current.reason))
        return 0 if current.compiled else 1
    if current.compiled and not args.force:
        print("compiled core: current (nothing to build)")
        return 0
    why = missing_tools()
    if why is not None:
        print(f"compiled core: not built: {why}; the worker runs the Python source", file=sys.stderr)
        return 1
    why_build = "forced" if current.compiled else current.reason
    print(f"compiling {len(COMPILED)} hot-path modules with mypyc into {NATIVE_DIR} (1-2 minutes on 2 cores; "
          f"{why_build})...", flush=True)
    started = time.monotonic()
    try:
        out = build(verbose=args.verbose)
    except (Exception, SystemExit) as exc:  # setuptools reports compiler failures as SystemExit
        print(f"compiled core: build failed ({exc}); the worker runs the Python source", file=sys.stderr)
        return 1
    print(f"compiled core: built in {time.monotonic() - started:.0f}s ({out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
