"""Where a file lives in the cache, and which DIDs may live there at all (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

INCOMING = ".incoming"
_SCOPE = re.compile(r"^[A-Za-z0-9_.-]{1,25}$")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,250}$")


class BadDID(ValueError):
    """A DID the cache refuses, with the reason in words."""


@dataclass(frozen=True, order=True)
class DID:
    scope: str
    name: str

    def __str__(self) -> str:
        return f"{self.scope}:{self.name}"


def parse_did(text: str) -> DID:
    """``scope:name`` -> DID; refuses anything that could leave the cache folder."""
    if not isinstance(text, str) or ":" not in text:
        raise BadDID(f"expected 'scope:name', got {text!r}")
    scope, name = text.split(":", 1)
    for part, what, pattern in ((scope, "scope", _SCOPE), (name, "name", _NAME)):
        if part in ("", ".", "..") or part.startswith("."):
            raise BadDID(f"the {what} {part!r} is not allowed (empty, '.', '..' or hidden)")
        if "/" in part or "\\" in part or "\0" in part:
            raise BadDID(f"the {what} {part!r} contains a path separator")
        if not pattern.match(part):
            raise BadDID(f"the {what} {part!r} has characters the cache does not accept")
    return DID(scope, name)


def published_path(root: Path, did: DID) -> Path:
    path = root / did.scope / did.name
    # belt and braces: the checks above already make this impossible
    if path.resolve().parent.parent != root.resolve():
        raise BadDID(f"{did} would leave the cache folder")
    return path


def incoming_dir(root: Path) -> Path:
    return root / INCOMING
