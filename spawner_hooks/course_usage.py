"""A course's sessions from the hub's sessions record, for the usage report.

``GET /hub/api/lakehub/usage?course=<name>`` (served by the hub itself,
``hub_config.course_access``) answers with the folded sessions (:mod:`courses.usage`) of
the course's students::

    {"course": NAME, "recorded": true, "sessions": [{"user", "server", "start", "end",
     "last_seen", "cpu_s", "peak_rss"}, ...]}

On a cluster the record lives on the hub's volume inside the hub pod, so this is how
``make course-report SITE=...`` on an admin's machine gets server hours, sessions, CPU
time and peak memory (locally the report reads the file itself).

Who may ask is the report's own rule (:func:`courses.report.allowed_courses`, not a copy):
hub admins for any course, a course's instructors (``course-<name>-instructors``) for
theirs.  The token must also carry the students' activity
(``read:users:activity!group=course-<name>``, which the instructors' role has): an
admin's token narrowed to less is refused too.  ``recorded`` is false where the hub keeps
no record yet (no server was ever seen).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from courses.report import Refused, ReportError, allowed_courses, caller_from_model
from courses.usage import Session, read_records, sessions
from lakehub.contract import course_group
from sitefile.model import Course


def _read(record: Path) -> tuple[bool, list[Session]]:
    """(whether the record exists, its sessions) (blocking file I/O)."""
    return record.exists(), sessions(read_records(record))


class CourseUsageHandler(APIHandler):
    def initialize(self, courses: list[Course], record: Path) -> None:
        self.courses = {c.name: c for c in courses}
        self.record = record

    def _caller(self):
        """The token's owner as the report sees it (``GET /hub/api/user``'s fields)."""
        owner = self.current_user
        groups = [g.name for g in getattr(owner, "groups", None) or []]
        scopes = ["admin:users"] if self.has_scope("admin:users") else []
        model = {"name": owner.name, "admin": getattr(owner, "admin", False), "groups": groups}
        return caller_from_model({**model, "scopes": scopes})

    async def get(self) -> None:
        if self.current_user is None:
            raise web.HTTPError(403, "a JupyterHub token or login is required")
        name = self.get_argument("course", "")
        if not name:
            raise web.HTTPError(400, "name the course: ?course=<name>")
        caller = self._caller()
        try:
            allowed_courses(caller, list(self.courses), name)
        except Refused as exc:
            raise web.HTTPError(403, str(exc)) from None
        except ReportError as exc:
            raise web.HTTPError(404, str(exc)) from None
        group = course_group(name)
        if not self.has_scope(f"read:users:activity!group={group}"):
            raise web.HTTPError(
                403,
                f"this token of {caller.name} may not read the activity of course {name}'s"
                f" students (scope read:users:activity!group={group})",
            )
        students: set[str] | None = None  # None: every user (a course for everyone)
        if self.courses[name].students != "everyone":
            found = orm.Group.find(self.db, name=group)
            students = {u.name for u in found.users} if found is not None else set()
        recorded, all_sessions = await asyncio.to_thread(_read, self.record)
        mine = [s.as_dict() for s in all_sessions if students is None or s.user in students]
        self.finish(json.dumps({"course": name, "recorded": recorded, "sessions": mine}))
