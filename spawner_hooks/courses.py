"""The spawn step that pulls a student's courses (local stack).

At every spawn the hub runs ``python -m lakehub.courses`` **as the student** (the child
process of :func:`spawner_hooks.as_owner.run_as_owner`, like the home writer) with the
courses' pull plan on standard input; what nbgitpuller does to the student's files is
described in :mod:`lakehub.courses`.  Pods run the same module from their postStart hook.
A failing pull never fails the spawn: one hub log line, a note in the home, and the next
start tries again.  The hub records who pulled which revision for
`make course-status` (:mod:`courses.local`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from courses.local import save_revisions
from courses.membership import enrolments
from lakehub.courses import pull_request, short_reason
from sitefile import Course
from spawner_hooks.as_owner import ChildFailed, run_as_owner

log = logging.getLogger("JupyterHub").getChild("lakehub")

_REPO_ROOT = Path(__file__).resolve().parent.parent


def course_entries(courses: Sequence[Course]) -> list[dict[str, str]]:
    """The courses as a session sees them (``$LAKEHUB_COURSES``): name, folder in the
    home, and where it is pulled from (pure)."""
    return [
        {"name": c.name, "target": c.target, "repo": c.source, "branch": c.branch} for c in courses
    ]


def hub_groups(user) -> list[str]:
    """The names of a hub user's groups (none for a user object without groups)."""
    return [g.name for g in getattr(user, "groups", None) or ()]


def user_courses(
    site_courses: Sequence[Course], available: Sequence[Course], groups: Sequence[str]
) -> list[Course]:
    """The courses a user receives, from ``available`` (the site's courses as this hub
    pulls them), decided by their hub groups (:func:`courses.membership.enrolments`).
    A course they left is not among them: their copy stays, no update reaches it."""
    mine = {e.name for e in enrolments(site_courses, groups)}
    return [c for c in available if c.name in mine]


class CourseDelivery:
    """Run the pulls for one spawn as the student; remember who has which revision."""

    def __init__(
        self,
        courses: Sequence[Course],
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

    def request(self, home: str, courses: Sequence[Course] | None = None) -> dict:
        chosen = self.courses if courses is None else courses
        return pull_request(course_entries(chosen), home, str(self.gitpuller), self.timeout)

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

    async def pull(self, spawner, courses: Sequence[Course] | None = None) -> dict[str, dict]:
        """Pull ``courses`` (by default all of this delivery's) into the home; never
        raises (a spawn must not fail here)."""
        courses = self.courses if courses is None else list(courses)
        if not courses:
            return {}
        username = spawner.user.name
        try:
            reply = await run_as_owner(
                spawner,
                "lakehub.courses",
                self.request(spawner.home_dir, courses),
                env=self.child_env(spawner.home_dir),
                limit_s=self.timeout * len(courses) + 30,
            )
            results = reply["courses"]
        except ChildFailed as exc:
            log.error("lakehub: course pull for %s failed: %s", username, short_reason(str(exc)))
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
                await asyncio.to_thread(save_revisions, self.revisions_file, username, pulled)
        return results
