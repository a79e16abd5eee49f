"""Courses in the hub: their groups, their instructors' roles, the login's group sync and
the students' share endpoint; one :func:`configure` for the local hub and the cluster's.

* **Groups.**  Every course has ``course-<name>`` (students) and
  ``course-<name>-instructors``.  Native sites load them at hub start with the site
  file's usernames (JupyterHub's ``load_groups`` only adds: members added by hand stay).
  OIDC sites cannot use ``load_groups`` beside the authenticator's ``manage_groups``; their
  login (:class:`spawner_hooks.course_login.LakehubOAuthenticator`) computes the user's
  groups from the provider's claim, the site file and the groups the user already has
  (:func:`courses.groups.login_groups`), and the instructors' groups exist from the start
  because their roles name them.
* **Instructors.**  One role per course, given to its instructors' group, with scopes
  filtered to ``!group=course-<name>``: list the students and read their servers and
  activity, start and stop those servers, open them (``access:servers``), and the admin
  page (``admin-ui``), which then shows only those students.  Nothing on other users.
* **Sharing.**  Students cannot create JupyterHub shares themselves (no ``shares``
  scope); ``POST /hub/api/lakehub/shares/<user>`` (:mod:`spawner_hooks.course_share`)
  shares their server with the instructors of a course they are in, and nobody else.
* **Usage.**  ``GET /hub/api/lakehub/usage?course=<name>``
  (:mod:`spawner_hooks.course_usage`) gives a course's sessions from the hub's sessions
  record to its instructors and to admins: how the usage report gets them on a cluster.
"""

from __future__ import annotations

from pathlib import Path

from courses.membership import site_groups
from lakehub import contract
from sitefile import OidcAuth, Site
from sitefile.model import Course

AUTHENTICATOR_CLASS = "spawner_hooks.course_login.LakehubOAuthenticator"
SHARE_ROUTE = rf"/api/{contract.COURSE_SHARE_API}/(?P<user_name>[^/]+)"
USAGE_ROUTE = rf"/api/{contract.COURSE_USAGE_API}"

CUSTOM_SCOPES = {
    contract.COURSE_SHARE_SCOPE: {
        "description": "share one's own server with the instructors of one's courses",
    }
}


def instructor_role_name(course: str) -> str:
    return f"lakehub-{contract.instructors_group(course)}"


def instructor_scopes(course: str) -> list[str]:
    """What a course's instructors may do, on the course's students only."""
    students = f"!group={contract.course_group(course)}"
    return [
        "admin-ui",
        f"list:users{students}",
        f"read:users{students}",
        f"read:users:activity{students}",
        f"read:servers{students}",
        f"servers{students}",
        f"access:servers{students}",
        f"read:groups{students}",
        f"list:groups{students}",
    ]


def instructor_role(course: Course) -> dict:
    return {
        "name": instructor_role_name(course.name),
        "description": f"instructors of {course.name}: its students' servers and activity",
        "scopes": instructor_scopes(course.name),
        "groups": [contract.instructors_group(course.name)],
    }


def course_roles(site: Site) -> list[dict]:
    return [instructor_role(c) for c in site.courses]


def load_groups(site: Site) -> dict[str, dict]:
    """``JupyterHub.load_groups``: every course's two groups with the site's usernames."""
    return {name: {"users": users} for name, users in site_groups(site.courses).items()}


def groups_by_login(site: Site) -> bool:
    """OIDC sites: the login decides the groups (JupyterHub's ``manage_groups``)."""
    return isinstance(site.auth, OidcAuth)


def configure(c, site: Site, sessions: Path | None = None) -> None:
    """Course groups, instructor roles, the share endpoint, the usage endpoint (on the
    sessions record ``sessions``, when given) and the login's group sync on the traitlets
    config ``c`` (after its ``load_roles`` are set: the roles are added)."""
    c.JupyterHub.custom_scopes = {**CUSTOM_SCOPES}
    from spawner_hooks.course_share import CourseShareHandler

    c.JupyterHub.extra_handlers = [(SHARE_ROUTE, CourseShareHandler, {"courses": site.courses})]
    if sessions is not None:
        from spawner_hooks.course_usage import CourseUsageHandler

        usage = {"courses": site.courses, "record": sessions}
        c.JupyterHub.extra_handlers.append((USAGE_ROUTE, CourseUsageHandler, usage))
    if site.courses:
        c.JupyterHub.load_roles.extend(course_roles(site))
    if groups_by_login(site):
        assert isinstance(site.auth, OidcAuth)
        c.JupyterHub.authenticator_class = AUTHENTICATOR_CLASS
        c.LakehubOAuthenticator.manage_groups = True
        c.LakehubOAuthenticator.auth_state_groups_key = f"oauth_user.{site.auth.groups_claim}"
        c.LakehubOAuthenticator.lakehub_courses = [
            course.model_dump(mode="json") for course in site.courses
        ]
    elif site.courses:
        c.JupyterHub.load_groups = load_groups(site)
