"""`make push-notebooks` and `make course-status`: course material for the local stack.

    python -m localstack.courses push --course NAME [--site SITE]
    python -m localstack.courses status [--site SITE]

Students pull every course from a bare git repository ``<state>/courses/<name>.git``
(a ``file://`` URL their accounts can read).  ``push`` makes the course's current state
the next revision there: for a folder source it commits the folder's content as it is
now (a fixed author, so the same content gives the same tree); for a git URL source it
fetches the branch from the instructor's remote into that mirror.  Nothing reaches a
student before a push, so an instructor edits freely and publishes when ready.

The hub records which revision each student pulled (``<state>/courses/revisions.json``,
updated at every spawn); both commands compare it with the mirror.  For a site without a
``local:`` section (a cluster) both commands hand over to ``hub_services.courses``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hub_config.site import Site, SiteError, load_site
from hub_services.course_git import (
    CourseError,
    branch_tip,
    changes,
    commit_folder,
    fetch_remote,
    find_course,
    revision_number,
)
from localstack.paths import StackPaths
from spawner_hooks.courses import REVISIONS_FILE, CourseSource, nbgitpuller_link, read_revisions
from spawner_hooks.files import atomic_write


def courses_dir(paths: StackPaths) -> Path:
    return paths.state / "courses"


def mirror(paths: StackPaths, name: str) -> Path:
    return courses_dir(paths) / f"{name}.git"


def revisions_file(paths: StackPaths) -> Path:
    return courses_dir(paths) / REVISIONS_FILE


def sources(site: Site, paths: StackPaths) -> list[CourseSource]:
    """What the spawn hook pulls: every course from its mirror under the state folder."""
    return [
        CourseSource(c.name, mirror(paths, c.name).as_uri(), c.branch, c.target)
        for c in site.courses
    ]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localstack.courses", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["push", "status"])
    parser.add_argument("--course", help="name of the course in the site file (push)")
    parser.add_argument("--site", type=Path, default=Path("examples/site.local.yaml"))
    parser.add_argument("--from", dest="folder", type=Path, help="clusters: push this folder")
    args = parser.parse_args(argv)
    paths = StackPaths.default()
    try:
        site = load_site(args.site)
        if site.local is None:  # a cluster site: the course remotes and the running pods
            from hub_services import courses as cluster

            forward = [args.command, "--site", str(args.site)]
            forward += ["--course", args.course] if args.course else []
            forward += ["--from", str(args.folder)] if args.folder else []
            return cluster.main(forward)
        if args.folder:
            print(
                "lakehub: FROM= is for cluster sites; here the course's source folder"
                " in the site file is what gets published",
                file=sys.stderr,
            )
            return 2
        if args.command == "status":
            print(status_text(site, paths))
            return 0
        if not args.course:
            names = ", ".join(c.name for c in site.courses) or "none in the site file"
            print(f"usage: make push-notebooks COURSE=<name>  (courses: {names})", file=sys.stderr)
            return 2
        print(push(site, paths, args.course).text())
        return 0
    except SiteError as exc:
        print(exc, file=sys.stderr)
        return 1
    except CourseError as exc:
        print(f"lakehub: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
