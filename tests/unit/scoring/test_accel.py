"""scoring.accel: when the compiled build is used (complete, fresh, same interpreter, not disabled) and when not."""

from __future__ import annotations

import ast
import json
import re
import sysconfig
from pathlib import Path

import pytest

from scoring import accel
from scoring.accel import COMPILED, MANIFEST, check, dependencies, extend_path, source_digests

SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A source root holding every compiled module (the decide module imports a helper module, and the
    helper's package has an ``__init__``), and a build directory whose manifest matches it."""
    root, native = tmp_path / "src", tmp_path / "native"
    for rel in COMPILED:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n")
    (root / "streams/decide.py").write_text("from schemas.outputs import TierChangeEvent\nimport json\n")
    (root / "schemas").mkdir()
    (root / "schemas/__init__.py").write_text("")
    (root / "schemas/outputs.py").write_text("TierChangeEvent = object\n")
    build = native / "build-1"
    outputs = [rel.replace(".py", SUFFIX) for rel in COMPILED]
    for rel in outputs:
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        (build / rel).write_bytes(b"")
    (native / MANIFEST).write_text(json.dumps({
        "dir": "build-1", "compiled": list(COMPILED), "outputs": outputs, "ext_suffix": SUFFIX,
        "sources": source_digests(root, dependencies(root))}))
    return root, native


def _manifest(native: Path) -> dict:
    return json.loads((native / MANIFEST).read_text())


def test_dependencies_follow_project_imports_only(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    found = dependencies(root)
    assert {"schemas/outputs.py", "schemas/__init__.py", *COMPILED} <= set(found)
    assert not any("json" in rel for rel in found)  # a standard-library import is not the build's to track


def test_a_complete_build_matching_every_source_is_used(tree: tuple[Path, Path]) -> None:
    root, native = tree
    status = check(native, root, environ={})
    assert status.compiled and status.path == native / "build-1"


def test_one_edited_compiled_source_makes_the_whole_build_unused(tree: tuple[Path, Path]) -> None:
    root, native = tree
    (root / "streams/decide.py").write_text("# edited after the build\n")
    status = check(native, root, environ={})
    assert not status.compiled
    assert status.reason.startswith("stale: streams/decide.py changed since the build")


def test_an_edited_module_the_build_imports_makes_it_stale_too(tree: tuple[Path, Path]) -> None:
    # mypyc bakes the imported module's types (and Final constants) into the C code
    root, native = tree
    (root / "schemas/outputs.py").write_text("TierChangeEvent = dict\n")
    assert check(native, root, environ={}).reason.startswith("stale: schemas/outputs.py")


def test_a_build_of_another_module_set_or_with_a_file_missing_is_not_used(tree: tuple[Path, Path]) -> None:
    root, native = tree
    manifest = _manifest(native)
    (native / MANIFEST).write_text(json.dumps({**manifest, "compiled": list(COMPILED[:-1])}))
    assert "another set of modules" in check(native, root, environ={}).reason
    (native / MANIFEST).write_text(json.dumps(manifest))
    (native / "build-1" / manifest["outputs"][0]).unlink()
    assert check(native, root, environ={}).reason.startswith("incomplete build")


def test_a_build_for_another_interpreter_is_not_used(tree: tuple[Path, Path]) -> None:
    root, native = tree
    (native / MANIFEST).write_text(json.dumps({**_manifest(native), "ext_suffix": ".cpython-399-x86_64-linux-gnu.so"}))
    status = check(native, root, environ={})
    assert not status.compiled and "cpython-399" in status.reason


def test_no_build_and_a_corrupt_manifest_say_so(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, native = tree
    assert "no compiled build" in check(tmp_path / "none", root, environ={}).reason
    (native / MANIFEST).write_text("{not json")
    assert "unreadable" in check(native, root, environ={}).reason


@pytest.mark.parametrize("value", ["0", "false", "off", " NO ", "f", "n"])
def test_the_setting_turns_a_usable_build_off(tree: tuple[Path, Path], value: str) -> None:
    root, native = tree
    status = check(native, root, environ={"TIERSTREAM_COMPILED": value})
    assert not status.compiled and "TIERSTREAM_COMPILED=0" in status.reason


@pytest.mark.parametrize("value", ["0", "false", "off", "NO", "f", "n", "1", "true", "yes", "on"])
def test_the_setting_reads_as_the_settings_class_reads_it(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tierstream.settings import Settings

    monkeypatch.setenv("TIERSTREAM_COMPILED", value)
    assert accel.disabled({"TIERSTREAM_COMPILED": value}) is (not Settings().compiled)


def test_extend_path_puts_the_build_first_only_when_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(accel, "_STATUS", accel.Status(False, "test"))
    assert extend_path(["/src/scoring/policy"], "scoring.policy") == ["/src/scoring/policy"]
    monkeypatch.setattr(accel, "_STATUS", accel.Status(True, "", tmp_path / "build-1"))
    assert extend_path(["/src/scoring/policy"], "scoring.policy") == [
        str(tmp_path / "build-1" / "scoring" / "policy"), "/src/scoring/policy"]


_CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]*$")
ROOT = Path(__file__).resolve().parents[3]


def _unannotated_constants(source: str) -> list[str]:
    """Module-level names spelled as constants (``UPPER`` / ``_UPPER``) bound without ``Final``, or bound
    with others in one statement (which cannot be ``Final``); TypeVars apart (they are types)."""
    tree = ast.parse(source)
    found = []
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if _CONSTANT.match(node.target.id) and "Final" not in ast.unparse(node.annotation):
                found.append(f"{node.target.id} (line {node.lineno})")
        elif isinstance(node, ast.Assign):
            if isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "TypeVar":
                continue
            for target in node.targets:
                for name in (n.id for n in ast.walk(target) if isinstance(n, ast.Name)):
                    if _CONSTANT.match(name):
                        found.append(f"{name} (line {node.lineno})")
    return found


def test_constants_of_compiled_modules_are_final() -> None:
    """mypyc reads a module-level name that is not ``Final`` from the module's dict at every use, and unboxes
    it if it is an int: in the batch core that was ~7 % of its instructions (entry field indices, day
    lengths, touched bits; callgrind, session 17). A ``Final`` constant is inlined, or kept in a C static."""
    offending = {rel: names for rel in COMPILED if (names := _unannotated_constants((ROOT / rel).read_text()))}
    assert offending == {}


def test_the_constant_check_finds_what_it_must() -> None:
    source = "X = 1\nA, B = 1, 2\nC: int = 3\nD: Final = 4\nE: Final[int] = 5\nT = TypeVar('T')\nlower = 6\n"
    assert _unannotated_constants(source) == ["X (line 1)", "A (line 2)", "B (line 2)", "C (line 3)"]


def test_classes_built_per_decision_have_their_own_init() -> None:
    """A dataclass's generated ``__init__`` (made from text: its code's file is ``<string>``) runs interpreted under
    mypyc, ~0.5 µs a construction when frozen against ~0.02 µs for one written in the class (session 17); these
    are built per record, or per decision and policy."""
    from scoring.lifecycle.results import StepResult, TierChange
    from scoring.lifecycle.track import Override, Pending, Proposal, TierTrack
    from scoring.policy.compiled import Decision
    from streams.batch import InRecord

    classes = (Decision, InRecord, Override, Pending, Proposal, StepResult, TierChange, TierTrack)
    generated = [c.__name__ for c in classes
                 if getattr(getattr(c.__init__, "__code__", None), "co_filename", "") == "<string>"]
    assert generated == []


def _final_names(source: str) -> set[str]:
    """Module-level names of ``source`` bound with a ``Final`` annotation."""
    return {node.target.id for node in ast.parse(source).body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            and "Final" in ast.unparse(node.annotation)}


def _patched_finals(source: str, finals: set[str]) -> list[str]:
    """Calls in ``source`` that patch a name of ``finals``: ``monkeypatch.setattr(obj, "NAME", ...)``,
    ``setattr(obj, "NAME", ...)``, ``patch.object(obj, "NAME")`` or ``patch("pkg.mod.NAME")``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        args = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None for a in node.args]
        if func.endswith(("setattr", "patch.object")) and len(args) > 1 and args[1] is not None:
            names = [args[1]]  # (object, "NAME", value)
        elif func.endswith(("setattr", "patch")) and args and args[0] is not None and "." in args[0]:
            names = [args[0].rsplit(".", 1)[1]]  # ("package.module.NAME", ...)
        else:
            continue
        found += [f"{name} (line {node.lineno})" for name in names if name in finals]
    return found


def test_no_test_patches_a_final_constant_of_a_compiled_module() -> None:
    """mypyc inlines a ``Final`` constant into the code that uses it: patching the module attribute in a test
    changes nothing in the compiled build (which ``make test`` runs) and everything in the source one, so such
    a test would pass or fail by build. Patch a setting or an argument instead."""
    finals = set().union(*(_final_names((ROOT / rel).read_text()) for rel in COMPILED))
    offending = {str(path.relative_to(ROOT)): hits for path in sorted((ROOT / "tests").rglob("*.py"))
                 if (hits := _patched_finals(path.read_text(), finals))}
    assert offending == {}


def test_the_patch_check_finds_what_it_must() -> None:
    source = ('monkeypatch.setattr(state, "DAY", 1)\nsetattr(m, "_MEMO_MAX", 2)\npatch("scoring.state.DAY")\n'
              'monkeypatch.setattr(accel, "_STATUS", s)\nmonkeypatch.setattr("scoring.state.DAY", 3)\n')
    assert _patched_finals(source, {"DAY", "_MEMO_MAX"}) == [
        "DAY (line 1)", "_MEMO_MAX (line 2)", "DAY (line 3)", "DAY (line 5)"]
