"""Loading policy files: YAML -> pydantic (shape) -> compiler (meaning). Nothing in a file is executed:
YAML is parsed with the safe loader and the result is plain data.

Every failure becomes a :class:`PolicyError` naming the file, the path inside it and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from schemas import policy as policy_schema
from schemas.policy import policy_from_data
from scoring.policy.compiled import CompiledPolicy
from scoring.policy.compiler import compile_policy
from scoring.policy.errors import PolicyError, join_path

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"

try:  # the C loader is ~10x faster; both are "safe" (no arbitrary Python objects)
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


# pydantic adds the union member tried to an error's location ("constrained-str", "TierSpec", "list[...]");
# they are not keys of the file, so they are dropped from the path.
_UNION_TAG = re.compile(r"^(constrained-)?(str|int|float|bool|decimal|none)$|[\[\]]")
_MODEL_NAMES = frozenset(n for n, v in vars(policy_schema).items() if isinstance(v, type) and issubclass(v, BaseModel))


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, str) and (part in _MODEL_NAMES or _UNION_TAG.search(part)):
            continue
        path = join_path(path, part)
    return path


def _from_validation(file: str, err: ValidationError) -> PolicyError:
    """The first pydantic error, translated to path + reason (others are usually consequences)."""
    first = err.errors(include_url=False)[0]
    loc = tuple(first["loc"])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}" if loc else "unknown key"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif first["type"] == "missing":
        msg = "required key is missing"
    if isinstance(first.get("input"), bool) and first["type"] == "string_type":
        msg += " (YAML reads yes/no/on/off/true/false unquoted as booleans: quote the name)"
    return PolicyError(file, _loc_to_path(loc), msg)


def parse_policy(text: str, file: str) -> CompiledPolicy:
    """Parse and compile policy YAML ``text``; ``file`` names it in errors."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(file, "$", f"not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise PolicyError(file, "$", "a policy file must be a mapping (id, version, tiers, ...)")
    try:
        model = policy_from_data(data)
    except ValidationError as exc:
        raise _from_validation(file, exc) from None
    return compile_policy(model, file)


def load_policy(path: str | Path) -> CompiledPolicy:
    """Load, validate and compile the policy file at ``path``; raises PolicyError (also for I/O errors)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(p), "$", f"cannot read the file: {exc.strerror or exc}") from None
    return parse_policy(text, str(p))


def preset_names() -> list[str]:
    """Names of the bundled presets (``scoring/presets/<name>.yaml``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(name: str) -> CompiledPolicy:
    """Load the bundled preset ``name``; raises PolicyError for an unknown preset."""
    p = PRESETS_DIR / f"{name}.yaml"
    if not name.replace("_", "").isalnum() or not p.is_file():
        raise PolicyError(name, "$", f"unknown preset; known presets: {', '.join(preset_names())}")
    return load_policy(p)


def load_policies(specs: Sequence[str]) -> list[CompiledPolicy]:
    """Load several policies; each spec is a preset name or a file path. Duplicate policy ids are refused."""
    out: list[CompiledPolicy] = []
    seen: dict[str, str] = {}
    for spec in specs:
        looks_like_path = "/" in spec or "\\" in spec or spec.endswith((".yaml", ".yml"))
        policy = load_policy(spec) if looks_like_path else load_preset(spec)
        if policy.id in seen:
            raise PolicyError(policy.source, "id", f"duplicate policy id {policy.id!r} (also in {seen[policy.id]})")
        seen[policy.id] = policy.source
        out.append(policy)
    return out
