"""Git steps behind publishing a course revision, shared by ``make push-notebooks`` for
the local stack (``courses.local``: bare mirrors under the state folder) and for
clusters (``courses.cluster``: a temporary clone of the course's remote).

A revision is a folder's content committed as it is (a fixed author, so the same content
gives the same tree) or the tip of an instructor's branch; revisions are numbered by
counting commits.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

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


def git(*args: str, git_dir: Path | None = None, env: dict | None = None, cwd=None) -> str:
    full_env = {**os.environ, "LANG": "C", "GIT_TERMINAL_PROMPT": "0", **AUTHOR, **(env or {})}
    cmd = ["git"] + ([f"--git-dir={git_dir}"] if git_dir else []) + list(args)
    done = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=cwd, check=False)
    if done.returncode != 0:
        raise CourseError(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def ensure_mirror(repo: Path, branch: str) -> None:
    """A bare repository every student account can read (folders 0755, files 0644)."""
    old = os.umask(0o022)
    try:
        repo.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(repo.parent, 0o755)  # noqa: S103  students' accounts read the mirrors
        if not (repo / "HEAD").exists():
            git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(repo))
        (repo / "info").mkdir(exist_ok=True)
        (repo / "info" / "exclude").write_text("\n".join(EXCLUDE) + "\n")
    finally:
        os.umask(old)


def branch_tip(repo: Path, branch: str) -> str | None:
    try:
        return git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", git_dir=repo)
    except CourseError:
        return None


def commit_folder(folder: Path, repo: Path, branch: str, message: str) -> tuple[str, bool]:
    """Commit ``folder`` as it is now onto ``branch``; return (tip, whether it is new)."""
    if not folder.is_dir():
        raise CourseError(f"the course folder {folder} does not exist")
    ensure_mirror(repo, branch)
    parent = branch_tip(repo, branch)
    old = os.umask(0o022)
    try:
        with tempfile.TemporaryDirectory(prefix="lakehub-course-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), "GIT_WORK_TREE": str(folder)}
            git("add", "--all", ".", git_dir=repo, env=env, cwd=folder)
            tree = git("write-tree", git_dir=repo, env=env)
        if parent and git("rev-parse", f"{parent}^{{tree}}", git_dir=repo) == tree:
            return parent, False
        if tree == git("hash-object", "-t", "tree", "/dev/null", git_dir=repo):
            raise CourseError(f"the course folder {folder} holds no files to hand out")
        args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
        commit = git(*args, git_dir=repo)
        git(
            "update-ref",
            f"refs/heads/{branch}",
            commit,
            *([parent] if parent else []),
            git_dir=repo,
        )
        git("symbolic-ref", "HEAD", f"refs/heads/{branch}", git_dir=repo)
        git("update-server-info", git_dir=repo)
    finally:
        os.umask(old)
    return commit, True


def fetch_remote(url: str, repo: Path, branch: str) -> tuple[str, bool]:
    """Fetch ``branch`` of the instructor's remote into the mirror."""
    ensure_mirror(repo, branch)
    before = branch_tip(repo, branch)
    old = os.umask(0o022)
    try:
        git(
            "fetch",
            "--quiet",
            "--force",
            "--",
            url,
            f"+refs/heads/{branch}:refs/heads/{branch}",
            git_dir=repo,
        )
        git("symbolic-ref", "HEAD", f"refs/heads/{branch}", git_dir=repo)
        git("update-server-info", git_dir=repo)
    finally:
        os.umask(old)
    after = branch_tip(repo, branch)
    assert after is not None
    return after, after != before


def revision_number(repo: Path, sha: str) -> int | None:
    """1 for the first revision, 2 for the next, ... (commits reachable from ``sha``)."""
    try:
        return int(git("rev-list", "--count", sha, git_dir=repo))
    except (CourseError, ValueError):
        return None


def changes(repo: Path, old: str | None, new: str) -> dict[str, list[str]]:
    if old is None:
        files = git("ls-tree", "-r", "--name-only", new, git_dir=repo).splitlines()
        return {"added": files, "changed": [], "removed": []}
    out = git("diff", "--name-status", "--no-renames", old, new, git_dir=repo)
    kinds = {"A": "added", "M": "changed", "D": "removed"}
    found: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
    for line in out.splitlines():
        status, name = line.split("\t", 1)
        found[kinds.get(status[0], "changed")].append(name)
    return found


def find_course(site, name: str):
    """The site's course called ``name``, or a CourseError listing the known ones."""
    for course in site.courses:
        if course.name == name:
            return course
    known = ", ".join(c.name for c in site.courses) or "none; add a courses: list"
    raise CourseError(f"no course {name!r} in the site file (courses: {known})")
