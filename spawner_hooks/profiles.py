"""Which profiles (server sizes) a user may choose, and the check the hub makes before a
server starts.

The site's ``profiles:`` are open to every user unless a course names them; a course's
members may choose the profiles their courses name too (the union over their courses,
:func:`courses.membership.allowed_profiles`).  The choice is enforced by the hub in the
spawn hook (:class:`ProfileCheck`), whatever the request: the spawn form lists only the
allowed profiles, and a request for another one through the REST API
(``POST /hub/api/users/<name>/server`` with ``{"profile": "large"}``) is refused with a
message naming the profile and the courses that grant it.

On the local stack the spawn form is :func:`options_form` and the chosen profile sets the
spawner's ``mem_limit`` and ``cpu_limit``, which a local server only sees as the variables
``MEM_LIMIT`` and ``CPU_LIMIT`` (JupyterHub's local spawner enforces neither).  On
clusters KubeSpawner's ``profile_list`` is a callable giving each user their own list
(:func:`kube_profile_list`), and the limits are the pod's.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence

from courses import membership
from sitefile.model import Profile, Site

log = logging.getLogger("JupyterHub").getChild("lakehub")

# the key of the choice in a spawn's user_options (KubeSpawner's own)
OPTION = "profile"


class ProfileRefused(Exception):
    """A profile this user may not choose; ``str()`` says why and what they may choose."""


def hub_groups(spawner) -> list[str]:
    """The hub groups of the spawner's user."""
    return [g.name for g in getattr(spawner.user, "groups", [])]


def offered(site: Site, groups: Sequence[str]) -> list[Profile]:
    """The site's profiles a user in the hub groups ``groups`` may choose, in site order."""
    mine = membership.enrolments(site.courses, groups)
    names = membership.allowed_profiles([p.name for p in site.profiles], site.courses, mine)
    return [p for p in site.profiles if p.name in names]


def granted_by(site: Site, profile: Profile) -> list[str]:
    """The courses whose members may choose ``profile`` (none: it is open to everyone)."""
    return [c.name for c in site.courses if profile.name in c.profiles]


def find(site: Site, requested: str) -> Profile | None:
    """The profile a request names, by its slug (as KubeSpawner's form sends it) or by
    its name, ignoring case."""
    wanted = requested.strip().lower()
    return next(
        (p for p in site.profiles if wanted in (p.slug, p.name.lower())),
        None,
    )


def default_of(site: Site, allowed: Sequence[Profile]) -> Profile | None:
    """The site's default profile if the user may have it, else their first."""
    if site.default_profile in allowed:
        return site.default_profile
    return allowed[0] if allowed else None


def _listed(profiles: Sequence[Profile]) -> str:
    return ", ".join(f"{p.slug!r}" for p in profiles) or "none"


def choose(site: Site, groups: Sequence[str], requested: str | None) -> Profile:
    """The profile a spawn gets: the requested one if the user may have it, else the
    site's default (or the first profile open to the user) when nothing is requested.
    Raises :class:`ProfileRefused` with a message for the user."""
    allowed = offered(site, groups)
    if not requested:
        if not allowed:
            raise ProfileRefused(
                "no profile is open to you: every profile of this site belongs to a course"
                " you are not in; ask your instructor to add you to the course"
            )
        return default_of(site, allowed)
    profile = find(site, str(requested))
    if profile is None:
        raise ProfileRefused(
            f"there is no profile {requested!r}; you may choose {_listed(allowed)}"
        )
    if profile not in allowed:
        courses = ", ".join(granted_by(site, profile))
        raise ProfileRefused(
            f"profile {profile.slug!r} ({profile.name}) is only for members of the"
            f" course(s) {courses}; you may choose {_listed(allowed)}"
        )
    return profile


# --- the local stack -----------------------------------------------------------------------


def form_html(profiles: Sequence[Profile], selected: Profile | None) -> str:
    """The spawn form: one radio button per profile (pure)."""
    rows = []
    for p in profiles:
        checked = " checked" if p is selected else ""
        about = p.description or f"{p.cpu:g} CPU, {p.memory} memory"
        rows.append(
            '<div class="radio"><label>'
            f'<input type="radio" name="{OPTION}" value="{html.escape(p.slug)}"{checked}> '
            f"<strong>{html.escape(p.name)}</strong> &mdash; {html.escape(about)}"
            "</label></div>"
        )
    return "\n".join(rows)


def options_form(site: Site) -> Callable:
    """``Spawner.options_form`` for the local stack: the user's own profiles, or no form
    (an empty string) when they have one choice or none."""

    def lakehub_options_form(spawner) -> str:
        mine = offered(site, hub_groups(spawner))
        if len(mine) < 2:
            return ""
        return form_html(mine, default_of(site, mine))

    return lakehub_options_form


def options_from_form(formdata: dict) -> dict:
    """``Spawner.options_from_form``: the chosen profile's slug (checked by the hook)."""
    chosen = formdata.get(OPTION) or [""]
    return {OPTION: chosen[0]} if chosen[0] else {}


def apply_local(spawner, profile: Profile) -> None:
    """A local server's limits: JupyterHub passes them as environment variables only."""
    spawner.mem_limit = profile.memory
    spawner.cpu_limit = profile.cpu
    spawner.mem_guarantee = profile.memory_guarantee or profile.memory
    spawner.cpu_guarantee = profile.cpu_guarantee or profile.cpu


# --- clusters ------------------------------------------------------------------------------


def kubespawner_profile(profile: Profile, default: bool) -> dict:
    """One entry of KubeSpawner's ``profile_list``: a size and, when it says so, another
    image (pure; also what the chart's values render)."""
    override: dict = {
        "cpu_limit": profile.cpu,
        "cpu_guarantee": profile.cpu_guarantee or profile.cpu,
        "mem_limit": profile.memory,
        "mem_guarantee": profile.memory_guarantee or profile.memory,
    }
    if profile.image is not None:
        override["image"] = profile.image.reference
        if profile.image.pull_policy:
            override["image_pull_policy"] = profile.image.pull_policy
    entry = {
        "display_name": profile.name,
        "slug": profile.slug,
        "description": profile.description or f"{profile.cpu:g} CPU, {profile.memory} memory",
        "kubespawner_override": override,
    }
    if default:
        entry["default"] = True
    return entry


def kube_profile_list(site: Site) -> Callable:
    """KubeSpawner's ``profile_list`` as a callable: each user's own profiles."""

    def lakehub_profile_list(spawner) -> list[dict]:
        mine = offered(site, hub_groups(spawner))
        return [kubespawner_profile(p, p is default_of(site, mine)) for p in mine]

    return lakehub_profile_list


# --- the check, both spawners --------------------------------------------------------------


class ProfileCheck:
    """A pre-spawn step: refuse a profile the user may not choose (HTTP 403 with the
    reason), and on the local stack set the chosen profile's limits; on clusters set the
    size of a member's new home volume from their courses (``storage``)."""

    def __init__(self, site: Site, local: bool):
        self.site = site
        self.local = local

    async def __call__(self, spawner) -> None:
        from tornado.web import HTTPError

        groups = hub_groups(spawner)
        requested = (spawner.user_options or {}).get(OPTION)
        try:
            profile = choose(self.site, groups, requested)
        except ProfileRefused as exc:
            log.warning("lakehub: refused a server for %s: %s", spawner.user.name, exc)
            raise HTTPError(403, str(exc).replace("%", "%%")) from None
        if requested:  # by its slug, as KubeSpawner looks it up
            spawner.user_options = {**spawner.user_options, OPTION: profile.slug}
        if self.local:
            apply_local(spawner, profile)
            return
        size = membership.home_storage(membership.enrolments(self.site.courses, groups))
        if size is not None:
            # KubeSpawner makes the home volume only when it does not exist yet
            spawner.storage_capacity = size
