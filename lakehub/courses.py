"""Which revision of each course this session's home holds.

lakehub's Jupyter server extension serves it at ``<server>/lakehub/courses`` (JSON), so an
instructor's ``make course-status`` on a cluster can ask every running server through the
hub's proxy, with a token allowed to access servers, instead of reading home volumes it
cannot reach.  The courses and their folders come from ``$LAKEHUB_COURSES`` (set by the
spawn hooks): ``[{"name": ..., "target": ...}]``, targets relative to the home.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path


def courses_from_environment(environ=os.environ) -> list[dict]:
    """The courses this session was given; an unset or broken variable means none (pure)."""
    try:
        found = json.loads(environ.get("LAKEHUB_COURSES", "[]"))
    except ValueError:
        return []
    return (
        [
            {"name": c["name"], "target": c["target"]}
            for c in found
            if isinstance(c, dict)
            and isinstance(c.get("name"), str)
            and isinstance(c.get("target"), str)
        ]
        if isinstance(found, list)
        else []
    )


async def _git(folder: Path, *args: str) -> str | None:
    proc = await asyncio.create_subprocess_exec(
        "git",
        "-C",
        str(folder),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "LANG": "C", "GIT_TERMINAL_PROMPT": "0"},
    )
    out, _ = await proc.communicate()
    return out.decode().strip() if proc.returncode == 0 else None


async def course_state(home: Path, course: dict) -> dict:
    """The course revision last pulled into the folder (None: never pulled) and how many
    course files differ from it there (the student's edits).

    nbgitpuller keeps the course's branch as the folder's upstream and merges it into the
    student's own commits, so the pulled revision is the upstream, not ``HEAD``."""
    folder = home / course["target"]
    state = {**course, "revision": None, "edited": 0}
    if not (folder / ".git").exists():
        return state
    state["revision"] = await _git(folder, "rev-parse", "@{upstream}") or await _git(
        folder, "rev-parse", "HEAD"
    )
    if state["revision"]:
        changed = await _git(folder, "diff", "--name-only", state["revision"], "--")
        state["edited"] = len(changed.splitlines()) if changed else 0
    return state


async def report(home: Path, environ=os.environ) -> dict:
    courses = courses_from_environment(environ)
    return {"courses": list(await asyncio.gather(*(course_state(home, c) for c in courses)))}
