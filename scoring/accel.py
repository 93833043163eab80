"""Whether the worker's hot path runs compiled (mypyc), and the import plumbing that makes it so.

``make native`` (:mod:`tierstream.native`) compiles the pure hot-path modules (:data:`COMPILED`: state,
features, policy evaluation, lifecycle, ``streams.decide`` and ``streams.batch``) with mypyc into
``.native/`` beside the source tree, with a manifest of the sources' SHA-256. The four packages holding
them (``scoring``, ``scoring.policy``, ``scoring.lifecycle``, ``streams``) call :func:`extend_path` from
their ``__init__``: when the compiled build is *usable*, its directory goes first on the package's
``__path__``, so ``import scoring.state`` loads the extension module; otherwise the ``.py`` source loads.

Invariants:
- **All or nothing.** The compiled modules share one native library and use each other's classes
  natively, so either every module of :data:`COMPILED` loads compiled or none does. The decision is made
  once per process, at the first package import, and never changes after.
- **Never stale.** A build whose manifest does not match every source byte for byte (an edited ``.py``
  after ``make native``), or that was made for another interpreter, is not used: the process runs the
  source, and :func:`status` says why. A stale build can slow a worker down; it can never run old code.
- **Same decisions.** Compiled and interpreted runs decide identically (the hot-path benchmark's digests,
  tests/integration/test_compiled_core.py).

``TIERSTREAM_COMPILED=0`` (``Settings.compiled``) runs the source even when a usable build exists; it is
read from the environment here because it must be known before the first import of a compiled module.

Inputs: the files under ``.native/`` and the sources. Outputs: :func:`status`. No other I/O.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

#: The compiled modules, as source paths relative to the repository root (tierstream.native builds them).
COMPILED: tuple[str, ...] = (
    "scoring/buckets.py",
    "scoring/dedup.py",
    "scoring/features.py",
    "scoring/state.py",
    "scoring/timers.py",
    "scoring/policy/adjustments.py",
    "scoring/policy/compared.py",
    "scoring/policy/conditions.py",
    "scoring/policy/context.py",
    "scoring/policy/intervals.py",
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
)

ROOT = Path(__file__).resolve().parent.parent
NATIVE_DIR = ROOT / ".native"
MANIFEST = "manifest.json"
#: the native library of the build (mypyc group name): a module of the ``scoring`` package
GROUP = "scoring._compiled_core"


@dataclass(frozen=True, slots=True)
class Status:
    """``compiled``: the hot path runs the mypyc build; ``reason``: why not, when it does not."""

    compiled: bool
    reason: str


def source_digests(root: Path = ROOT) -> dict[str, str]:
    """SHA-256 of each :data:`COMPILED` source under ``root`` (the manifest's content)."""
    return {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in COMPILED}


def check(native_dir: Path = NATIVE_DIR, root: Path = ROOT, environ: dict[str, str] | None = None) -> Status:
    """Whether the build in ``native_dir`` may be used for the sources under ``root`` (see the module's
    invariants). Pure apart from reading those files and ``environ`` (default: ``os.environ``)."""
    env = os.environ if environ is None else environ
    if env.get("TIERSTREAM_COMPILED", "1").strip().lower() in ("0", "false", "no", "off"):
        return Status(False, "disabled by TIERSTREAM_COMPILED=0")
    try:
        manifest = json.loads((native_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return Status(False, f"no compiled build in {native_dir} (make native)")
    except (OSError, ValueError) as exc:
        return Status(False, f"unreadable {native_dir / MANIFEST}: {exc}")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if manifest.get("ext_suffix") != suffix:
        return Status(False, f"built for {manifest.get('ext_suffix')!r}, this interpreter loads {suffix!r} "
                             "(make native)")
    built = manifest.get("sources", {})
    try:
        current = source_digests(root)
    except OSError as exc:
        return Status(False, f"cannot read a compiled module's source: {exc}")
    stale = sorted(rel for rel, digest in current.items() if built.get(rel) != digest)
    if stale:
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        return Status(False, f"stale: {', '.join(stale[:3])}{more} changed since the build (make native)")
    return Status(True, "")


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
    if not status().compiled:
        return path
    return [str(NATIVE_DIR.joinpath(*package.split("."))), *path]
