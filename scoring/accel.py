"""Whether the worker's hot path runs compiled (mypyc), and the import plumbing that makes it so.

``make native`` (:mod:`tierstream.native`) compiles the pure hot-path modules (:data:`COMPILED`: state,
features, policy evaluation, lifecycle, ``streams.decide`` and ``streams.batch``) with mypyc into a build
directory under ``.native/``, and then points ``.native/manifest.json`` at it (written whole and renamed
into place, so a process sees the old build or the new one, never half of one). The manifest holds the
SHA-256 of every source the build depends on: the compiled modules and every project module they import,
directly or not (mypyc bakes their types, and even their ``Final`` constants, into the C code), and the
list of extension files built. The four packages holding compiled modules (``scoring``,
``scoring.policy``, ``scoring.lifecycle``, ``streams``) call :func:`extend_path` from their
``__init__``: when the build is *usable*, its directory goes first on the package's ``__path__``, so
``import scoring.state`` loads the extension module; otherwise the ``.py`` source loads.

Invariants:
- **All or nothing.** The compiled modules share one native library and use each other's classes
  natively, so either every module of :data:`COMPILED` loads compiled or none does. The decision is made
  once per process, at the first package import, and never changes after.
- **Never stale.** A build is used only if its manifest lists exactly :data:`COMPILED`, every file it
  built exists, it was made for this interpreter, and every source it depends on is byte for byte what
  it compiled. Otherwise (an edited ``.py`` after ``make native``, a module added to or dropped from
  :data:`COMPILED`, a half-deleted build) the process runs the source, and :func:`status` says why. A
  stale build can slow a worker down; it can never run old code.
- **Same decisions.** Compiled and interpreted runs decide identically (the hot-path benchmark's digests,
  tests/integration/test_compiled_core.py).

``TIERSTREAM_COMPILED=0`` (``Settings.compiled``; any of pydantic's false spellings) runs the source even
when a usable build exists; it is read from the environment here because it must be known before the
first import of a compiled module.

Inputs: the files under ``.native/`` and the sources. Outputs: :func:`status`. No other I/O.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sysconfig
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: The compiled modules, as source paths relative to the repository root (tierstream.native builds them).
COMPILED: tuple[str, ...] = (
    "scoring/buckets.py",
    "scoring/dedup.py",
    "scoring/features.py",
    "scoring/state.py",
    "scoring/state_tables.py",
    "scoring/timers.py",
    "scoring/policy/adjustments.py",
    "scoring/policy/compared.py",
    "scoring/policy/compiled.py",
    "scoring/policy/conditions.py",
    "scoring/policy/context.py",
    "scoring/policy/intervals.py",
    "scoring/policy/lifecycle.py",
    "scoring/policy/scores.py",
    "scoring/policy/tiers.py",
    "scoring/lifecycle/commands.py",
    "scoring/lifecycle/engine.py",
    "scoring/lifecycle/machine.py",
    "scoring/lifecycle/results.py",
    "scoring/lifecycle/reviews.py",
    "scoring/lifecycle/track.py",
    "streams/batch.py",
    "streams/decide.py",
    "streams/partitioning.py",
    "streams/topics.py",
)

ROOT = Path(__file__).resolve().parent.parent
NATIVE_DIR = ROOT / ".native"
MANIFEST = "manifest.json"
#: the native library of the build (mypyc group name): a module of the ``scoring`` package
GROUP = "scoring._compiled_core"
#: pydantic's spellings of false for a bool setting (Settings.compiled): both readers agree
FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
#: the project's top-level packages: imports of anything else are not the build's to track
PACKAGES = ("scoring", "streams", "schemas", "tierstream")


@dataclass(frozen=True, slots=True)
class Status:
    """``compiled``: the hot path runs the mypyc build in ``path``; ``reason``: why not, when it does not."""

    compiled: bool
    reason: str
    path: Path | None = None


def _module_file(root: Path, name: str) -> str | None:
    """The source of project module ``name`` under ``root`` (relative path), None when it is not one."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = Path(*name.split("."))
    for rel in (base.with_suffix(".py"), base / "__init__.py"):
        if (root / rel).is_file():
            return rel.as_posix()
    return None


def dependencies(root: Path = ROOT, modules: Iterable[str] = COMPILED) -> list[str]:
    """The sources a build of ``modules`` depends on: those files, every project module they import (any
    ``import`` statement, at any depth of the file and of the import graph) and the packages on the way,
    as sorted paths relative to ``root``. A static over-approximation: an import inside a function or
    under ``TYPE_CHECKING`` counts too, since mypyc reads its types all the same."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        parts = Path(rel).with_suffix("").parts
        for i in range(1, len(parts)):  # the packages above it run their __init__ first
            init = _module_file(root, ".".join(parts[:i]))
            if init is not None and init not in seen:
                todo.append(init)
        for node in ast.walk(ast.parse((root / rel).read_bytes(), rel)):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # ``from pkg import name``: name may be a module of pkg or an attribute of it; try both
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            for name in names:
                found = _module_file(root, name)
                if found is not None and found not in seen:
                    todo.append(found)
    return sorted(seen)


def source_digests(root: Path = ROOT, files: Iterable[str] | None = None) -> dict[str, str]:
    """SHA-256 of each source in ``files`` (default: :func:`dependencies`) under ``root``."""
    return {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest()
            for rel in (dependencies(root) if files is None else files)}


def disabled(environ: Mapping[str, str]) -> bool:
    """Whether ``TIERSTREAM_COMPILED`` turns the build off in ``environ``."""
    return environ.get("TIERSTREAM_COMPILED", "1").strip().lower() in FALSE


def check(native_dir: Path = NATIVE_DIR, root: Path = ROOT, environ: Mapping[str, str] | None = None) -> Status:
    """Whether the build that ``native_dir``'s manifest points at may be used for the sources under ``root``
    (see the module's invariants). Reads only those files and ``environ`` (default: ``os.environ``)."""
    if disabled(os.environ if environ is None else environ):
        return Status(False, "disabled by TIERSTREAM_COMPILED=0")
    try:
        manifest = json.loads((native_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return Status(False, f"no compiled build in {native_dir} (make native)")
    except (OSError, ValueError) as exc:
        return Status(False, f"unreadable {native_dir / MANIFEST}: {exc}")
    if not isinstance(manifest, dict):
        return Status(False, f"unreadable {native_dir / MANIFEST}: not an object")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if manifest.get("ext_suffix") != suffix:
        return Status(False, f"built for {manifest.get('ext_suffix')!r}, this interpreter loads {suffix!r} "
                             "(make native)")
    if sorted(manifest.get("compiled", ())) != sorted(COMPILED):
        return Status(False, "the build compiled another set of modules than scoring.accel.COMPILED (make native)")
    build = native_dir / str(manifest.get("dir", ""))
    outputs = manifest.get("outputs") or []
    missing = [rel for rel in outputs if not (build / rel).is_file()]
    if not outputs or missing:
        return Status(False, f"incomplete build in {build}: {', '.join(missing[:3]) or 'no outputs'} (make native)")
    built: dict[str, str] = manifest.get("sources") or {}
    if not set(COMPILED) <= set(built):
        return Status(False, "the manifest lacks the digests of compiled modules (make native)")
    try:
        current = source_digests(root, built)
    except OSError as exc:
        return Status(False, f"a source of the build is gone: {exc} (make native)")
    stale = sorted(rel for rel, digest in current.items() if built.get(rel) != digest)
    if stale:
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        return Status(False, f"stale: {', '.join(stale[:3])}{more} changed since the build (make native)")
    return Status(True, "", build)


_STATUS: Status | None = None


def status() -> Status:
    """This process's decision (made at the first call, by :func:`extend_path` at the first import)."""
    global _STATUS
    if _STATUS is None:
        _STATUS = check()
    return _STATUS


def extend_path(path: list[str], package: str) -> list[str]:
    """``package``'s ``__path__``, with its directory of the compiled build first when the build is usable.

    Call from the package's ``__init__``: ``__path__ = extend_path(__path__, __name__)``."""
    current = status()
    if not current.compiled or current.path is None:
        return path
    return [str(current.path.joinpath(*package.split("."))), *path]
