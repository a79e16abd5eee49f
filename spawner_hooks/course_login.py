"""OIDC logins that keep course groups: the provider's ``groups`` claim decides what it
gives, and nothing else.

JupyterHub's ``manage_groups`` makes the authenticator the source of truth: at every
login and every refresh of the login it sets the user's groups to exactly the list the
authenticator returns, which would drop a course an admin added by hand.  lakehub keeps
``manage_groups`` (oauthenticator's ``allowed_groups`` needs it, and JupyterHub creates
new users' groups through it) but hands JupyterHub the *whole* list: the user's current
hub groups, minus those the provider gave before and gives no longer, plus the provider's
groups and the course groups they grant (``group:<name>`` in the site file), plus the
courses that name the user (:func:`courses.groups.login_groups`).  Which groups came from
the provider is kept in the user's auth state (``lakehub_provider_groups``).  Both paths
into ``manage_groups`` pass through here: the login and the login's refresh.
"""

from __future__ import annotations

from oauthenticator.generic import GenericOAuthenticator
from traitlets import List

from courses.groups import login_groups
from sitefile.model import Course

PROVIDER_GROUPS_KEY = "lakehub_provider_groups"


class LakehubOAuthenticator(GenericOAuthenticator):
    lakehub_courses = List(
        help="the site's courses (as the site file gives them), for the login's course groups"
    ).tag(config=True)

    def _courses(self) -> list[Course]:
        return [Course.model_validate(c) for c in self.lakehub_courses]

    async def _with_course_groups(self, user, auth_model: dict) -> dict:
        """``auth_model`` with the user's whole group list (``user`` is None on a first
        login)."""
        state = auth_model.get("auth_state")
        if not isinstance(state, dict):  # no auth state: nothing to remember with
            return auth_model
        previous: list[str] = []
        current: list[str] = []
        if user is not None:
            current = [g.name for g in user.groups]
            before = await user.get_auth_state() or {}
            previous = list(before.get(PROVIDER_GROUPS_KEY, []))
        decided = login_groups(
            self._courses(),
            auth_model["name"],
            current=current,
            provider=auth_model.get("groups") or [],
            previous=previous,
        )
        state[PROVIDER_GROUPS_KEY] = decided.from_provider
        return {**auth_model, "groups": decided.groups}

    async def get_authenticated_user(self, handler, data):
        """After the allow checks (which see only the provider's groups)."""
        auth_model = await super().get_authenticated_user(handler, data)
        if not auth_model:
            return auth_model
        return await self._with_course_groups(handler.find_user(auth_model["name"]), auth_model)

    async def refresh_user(self, user, handler=None, **kwargs):
        refreshed = await super().refresh_user(user, handler, **kwargs)
        if isinstance(refreshed, dict):
            refreshed = await self._with_course_groups(user, refreshed)
        return refreshed
