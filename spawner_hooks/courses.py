"""Course material pulled into students' homes with nbgitpuller.

Each course of the site file is a git repository (locally: a bare mirror that
``make push-notebooks`` fills).  When a server starts, the hub runs nbgitpuller's own
command, ``gitpuller REPO BRANCH TARGET``, in a child process **as the student**, the
same way :class:`spawner_hooks.hooks.HomeDelivery` runs the home writer.  nbgitpuller
decides what happens to the student's files:

* first start: a clone of the course in ``~/<target>``;
* later starts: ``git fetch``, then a merge of the new revision that prefers the
  student's lines wherever both changed the same lines (``-Xours``); files the student
  never touched become the new revision exactly;
* a course file the student deleted comes back (from the new revision): deleting is how
  a student asks for a fresh copy; it stays away only when the instructor removed it too;
* a file the instructor removed disappears from homes where it was untouched; an edited
  copy is kept;
* a file of the student's own that is in the way of a new course file is renamed with
  a timestamp (``name__YYYYmmddHHMMSS.ipynb``) before the new one arrives.

A failing pull (source unreachable, missing branch) never fails the spawn: the student
finds ``LAKEHUB-COURSES.md`` in their home saying why, the hub log has one line, and the
next start tries again (and removes the note).  Students can also pull at any time
through the link :func:`nbgitpuller_link` builds (nbgitpuller's server extension).

This module holds the pure builders, the hub-side :class:`CourseDelivery`, and the
child's side (``python -m spawner_hooks.courses``, JSON on standard input).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlencode

from spawner_hooks.as_owner import ChildFailed, child_main, run_as_owner
from spawner_hooks.files import atomic_write

log = logging.getLogger("JupyterHub").getChild("lakehub")

NOTICE_NAME = "LAKEHUB-COURSES.md"
REVISIONS_FILE = "revisions.json"
_REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CourseSource:
    """One course as the spawn hook sees it: where to pull from, into which folder."""

    name: str
    repo: str  # a URL git can fetch from (file:// for the local mirrors)
    branch: str
    target: str  # relative to the home


# --- pure builders ---------------------------------------------------------------------


def pull_plan(courses: Sequence[CourseSource], home: str) -> list[dict]:
    """What the child process pulls, in order: one entry per course, absolute targets."""
    return [{**asdict(c), "path": str(PurePosixPath(home) / c.target.strip())} for c in courses]


def gitpuller_command(gitpuller: str, repo: str, branch: str, path: str) -> list[str]:
    """nbgitpuller's own command line: ``gitpuller REPO BRANCH TARGET``."""
    return [gitpuller, repo, branch, path]


def nbgitpuller_link(
    hub_url: str, course: CourseSource, open_path: str | None = None, app: str = "lab"
) -> str:
    """A link that pulls ``course`` into the logged-in student's home and opens it.

    ``/hub/user-redirect/`` sends each student to their own server (starting it if
    needed), where nbgitpuller's extension answers ``git-pull``.
    """
    target = course.target.strip().strip("/")
    urlpath = f"{app}/tree/{target}" + (f"/{open_path.lstrip('/')}" if open_path else "")
    query = urlencode(
        {"repo": course.repo, "branch": course.branch, "targetpath": target, "urlpath": urlpath}
    )
    return f"{hub_url.rstrip('/')}/hub/user-redirect/git-pull?{query}"


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


def _reason(text: str, limit: int = 300) -> str:
    """The first line of git's output that says why (``fatal:``...), else the last one."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("fatal:", "error:", "CONFLICT", "Exception:")):
            return ln[:limit]
    return (lines[-1] if lines else "no output")[:limit]


# --- the hub's side -------------------------------------------------------------------


class CourseDelivery:
    """Run the pulls for one spawn as the student; remember who has which revision."""

    def __init__(
        self,
        courses: Sequence[CourseSource],
        gitpuller: Path,
        revisions_file: Path | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ):
        self.courses = list(courses)
        self.env = dict(env or {})  # e.g. GIT_CONFIG_SYSTEM naming the mirrors as safe
        self.gitpuller = gitpuller
        self.revisions_file = revisions_file
        self.timeout = timeout
        self._lock = asyncio.Lock()

    def request(self, home: str) -> dict:
        return {
            "home": home,
            "gitpuller": str(self.gitpuller),
            "pulls": pull_plan(self.courses, home),
            "notice_name": NOTICE_NAME,
            "timeout": self.timeout,
        }

    def child_env(self, home: str) -> dict[str, str]:
        path = os.pathsep.join([str(self.gitpuller.parent), "/usr/local/bin", "/usr/bin", "/bin"])
        return {
            "HOME": home,
            "PATH": path,
            "LANG": "C",
            "PYTHONPATH": str(_REPO_ROOT),
            "GIT_TERMINAL_PROMPT": "0",  # never wait for a password nobody will type
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
            **self.env,
        }

    async def pull(self, spawner) -> dict[str, dict]:
        """Pull every course into the home; never raises (a spawn must not fail here)."""
        if not self.courses:
            return {}
        username = spawner.user.name
        try:
            reply = await run_as_owner(
                spawner,
                "spawner_hooks.courses",
                self.request(spawner.home_dir),
                env=self.child_env(spawner.home_dir),
                limit_s=self.timeout * len(self.courses) + 30,
            )
            results = reply["courses"]
        except ChildFailed as exc:
            log.error("lakehub: course pull for %s failed: %s", username, _reason(str(exc)))
            return {}
        except Exception as exc:  # noqa: BLE001  one line in the log, the spawn goes on
            log.error("lakehub: course pull for %s failed: %s", username, exc)
            return {}
        for name, res in results.items():
            if res.get("ok"):
                log.info("lakehub: course %s for %s at %s", name, username, res["revision"][:10])
            else:
                log.warning(
                    "lakehub: course %s for %s not updated: %s", name, username, res["reason"]
                )
        pulled = {n: r["revision"] for n, r in results.items() if r.get("ok")}
        if pulled and self.revisions_file is not None:
            async with self._lock:
                await asyncio.to_thread(self._record, username, pulled)
        return results

    def _record(self, username: str, pulled: dict[str, str]) -> None:
        assert self.revisions_file is not None
        current = read_revisions(self.revisions_file)
        updated = record_revisions(current, username, pulled, time.time())
        atomic_write(self.revisions_file, json.dumps(updated, indent=1, sort_keys=True), 0o644)


# --- the child's side: runs as the student ---------------------------------------------


def _run(cmd: list[str], timeout: float, cwd: str | None = None) -> tuple[int, str]:
    try:
        done = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return 124, f"fatal: no answer within {timeout:.0f} s"
    return done.returncode, done.stdout + done.stderr


def pull_one(entry: dict, gitpuller: str, timeout: float) -> dict:
    """Pull one course; ``{"ok": True, "revision": sha}`` or ``{"ok": False, "reason": ...}``."""
    repo, branch, path = entry["repo"], entry["branch"], Path(entry["path"])
    if path.exists() and not (path / ".git").exists():
        return {
            "ok": False,
            "reason": f"the folder ~/{entry['target']} exists but did not come from the course;"
            " rename it (your files stay yours) and restart your server to get the course",
        }
    # ask the source first: gitpuller reports an unreachable source only as an exit code
    rc, out = _run(["git", "ls-remote", "--heads", "--", repo, f"refs/heads/{branch}"], timeout)
    if rc != 0:
        return {"ok": False, "reason": f"the course source {repo} cannot be read ({_reason(out)})"}
    if not out.strip():
        return {"ok": False, "reason": f"the course source {repo} has no branch {branch!r} yet"}
    rc, out = _run(
        gitpuller_command(gitpuller, repo, branch, str(path)), timeout, cwd=str(path.parent)
    )
    if rc != 0:
        return {"ok": False, "reason": f"nbgitpuller could not update it ({_reason(out)})"}
    rc, out = _run(["git", "-C", str(path), "rev-parse", f"origin/{branch}"], timeout)
    if rc != 0:
        return {"ok": False, "reason": f"the pulled folder has no revision ({_reason(out)})"}
    return {"ok": True, "revision": out.strip()}


def apply(request: dict) -> dict:
    os.umask(0o077)
    home = Path(request["home"])
    results = {}
    for entry in request["pulls"]:
        Path(entry["path"]).parent.mkdir(parents=True, exist_ok=True)
        results[entry["name"]] = pull_one(entry, request["gitpuller"], request["timeout"])
    failures = {n: r["reason"] for n, r in results.items() if not r["ok"]}
    notice = home / request["notice_name"]
    if failures:
        targets = {e["name"]: e["target"] for e in request["pulls"]}
        atomic_write(notice, notice_markdown(failures, targets), 0o644)
    else:
        notice.unlink(missing_ok=True)
    return {"courses": results}


if __name__ == "__main__":
    raise SystemExit(child_main(apply))
