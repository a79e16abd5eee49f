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
updated at every spawn); both commands compare it with the mirror.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hub_config.site import Course, Site, SiteError, load_site
from localstack.paths import StackPaths
from spawner_hooks.courses import REVISIONS_FILE, CourseSource, nbgitpuller_link, read_revisions
from spawner_hooks.files import atomic_write

AUTHOR = {
    "GIT_AUTHOR_NAME": "lakehub",
    "GIT_AUTHOR_EMAIL": "lakehub@localhost",
    "GIT_COMMITTER_NAME": "lakehub",
    "GIT_COMMITTER_EMAIL": "lakehub@localhost",
}
# never part of a revision: editor leftovers and caches in an instructor's folder
EXCLUDE = [".ipynb_checkpoints/", "__pycache__/", "*.pyc", ".DS_Store", ".git"]


class CourseError(RuntimeError):
    pass


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


def _git(*args: str, git_dir: Path | None = None, env: dict | None = None, cwd=None) -> str:
    full_env = {**os.environ, "LANG": "C", "GIT_TERMINAL_PROMPT": "0", **AUTHOR, **(env or {})}
    cmd = ["git"] + ([f"--git-dir={git_dir}"] if git_dir else []) + list(args)
    done = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=cwd, check=False)
    if done.returncode != 0:
        raise CourseError(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def _ensure_mirror(repo: Path, branch: str) -> None:
    """A bare repository every student account can read (folders 0755, files 0644)."""
    old = os.umask(0o022)
    try:
        repo.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(repo.parent, 0o755)  # noqa: S103  students' accounts read the mirrors
        if not (repo / "HEAD").exists():
            _git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(repo))
        (repo / "info").mkdir(exist_ok=True)
        (repo / "info" / "exclude").write_text("\n".join(EXCLUDE) + "\n")
    finally:
        os.umask(old)


def _tip(repo: Path, branch: str) -> str | None:
    try:
        return _git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", git_dir=repo)
    except CourseError:
        return None


def commit_folder(folder: Path, repo: Path, branch: str, message: str) -> tuple[str, bool]:
    """Commit ``folder`` as it is now onto ``branch``; return (tip, whether it is new)."""
    if not folder.is_dir():
        raise CourseError(f"the course folder {folder} does not exist")
    _ensure_mirror(repo, branch)
    parent = _tip(repo, branch)
    old = os.umask(0o022)
    try:
        with tempfile.TemporaryDirectory(prefix="lakehub-course-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), "GIT_WORK_TREE": str(folder)}
            _git("add", "--all", ".", git_dir=repo, env=env, cwd=folder)
            tree = _git("write-tree", git_dir=repo, env=env)
        if parent and _git("rev-parse", f"{parent}^{{tree}}", git_dir=repo) == tree:
            return parent, False
        if tree == _git("hash-object", "-t", "tree", "/dev/null", git_dir=repo):
            raise CourseError(f"the course folder {folder} holds no files to hand out")
        args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
        commit = _git(*args, git_dir=repo)
        _git(
            "update-ref",
            f"refs/heads/{branch}",
            commit,
            *([parent] if parent else []),
            git_dir=repo,
        )
        _git("symbolic-ref", "HEAD", f"refs/heads/{branch}", git_dir=repo)
        _git("update-server-info", git_dir=repo)
    finally:
        os.umask(old)
    return commit, True


def fetch_remote(url: str, repo: Path, branch: str) -> tuple[str, bool]:
    """Fetch ``branch`` of the instructor's remote into the mirror."""
    _ensure_mirror(repo, branch)
    before = _tip(repo, branch)
    old = os.umask(0o022)
    try:
        _git(
            "fetch",
            "--quiet",
            "--force",
            "--",
            url,
            f"+refs/heads/{branch}:refs/heads/{branch}",
            git_dir=repo,
        )
        _git("symbolic-ref", "HEAD", f"refs/heads/{branch}", git_dir=repo)
        _git("update-server-info", git_dir=repo)
    finally:
        os.umask(old)
    after = _tip(repo, branch)
    assert after is not None
    return after, after != before


def revision_number(repo: Path, sha: str) -> int | None:
    """1 for the first revision, 2 for the next, ... (commits reachable from ``sha``)."""
    try:
        return int(_git("rev-list", "--count", sha, git_dir=repo))
    except (CourseError, ValueError):
        return None


def changes(repo: Path, old: str | None, new: str) -> dict[str, list[str]]:
    if old is None:
        files = _git("ls-tree", "-r", "--name-only", new, git_dir=repo).splitlines()
        return {"added": files, "changed": [], "removed": []}
    out = _git("diff", "--name-status", "--no-renames", old, new, git_dir=repo)
    kinds = {"A": "added", "M": "changed", "D": "removed"}
    found: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
    for line in out.splitlines():
        status, name = line.split("\t", 1)
        found[kinds.get(status[0], "changed")].append(name)
    return found


def _find(site: Site, name: str) -> Course:
    for course in site.courses:
        if course.name == name:
            return course
    known = ", ".join(c.name for c in site.courses) or "none; add a courses: list"
    raise CourseError(f"no course {name!r} in the site file (courses: {known})")


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
    course = _find(site, name)
    repo = mirror(paths, name)
    before = _tip(repo, course.branch) if (repo / "HEAD").exists() else None
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
        tip = _tip(repo, course.branch) if (repo / "HEAD").exists() else None
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
    args = parser.parse_args(argv)
    paths = StackPaths.default()
    try:
        site = load_site(args.site)
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
