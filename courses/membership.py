"""Who takes and who teaches which course: pure functions, no I/O.

A course of the site file becomes two JupyterHub groups (names in :mod:`lakehub.contract`):
``course-<name>`` holds its students, ``course-<name>-instructors`` its instructors.  The
site file lists members as hub usernames or as identity-provider groups (``group:<name>``,
an OIDC ``groups`` claim); the hub's groups are the truth at run time, so members an admin
adds by hand count as much as those the site file lists.  A course whose ``students`` is
``everyone`` is taken by every hub user (the behaviour of sites written before courses had
members).

Everything that decides by membership (which courses a spawn pulls, which profiles a user
may choose, the size of a new home volume, the shared folders a server gets) asks
:func:`enrolments` with the user's hub groups and works from its answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from lakehub import contract
from sitefile.model import Course, quantity_bytes

Role = Literal["student", "instructor"]


@dataclass(frozen=True)
class Enrolment:
    """One course a user belongs to, and as what."""

    course: Course
    role: Role

    @property
    def name(self) -> str:
        return self.course.name


def _usernames(members: Iterable[str]) -> list[str]:
    return [m for m in members if not m.startswith(contract.IDP_GROUP_PREFIX)]


def _idp_groups(members: Iterable[str]) -> set[str]:
    return {
        m.removeprefix(contract.IDP_GROUP_PREFIX)
        for m in members
        if m.startswith(contract.IDP_GROUP_PREFIX)
    }


def listed_students(course: Course) -> list[str]:
    """The site file's ``students`` entries (``everyone`` lists no one by name)."""
    return [] if course.students == "everyone" else list(course.students)


def site_groups(courses: Sequence[Course]) -> dict[str, list[str]]:
    """The hub groups the site file asks for and the usernames it names in each: what the
    hub creates at start (adding these members, removing none)."""
    groups: dict[str, list[str]] = {}
    for course in courses:
        groups[contract.course_group(course.name)] = _usernames(listed_students(course))
        groups[contract.instructors_group(course.name)] = _usernames(course.instructors)
    return groups


def groups_from_provider(courses: Sequence[Course], provider_groups: Iterable[str]) -> set[str]:
    """The course groups a user belongs to because of their identity provider's groups
    (the OIDC ``groups`` claim at login)."""
    have = set(provider_groups)
    out: set[str] = set()
    for course in courses:
        if _idp_groups(listed_students(course)) & have:
            out.add(contract.course_group(course.name))
        if _idp_groups(course.instructors) & have:
            out.add(contract.instructors_group(course.name))
    return out


def is_course_group(group: str) -> bool:
    return group.startswith(contract.COURSE_GROUP_PREFIX)


def enrolments(courses: Sequence[Course], hub_groups: Iterable[str]) -> list[Enrolment]:
    """The courses of a user in the hub groups ``hub_groups``, in site-file order.  An
    instructor of a course is not also its student."""
    groups = set(hub_groups)
    out: list[Enrolment] = []
    for course in courses:
        if contract.instructors_group(course.name) in groups:
            out.append(Enrolment(course, "instructor"))
        elif course.students == "everyone" or contract.course_group(course.name) in groups:
            out.append(Enrolment(course, "student"))
    return out


def allowed_profiles(
    profile_names: Sequence[str], courses: Sequence[Course], mine: Sequence[Enrolment]
) -> list[str]:
    """The profiles a user may choose, in the site's order: every profile no course names,
    and those named by the user's courses (a member of two courses gets the union)."""
    restricted = {p for c in courses for p in c.profiles}
    granted = {p for e in mine for p in e.course.profiles}
    return [p for p in profile_names if p not in restricted or p in granted]


def home_storage(mine: Sequence[Enrolment]) -> str | None:
    """The size of a new home volume: the largest ``storage`` of the user's courses, or
    ``None`` for the site's default."""
    sizes = [e.course.storage for e in mine if e.course.storage is not None]
    return max(sizes, key=quantity_bytes) if sizes else None
