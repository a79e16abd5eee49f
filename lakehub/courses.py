"""A course in a student's home: pulled with nbgitpuller, and reported by revision.

Two sides of the same folder, both run as the student:

* **the pull** (:func:`apply`): ``gitpuller REPO BRANCH TARGET`` for each course, after
  checking that the source answers.  Locally the hub runs ``python -m lakehub.courses``
  as the student at every spawn (``spawner_hooks.courses``, the request as JSON on
  standard input); in a pod the postStart hook runs ``python -m lakehub.courses --pod``,
  which reads the same courses from ``$LAKEHUB_COURSES``.  nbgitpuller decides what
  happens to the student's files:

  - first start: a clone of the course in ``~/<target>``, one commit deep
    (``$NBGITPULLER_DEPTH``, default 1).  That is exactly nbgitpuller's own first step,
    a single ``git clone``; lakehub runs that command itself, so a class logging in for
    the first time does not start nbgitpuller's Python once per student;
  - later starts: ``git fetch``, then a merge of the new revision that prefers the
    student's lines wherever both changed the same lines (``-Xours``); files the student
    never touched become the new revision exactly;
  - a course file the student deleted comes back; a file the instructor removed
    disappears where it was untouched, an edited copy is kept;
  - a student's own file in the way of a new course file is renamed with a timestamp.

  A failing pull never fails the spawn: the student finds ``LAKEHUB-COURSES.md`` in their
  home saying why, and the next start tries again (and removes the note).
* **the report** (:func:`report`): which revision each course folder holds and how many
  course files the student edited; lakehub's Jupyter server extension serves it at
  ``<server>/lakehub/courses`` for ``make course-status`` on a cluster.

``$LAKEHUB_COURSES`` is ``[{"name", "target", "repo", "branch"}]``, targets relative to
the home.  Standard library only: this module ships in the single-user image.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from lakehub.child import child_main
from lakehub.contract import COURSES_NOTICE_FILE, ENV_COURSES
from lakehub.files import atomic_write

FIELDS = ("name", "target", "repo", "branch")


def courses_from_environment(environ: Mapping[str, str] = os.environ) -> list[dict]:
    """The courses this session was given; an unset or broken variable means none, and
    an entry missing a field is left out (pure)."""
    try:
        found = json.loads(environ.get(ENV_COURSES, "[]"))
    except ValueError:
        return []
    if not isinstance(found, list):
        return []
    return [
        {k: c[k] for k in FIELDS}
        for c in found
        if isinstance(c, dict) and all(isinstance(c.get(k), str) for k in FIELDS)
    ]


# --- the pull --------------------------------------------------------------------------


def pull_plan(courses: Sequence[Mapping[str, str]], home: str) -> list[dict]:
    """What is pulled, in order: one entry per course, with its absolute folder (pure)."""
    return [
        {**{k: c[k] for k in FIELDS}, "path": str(PurePosixPath(home) / c["target"].strip())}
        for c in courses
    ]


def pull_request(
    courses: Sequence[Mapping[str, str]], home: str, gitpuller: str, timeout: float
) -> dict:
    """The request :func:`apply` takes (pure)."""
    return {
        "home": home,
        "gitpuller": gitpuller,
        "pulls": pull_plan(courses, home),
        "timeout": timeout,
    }


def gitpuller_command(gitpuller: str, repo: str, branch: str, path: str) -> list[str]:
    """nbgitpuller's own command line: ``gitpuller REPO BRANCH TARGET``."""
    return [gitpuller, repo, branch, path]


def notice_markdown(failures: Mapping[str, str], targets: Mapping[str, str]) -> str:
    lines = [
        "# Your course material was not updated",
        "",
        "lakehub tried to bring your course folders up to date when your server started,",
        "but could not. Your files are as they were; nothing was lost.",
        "",
    ]
    for name, reason in sorted(failures.items()):
        lines.append(f"- **{name}** (`~/{targets.get(name, name)}`): {reason}")
    lines += [
        "",
        "The next start of your server tries again and removes this note once it works.",
        "If it keeps failing, tell your instructor what this note says.",
        "",
    ]
    return "\n".join(lines)


def short_reason(text: str, limit: int = 300) -> str:
    """The first line of git's output that says why (``fatal:``...), else the last one."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("fatal:", "error:", "CONFLICT", "Exception:")):
            return ln[:limit]
    return (lines[-1] if lines else "no output")[:limit]


def _run(cmd: list[str], timeout: float, cwd: str | None = None) -> tuple[int, str]:
    try:
        done = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return 124, f"fatal: no answer within {timeout:.0f} s"
    except OSError as exc:  # git missing from the image: a failed pull, not a dead server
        return 127, f"fatal: cannot run {cmd[0]}: {exc.strerror}"
    return done.returncode, done.stdout + done.stderr


def first_clone_command(repo: str, branch: str, path: str, depth: int) -> list[str]:
    """nbgitpuller's first step for a folder that does not exist yet (pure)."""
    shallow = ["--depth", str(depth)] if depth > 0 else []
    return ["git", "clone", *shallow, "--branch", branch, "--", repo, path]


def source_problem(repo: str, branch: str, timeout: float) -> str | None:
    """Why the course's source cannot give its branch, or None if it can."""
    rc, out = _run(["git", "ls-remote", "--heads", "--", repo, f"refs/heads/{branch}"], timeout)
    if rc != 0:
        return f"the course source {repo} cannot be read ({short_reason(out)})"
    if not out.strip():
        return f"the course source {repo} has no branch {branch!r} yet"
    return None


def pull_one(entry: dict, gitpuller: str, timeout: float) -> dict:
    """Pull one course; ``{"ok": True, "revision": sha}`` or ``{"ok": False, "reason": ...}``."""
    repo, branch, path = entry["repo"], entry["branch"], Path(entry["path"])
    if path.exists() and not (path / ".git").exists():
        return {
            "ok": False,
            "reason": f"the folder ~/{entry['target']} exists but did not come from the course;"
            " rename it (your files stay yours) and restart your server to get the course",
        }
    if not path.exists():
        depth = int(os.environ.get("NBGITPULLER_DEPTH", "1") or 1)
        rc, out = _run(first_clone_command(repo, branch, str(path), depth), timeout)
        if rc != 0:
            shutil.rmtree(path, ignore_errors=True)  # git's own clean-up, made sure of
            why = source_problem(repo, branch, timeout)
            return {"ok": False, "reason": why or f"git could not clone it ({short_reason(out)})"}
    else:
        # ask the source first: gitpuller reports an unreachable source only as an exit code
        why = source_problem(repo, branch, timeout)
        if why:
            return {"ok": False, "reason": why}
        rc, out = _run(
            gitpuller_command(gitpuller, repo, branch, str(path)), timeout, cwd=str(path.parent)
        )
        if rc != 0:
            return {"ok": False, "reason": f"nbgitpuller could not update it ({short_reason(out)})"}
    rc, out = _run(["git", "-C", str(path), "rev-parse", f"origin/{branch}"], timeout)
    if rc != 0:
        return {"ok": False, "reason": f"the pulled folder has no revision ({short_reason(out)})"}
    return {"ok": True, "revision": out.strip()}


def apply(request: dict) -> dict:
    os.umask(0o077)
    home = Path(request["home"])
    results = {}
    for entry in request["pulls"]:
        Path(entry["path"]).parent.mkdir(parents=True, exist_ok=True)
        results[entry["name"]] = pull_one(entry, request["gitpuller"], request["timeout"])
    failures = {n: r["reason"] for n, r in results.items() if not r["ok"]}
    notice = home / COURSES_NOTICE_FILE
    if failures:
        targets = {e["name"]: e["target"] for e in request["pulls"]}
        atomic_write(notice, notice_markdown(failures, targets), 0o644)
    else:
        notice.unlink(missing_ok=True)
    return {"courses": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehub.courses",
        description="pull this home's courses with nbgitpuller (the request as JSON on"
        " standard input, or --pod: the courses of $LAKEHUB_COURSES into $HOME)",
    )
    parser.add_argument("--pod", action="store_true")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    if not args.pod:
        return child_main(apply)
    gitpuller = shutil.which("gitpuller")
    home = os.environ.get("HOME", "")
    if not gitpuller or not home:
        print("lakehub.courses: no gitpuller on PATH or no $HOME", file=sys.stderr)
        return 1
    request = pull_request(courses_from_environment(), home, gitpuller, args.timeout)
    print(json.dumps(apply(request)))
    return 0  # a failed pull is reported in the home; the server starts anyway


# --- the report ------------------------------------------------------------------------


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


if __name__ == "__main__":
    raise SystemExit(main())
