"""The one error a bad policy file raises: which file, where inside it, and why."""

from __future__ import annotations


class PolicyError(ValueError):
    """A policy file was refused before anything ran.

    ``file`` is the file (or preset) name, ``path`` the location inside it in the form
    ``dimensions[1].indicators[0].ladder[2]`` (``$`` for the whole document), ``reason`` a human sentence.
    ``str()`` is ``"file: path: reason"``.
    """

    def __init__(self, file: str, path: str, reason: str) -> None:
        self.file = file
        self.path = path or "$"
        self.reason = reason
        super().__init__(f"{self.file}: {self.path}: {self.reason}")

    def __reduce__(self) -> tuple[type[PolicyError], tuple[str, str, str]]:
        # Keep the three fields when pickled (e.g. across worker processes).
        return (PolicyError, (self.file, self.path, self.reason))


def join_path(base: str, key: str | int) -> str:
    """Append a key or list index to a dotted path: ``join_path("a", 1) == "a[1]"``."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key
