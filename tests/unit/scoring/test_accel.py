"""scoring.accel: when the compiled build is used (fresh, same interpreter, not disabled) and when it is not."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest

from scoring.accel import COMPILED, MANIFEST, check, extend_path, source_digests


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A source root holding every compiled module's source, and a build directory matching it."""
    root, native = tmp_path / "src", tmp_path / "native"
    for rel in COMPILED:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n")
    native.mkdir()
    (native / MANIFEST).write_text(json.dumps(
        {"ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"), "sources": source_digests(root)}))
    return root, native


def test_a_build_matching_every_source_is_used(tree: tuple[Path, Path]) -> None:
    root, native = tree
    assert check(native, root, environ={}).compiled


def test_one_edited_source_makes_the_whole_build_unused(tree: tuple[Path, Path]) -> None:
    root, native = tree
    (root / "streams/decide.py").write_text("# edited after the build\n")
    status = check(native, root, environ={})
    assert not status.compiled
    assert status.reason.startswith("stale: streams/decide.py changed since the build")


def test_a_build_for_another_interpreter_is_not_used(tree: tuple[Path, Path]) -> None:
    root, native = tree
    manifest = json.loads((native / MANIFEST).read_text())
    (native / MANIFEST).write_text(json.dumps({**manifest, "ext_suffix": ".cpython-399-x86_64-linux-gnu.so"}))
    status = check(native, root, environ={})
    assert not status.compiled and "cpython-399" in status.reason


def test_no_build_and_a_corrupt_manifest_say_so(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, native = tree
    assert "no compiled build" in check(tmp_path / "none", root, environ={}).reason
    (native / MANIFEST).write_text("{not json")
    assert "unreadable" in check(native, root, environ={}).reason


@pytest.mark.parametrize("value", ["0", "false", "off", " NO "])
def test_the_setting_turns_a_usable_build_off(tree: tuple[Path, Path], value: str) -> None:
    root, native = tree
    status = check(native, root, environ={"TIERSTREAM_COMPILED": value})
    assert not status.compiled and "TIERSTREAM_COMPILED=0" in status.reason


def test_extend_path_puts_the_build_first_only_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from scoring import accel

    monkeypatch.setattr(accel, "_STATUS", accel.Status(False, "test"))
    assert extend_path(["/src/scoring/policy"], "scoring.policy") == ["/src/scoring/policy"]
    monkeypatch.setattr(accel, "_STATUS", accel.Status(True, ""))
    assert extend_path(["/src/scoring/policy"], "scoring.policy") == [
        str(accel.NATIVE_DIR / "scoring" / "policy"), "/src/scoring/policy"]
