"""`make push-notebooks` and `make course-status` for a hub on a cluster.

    python -m courses.cluster status --site SITE [--hub-url URL]
    python -m courses.cluster push --site SITE --course NAME [--from FOLDER]

On a cluster, student pods pull each course from its git remote (the ``source`` of the
site file) when they start, so publishing a revision means updating that branch:
``push --from FOLDER`` commits the folder as it is now onto the branch (the same
commit rules as the local stack, ``courses.git``) and pushes it with the
instructor's own git credentials; ``push`` without ``--from`` reports the branch as it
is (for instructors who ``git push`` themselves).

Who has which revision: every running server answers ``/lakehub/courses`` (lakehub's
server extension, ``lakehub.courses``); this command asks each one through the hub's
proxy.  It needs a hub API token allowed to list users and reach their servers, read
from ``$JUPYTERHUB_API_TOKEN`` or ``--token-file`` (never from the command line): the
chart's hub service ``lakehub-courses`` has exactly those scopes (docs/instructors.md).
Stopped servers are counted apart: they pull the branch's tip at their next start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from courses.git import (
    CourseError,
    branch_tip,
    changes,
    commit_folder,
    find_course,
    git,
    revision_number,
)
from courses.links import nbgitpuller_link
from lakehub.contract import COURSE_REPORT_PATH
from sitefile import Course, Site, SiteError, load_site

SCOPES = ["list:users", "read:servers", "access:servers"]


@dataclass
class Published:
    """A course branch as the remote has it."""

    revision: str
    number: int | None
    new: bool = False
    changes: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ServerReport:
    user: str
    server: str
    revisions: dict[str, dict]  # course name -> {"revision", "edited"}
    error: str | None = None


# --- the remote ---------------------------------------------------------------------------


def clone(url: str, branch: str, into: Path) -> str | None:
    """A bare clone of ``branch`` (None: the remote has no such branch yet)."""
    heads = git("ls-remote", "--heads", url, f"refs/heads/{branch}")
    git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(into))
    if not heads:
        return None
    git("fetch", "--quiet", url, f"+refs/heads/{branch}:refs/heads/{branch}", git_dir=into)
    return branch_tip(into, branch)


def publish(course: Course, folder: Path | None) -> Published:
    """Commit ``folder`` onto the course's branch at its remote and push; without a
    folder, read the branch."""
    with tempfile.TemporaryDirectory(prefix="lakehub-course-") as tmp:
        repo = Path(tmp) / "course.git"
        before = clone(course.source, course.branch, repo)
        if folder is None:
            if before is None:
                raise CourseError(
                    f"{course.source} has no branch {course.branch!r} yet: push a first"
                    f" revision with FROM=<folder> or with git"
                )
            return Published(before, revision_number(repo, before))
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        tip, new = commit_folder(folder, repo, course.branch, f"{course.name}: {stamp}")
        if new:
            git("push", "--quiet", course.source, f"refs/heads/{course.branch}", git_dir=repo)
        return Published(
            tip,
            revision_number(repo, tip),
            new,
            changes(repo, before, tip) if new else {},
        )


# --- the running servers ------------------------------------------------------------------


async def server_reports(hub_url: str, token: str, parallel: int = 8) -> list[ServerReport]:
    """Ask every running server for its course revisions, through the hub's proxy."""
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as http:
        r = await http.get(f"{hub_url}/hub/api/users", params={"state": "ready"})
        if r.status_code in (401, 403):
            raise CourseError(
                f"the hub refused the token (HTTP {r.status_code}); it needs the scopes"
                f" {', '.join(SCOPES)}"
            )
        r.raise_for_status()
        limit = asyncio.Semaphore(parallel)

        async def one(user: str, server: str, url: str) -> ServerReport:
            async with limit:
                try:
                    got = await http.get(f"{hub_url}{url.rstrip('/')}/{COURSE_REPORT_PATH}")
                    got.raise_for_status()
                    found = {c["name"]: c for c in got.json()["courses"]}
                    return ServerReport(user, server, found)
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                    return ServerReport(user, server, {}, f"{type(exc).__name__}")

        wanted = [
            (user["name"], name, spec["url"])
            for user in r.json()
            for name, spec in (user.get("servers") or {}).items()
            if spec.get("ready") and spec.get("url")
        ]
        return list(await asyncio.gather(*(one(*w) for w in wanted)))


def count_users(hub_url: str, token: str) -> int:
    r = httpx.get(
        f"{hub_url}/hub/api/users", headers={"Authorization": f"token {token}"}, timeout=30
    )
    r.raise_for_status()
    return len(r.json())


# --- what the instructor reads ------------------------------------------------------------


def course_lines(
    course: Course, published: Published, reports: Sequence[ServerReport], link: str | None
) -> list[str]:
    """One course's summary: the published revision and where each running student is."""
    short = published.revision[:7]
    lines = [
        f"course {course.name} (~/{course.target}) from {course.source} ({course.branch}):"
        f" revision {published.number} ({short})"
    ]
    current, behind, failed = [], [], []
    for rep in sorted(reports, key=lambda r: (r.user, r.server)):
        who = rep.user + (f"/{rep.server}" if rep.server else "")
        if rep.error:
            failed.append(f"{who} ({rep.error})")
            continue
        state = rep.revisions.get(course.name) or {}
        rev, edited = state.get("revision"), state.get("edited", 0)
        note = f", {edited} file(s) edited" if edited else ""
        if rev == published.revision:
            current.append(f"{who}{note}")
        else:
            behind.append(f"{who} ({rev[:7] if rev else 'not pulled'}{note})")
    lines.append(f"  running servers on it: {len(current)}")
    lines += [f"    {w}" for w in current]
    lines.append(f"  running servers behind (next start, or the pull link): {len(behind)}")
    lines += [f"    {w}" for w in behind]
    if failed:
        lines.append(f"  running servers that did not answer: {', '.join(failed)}")
    if link:
        lines.append(f"  pull link: {link}")
    return lines


def push_lines(course: Course, published: Published) -> list[str]:
    short = published.revision[:7]
    if not published.new:
        return [f"==> course {course.name}: nothing new, revision {published.number} ({short})"]
    c = published.changes
    summary = ", ".join(f"{len(c[k])} {k}" for k in ("changed", "added", "removed") if c.get(k))
    lines = [
        f"==> course {course.name}: pushed revision {published.number} ({short})"
        f" to {course.source} ({course.branch})",
        f"    since the previous revision: {summary or 'no file changes'}",
    ]
    for kind, sign in (("changed", "~"), ("added", "+"), ("removed", "-")):
        lines += [f"      {sign} {name}" for name in c.get(kind, [])]
    return lines


def pull_link(hub_url: str, course: Course) -> str:
    return nbgitpuller_link(hub_url + "/", course)


def status(site: Site, hub_url: str, token: str, only: str | None = None) -> str:
    courses = [find_course(site, only)] if only else list(site.courses)
    if not courses:
        return "no courses in the site file (add a courses: list; see docs/instructors.md)"
    reports = asyncio.run(server_reports(hub_url, token))
    stopped = count_users(hub_url, token) - len({r.user for r in reports})
    lines = []
    for course in courses:
        lines += course_lines(course, publish(course, None), reports, pull_link(hub_url, course))
    lines.append(f"students without a running server: {stopped} (they pull at their next start)")
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------


def read_token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            return token_file.read_text().strip()
        except OSError as exc:
            raise CourseError(f"--token-file {token_file}: {exc.strerror}") from None
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "").strip()
    if not token:
        raise CourseError(
            "no hub token: set JUPYTERHUB_API_TOKEN or give --token-file (scopes:"
            f" {', '.join(SCOPES)}; see docs/instructors.md)"
        )
    return token


def reported(run: Callable[[], int]) -> int:
    """A command's body, with its expected failures (a bad site file, a course that cannot
    be found or pushed, a hub that refuses or cannot be reached) as one line on stderr and
    exit status 1, never a traceback."""
    try:
        return run()
    except SiteError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (CourseError, httpx.HTTPError) as exc:
        print(f"lakehub: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m courses.cluster", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["push", "status"])
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--course", help="name of the course in the site file")
    parser.add_argument("--from", dest="folder", type=Path, help="push this folder's content")
    parser.add_argument("--hub-url", help="default: kubernetes.public_url of the site")
    parser.add_argument("--token-file", type=Path, help="default: $JUPYTERHUB_API_TOKEN")
    args = parser.parse_args(argv)

    def run() -> int:
        site = load_site(args.site)
        hub_url = (args.hub_url or str(getattr(site.kubernetes, "public_url", "") or "")).rstrip(
            "/"
        )
        if args.command == "push":
            if not args.course:
                names = ", ".join(c.name for c in site.courses) or "none in the site file"
                print(
                    f"usage: make push-notebooks COURSE=<name>  (courses: {names})", file=sys.stderr
                )
                return 2
            course = find_course(site, args.course)
            published = publish(course, args.folder)
            print("\n".join(push_lines(course, published)))
            if hub_url:
                print(status(site, hub_url, read_token(args.token_file), only=course.name))
            return 0
        if not hub_url:
            raise CourseError("--hub-url: the site names no kubernetes.public_url")
        print(status(site, hub_url, read_token(args.token_file), only=args.course))
        return 0

    return reported(run)


if __name__ == "__main__":
    raise SystemExit(main())
