"""Hand the course notebooks to a student without ever overwriting their work.

A manifest in the session folder remembers the hash of every file lakehub delivered.
At each spawn :func:`plan` compares three views (the source, the home, the manifest):

* never delivered and absent from the home        -> copy
* delivered, unchanged by the student, source new -> update
* changed by the student                          -> keep (the student's edit wins)
* delivered and then deleted by the student       -> leave deleted
* a file of the same name the student made first  -> keep

:func:`plan` is pure; :func:`sync` does the file work and is run off the event loop.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from lakehub.files import atomic_write

MANIFEST = "notebooks-manifest.json"
_SKIP_DIRS = {".ipynb_checkpoints", "__pycache__"}


class Action(StrEnum):
    COPY = "copy"
    UPDATE = "update"
    KEEP_EDITED = "keep-edited"
    KEEP_DELETED = "keep-deleted"
    KEEP_UNRELATED = "keep-unrelated"
    UNCHANGED = "unchanged"


def plan(
    source: Mapping[str, str], home: Mapping[str, str], delivered: Mapping[str, str]
) -> dict[str, Action]:
    """Decide per file (relative path -> sha256) what a sync does."""
    actions: dict[str, Action] = {}
    for rel, src_hash in source.items():
        have = home.get(rel)
        gave = delivered.get(rel)
        if have is None:
            actions[rel] = Action.KEEP_DELETED if gave is not None else Action.COPY
        elif gave is None:
            actions[rel] = Action.UNCHANGED if have == src_hash else Action.KEEP_UNRELATED
        elif have != gave:
            actions[rel] = Action.KEEP_EDITED
        elif have != src_hash:
            actions[rel] = Action.UPDATE
        else:
            actions[rel] = Action.UNCHANGED
    return actions


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scan(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not _SKIP_DIRS.intersection(rel.parts):
            found[rel.as_posix()] = _sha256(path)
    return found


def read_manifest(path: Path) -> dict[str, str]:
    """The manifest, or {} when it is missing or damaged (it sits in the student's home).

    Forgetting the manifest is safe: without it nothing is ever overwritten, only files
    missing from the home are copied again.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def sync(source: Path, target: Path, manifest_path: Path) -> dict[str, Action]:
    """Apply :func:`plan`; returns what was done.  Blocking: call via ``to_thread``."""
    src = scan(source)
    delivered = read_manifest(manifest_path)
    home = {rel: _sha256(target / rel) for rel in src if (target / rel).is_file()}
    actions = plan(src, home, delivered)
    for rel, action in actions.items():
        if action in (Action.COPY, Action.UPDATE):
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.lakehub-tmp")
            shutil.copyfile(source / rel, tmp)
            tmp.replace(dest)
            delivered[rel] = src[rel]
        elif action is Action.UNCHANGED:
            delivered[rel] = src[rel]
    atomic_write(manifest_path, json.dumps(delivered, indent=1, sort_keys=True))
    return actions
