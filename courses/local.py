"""Course material on the local stack: the mirrors students pull from, publishing a
revision into them (`make push-notebooks`), and who has which revision
(`make course-status`).

Students pull every course from a bare git repository ``<state>/courses/<name>.git``
(a ``file://`` URL their accounts can read).  ``push`` makes the course's current state
the next revision there: for a folder source it commits the folder's content as it is
now (a fixed author, so the same content gives the same tree); for a git URL source it
fetches the branch from the instructor's remote into that mirror.  Nothing reaches a
student before a push, so an instructor edits freely and publishes when ready.

The hub records which revision each student pulled (``<state>/courses/revisions.json``,
updated at every spawn); both commands compare it with the mirror.  The command line is
``python -m courses`` (:mod:`courses.__main__`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from courses.git import (
    branch_tip,
    changes,
    commit_folder,
    fetch_remote,
    find_course,
    revision_number,
)
from courses.links import nbgitpuller_link
from lakehub.contract import REVISIONS_FILE
from lakehub.files import atomic_write
from sitefile import Course, Site
from sitefile.state import StackPaths


def courses_dir(paths: StackPaths) -> Path:
    return paths.state / "courses"


def mirror(paths: StackPaths, name: str) -> Path:
    return courses_dir(paths) / f"{name}.git"


def revisions_file(paths: StackPaths) -> Path:
    return courses_dir(paths) / REVISIONS_FILE


def sources(site: Site, paths: StackPaths) -> list[Course]:
    """What students pull: every course of the site, from its mirror under the state
    folder (a ``file://`` URL in place of the instructor's source)."""
    return [c.model_copy(update={"source": mirror(paths, c.name).as_uri()}) for c in site.courses]


def record_revisions(
    revisions: Mapping, username: str, pulled: Mapping[str, str], now: float
) -> dict:
    """The revision record after ``username`` pulled ``{course: commit}`` (pure).

    Shape: ``{course: {username: {"revision": sha, "pulled_at": epoch seconds}}}``.
    """
    out = {k: dict(v) for k, v in revisions.items() if isinstance(v, dict)}
    for course, sha in pulled.items():
        out.setdefault(course, {})[username] = {"revision": sha, "pulled_at": int(now)}
    return out


def read_revisions(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_revisions(path: Path, username: str, pulled: Mapping[str, str]) -> None:
    """Record that ``username`` pulled ``{course: commit}`` now (blocking file I/O)."""
    updated = record_revisions(read_revisions(path), username, pulled, time.time())
    atomic_write(path, json.dumps(updated, indent=1, sort_keys=True), 0o644)


def git_system_config(paths: StackPaths, site: Site) -> Path:
    """A git system config for students' processes (``GIT_CONFIG_SYSTEM``).

    The mirrors belong to the hub's account, and git refuses to read a repository owned
    by someone else unless the *system* or *global* config names it as safe; a student
    cannot change this file.  It includes Debian's ``/etc/gitconfig`` so nothing is lost.
    """
    folder = courses_dir(paths)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)  # noqa: S103  students' accounts read the mirrors
    lines = ["[include]", "\tpath = /etc/gitconfig", "[safe]"]
    lines += [f"\tdirectory = {mirror(paths, c.name)}" for c in site.courses]
    path = folder / "gitconfig"
    atomic_write(path, "\n".join(lines) + "\n", 0o644)
    return path


@dataclass
class PushReport:
    course: str
    revision: str
    number: int | None
    new: bool
    changes: dict[str, list[str]]
    behind: int  # students whose recorded revision is not this one
    current: int  # students who already have it
    link: str | None

    def text(self) -> str:
        short = self.revision[:7]
        lines = []
        if self.new:
            lines.append(f"==> course {self.course}: published revision {self.number} ({short})")
            c = self.changes
            summary = ", ".join(f"{len(c[k])} {k}" for k in ("changed", "added", "removed") if c[k])
            lines.append(f"    since the previous revision: {summary or 'no file changes'}")
            for kind, sign in (("changed", "~"), ("added", "+"), ("removed", "-")):
                lines += [f"      {sign} {name}" for name in c[kind]]
        else:
            lines.append(
                f"==> course {self.course}: nothing new, still revision {self.number} ({short})"
            )
        lines.append(
            f"    {self.behind} student(s) update on their next server start"
            f" ({self.current} already have it; new students get it on their first start)"
        )
        if self.link:
            lines.append(f"    students can pull now: {self.link}")
        return "\n".join(lines)


def hub_url(site: Site) -> str | None:
    return f"http://127.0.0.1:{site.local.hub_port}" if site.local else None


def push(site: Site, paths: StackPaths, name: str) -> PushReport:
    course = find_course(site, name)
    repo = mirror(paths, name)
    before = branch_tip(repo, course.branch) if (repo / "HEAD").exists() else None
    if course.is_git_url:
        tip, new = fetch_remote(course.source, repo, course.branch)
    else:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        tip, new = commit_folder(Path(course.source), repo, course.branch, f"{name}: {stamp}")
    users = read_revisions(revisions_file(paths)).get(name, {})
    current = sum(1 for u in users.values() if isinstance(u, dict) and u.get("revision") == tip)
    url = hub_url(site)
    source = next(s for s in sources(site, paths) if s.name == name)
    return PushReport(
        course=name,
        revision=tip,
        number=revision_number(repo, tip),
        new=new,
        changes=changes(repo, before, tip) if new else {"added": [], "changed": [], "removed": []},
        behind=len(users) - current,
        current=current,
        link=nbgitpuller_link(url, source) if url else None,
    )


def status_text(site: Site, paths: StackPaths) -> str:
    if not site.courses:
        return "no courses in the site file (add a courses: list; see docs/instructors.md)"
    revisions = read_revisions(revisions_file(paths))
    lines = []
    for course in site.courses:
        repo = mirror(paths, course.name)
        tip = branch_tip(repo, course.branch) if (repo / "HEAD").exists() else None
        if tip is None:
            lines.append(
                f"course {course.name} (~/{course.target}): not published yet;"
                f" run make push-notebooks COURSE={course.name}"
            )
            continue
        latest = revision_number(repo, tip)
        lines.append(f"course {course.name} (~/{course.target}): revision {latest} ({tip[:7]})")
        users = revisions.get(course.name, {})
        if not users:
            lines.append("  no student has pulled it yet")
        for user in sorted(users):
            entry = users[user]
            sha = entry.get("revision", "") if isinstance(entry, dict) else ""
            number = revision_number(repo, sha) if sha else None
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.get("pulled_at", 0)))
            state = "up to date" if sha == tip else "updates on next start"
            lines.append(
                f"  {user:24} revision {number if number is not None else '?'} ({sha[:7]})"
                f"  pulled {when}  {state}"
            )
    return "\n".join(lines)
