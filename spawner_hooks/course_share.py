"""A student shares their server with their course's instructors, and with nobody else.

JupyterHub 5 can share a server with any user or group (``POST /hub/api/shares``, scope
``shares``), but cannot restrict to whom.  lakehub gives students no ``shares`` scope;
instead this handler, served by the hub itself at
``/hub/api/lakehub/shares/<user>`` (``hub_config.course_access``), makes the share on
their behalf after checking :func:`courses.groups.share_target`:

* ``GET``: the courses the user may share with, and the current shares of their server;
* ``POST {"course": "hyy"}``: share with the course's instructors' group;
  ``{"course": "hyy", "instructor": "ingrid"}``: with one of them (by name);
* ``DELETE {"course": ..., ["instructor": ...]}``: take the share back.

A share grants ``access:servers`` on that one server (JupyterHub's default for a share).
The caller needs ``custom:lakehub:course-share!user=<user>`` (every user's role and every
session's token have it for their own name): nobody shares someone else's server.
"""

from __future__ import annotations

import json

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from courses.groups import ShareRefused, share_target
from courses.membership import enrolments
from lakehub.contract import COURSE_SHARE_SCOPE, instructors_group
from sitefile.model import Course


def _group_names(orm_user) -> list[str]:
    return [g.name for g in orm_user.groups]


class CourseShareHandler(APIHandler):
    def initialize(self, courses: list[Course]) -> None:
        self.courses = list(courses)

    def _student(self, user_name: str):
        """The server's owner, once the caller may share for them (JupyterHub's
        ``needs_scope`` checks scopes when the module loads, before the hub has defined
        lakehub's custom scope, so the check is made here)."""
        if self.current_user is None:
            raise web.HTTPError(403, "a JupyterHub token or login is required")
        if not self.has_scope(f"{COURSE_SHARE_SCOPE}!user={user_name}"):
            raise web.HTTPError(403, f"you may not share {user_name}'s servers")
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"no user {user_name}")
        return user

    def _target(self, user, body):
        if not isinstance(body, dict):
            raise web.HTTPError(400, 'send a JSON object: {"course": "<name>"}')
        course = body.get("course")
        instructor = body.get("instructor")
        if not isinstance(course, str) or not course:
            raise web.HTTPError(400, 'name the course: {"course": "<name>"}')
        if instructor is not None and not isinstance(instructor, str):
            raise web.HTTPError(400, '"instructor" is a username')
        teacher = self.find_user(instructor) if instructor else None
        if instructor and teacher is None:
            raise web.HTTPError(403, f"{instructor!r} is not an instructor of {course!r}")
        try:
            kind, name = share_target(
                self.courses,
                _group_names(user.orm_user),
                course,
                instructor,
                _group_names(teacher.orm_user) if teacher else (),
            )
        except ShareRefused as exc:
            raise web.HTTPError(403, str(exc)) from None
        if kind == "user":
            return teacher.orm_user
        group = orm.Group.find(self.db, name=name)
        if group is None:  # a course whose instructors' group was never made
            raise web.HTTPError(404, f"the course {course!r} has no instructors yet")
        return group

    def _server(self, user, body: dict):
        server = body.get("server", "")
        spawner = user.orm_spawners.get(server) if isinstance(server, str) else None
        if spawner is None:
            raise web.HTTPError(404, f"{user.name} has no server {server!r} to share")
        return spawner

    @staticmethod
    def _model(share) -> dict:
        who = share.user or share.group
        return {
            "server": f"{share.spawner.user.name}/{share.spawner.name}",
            "kind": "user" if share.user else "group",
            "with": who.name,
            "scopes": sorted(share.scopes),
        }

    async def get(self, user_name: str) -> None:
        user = self._student(user_name)
        mine = enrolments(self.courses, _group_names(user.orm_user))
        shares = [self._model(s) for sp in user.orm_spawners.values() for s in sp.shares]
        courses = [{"course": e.name, "instructors": instructors_group(e.name)} for e in mine]
        self.finish(json.dumps({"courses": courses, "shares": shares}))

    async def post(self, user_name: str) -> None:
        user = self._student(user_name)
        body = self.get_json_body() or {}
        target = self._target(user, body)
        spawner = self._server(user, body)
        share = orm.Share.grant(self.db, spawner, target)
        self.log.info("lakehub: %s shared %r with %s", user_name, spawner.name, target.name)
        self.finish(json.dumps(self._model(share)))

    async def delete(self, user_name: str) -> None:
        user = self._student(user_name)
        body = self.get_json_body() or {}
        target = self._target(user, body)
        orm.Share.revoke(self.db, self._server(user, body), target)
        self.set_status(204)
        self.finish()
