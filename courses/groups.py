"""A user's hub groups after a login through the identity provider: pure, no I/O.

The hub's groups stay the truth (:mod:`courses.membership`): an admin may add anyone to
a course by hand (admin page, ``make course-members``), and a login must not undo that.
What a login may change is only what the provider decides: the provider's own groups
(the ``groups`` claim) and the course groups a ``group:<name>`` member of the site file
grants through them.  Which of the user's groups the provider gave is remembered between
logins (the hub keeps the list in the user's auth state), so a group the provider stops
giving goes, and a group someone added by hand stays even when the provider never gave
it or stops giving it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from courses.membership import enrolments, groups_from_provider, site_groups
from lakehub.contract import instructors_group
from sitefile.model import Course


@dataclass(frozen=True)
class LoginGroups:
    """What a login decides: the user's hub groups, and which of them the provider gave
    (to remember until the next login)."""

    groups: list[str]
    from_provider: list[str]


def login_groups(
    courses: Sequence[Course],
    username: str,
    *,
    current: Iterable[str],
    provider: Iterable[str],
    previous: Iterable[str],
) -> LoginGroups:
    """The hub groups of ``username`` after a login.

    ``current``: the user's hub groups before the login; ``provider``: the groups the
    identity provider says the user is in now; ``previous``: the groups the provider gave
    at earlier logins (:attr:`LoginGroups.from_provider` of the last one).  The site
    file's usernames count as hand-added: the user gets their course groups and keeps them.
    """
    raw = set(provider)
    decided = raw | groups_from_provider(courses, raw)
    have = set(current)
    gave_before = set(previous)
    listed = {group for group, names in site_groups(courses).items() if username in names}
    withdrawn = gave_before - decided
    groups = (have - withdrawn) | decided | listed
    # a group the user already had (by hand, from the site file) is not the provider's:
    # the provider's later silence must not take it away
    from_provider = (gave_before & decided) | (decided - have - listed)
    return LoginGroups(sorted(groups), sorted(from_provider))


class ShareRefused(ValueError):
    """A share a student may not make; the message says why, in words for them."""


def share_target(
    courses: Sequence[Course],
    student_groups: Iterable[str],
    course_name: str,
    instructor: str | None = None,
    instructor_groups: Iterable[str] = (),
) -> tuple[str, str]:
    """Whom a student's share goes to: ``("group", course-<name>-instructors)``, or
    ``("user", instructor)`` when they name one of the course's instructors.  Refused
    unless the student takes the course (:func:`courses.membership.enrolments`) and the
    one named teaches it."""
    if not any(c.name == course_name for c in courses):
        raise ShareRefused(f"no course {course_name!r} on this hub")
    if not any(e.name == course_name for e in enrolments(courses, student_groups)):
        raise ShareRefused(f"you are not in the course {course_name!r}")
    teachers = instructors_group(course_name)
    if instructor is None:
        return ("group", teachers)
    if teachers not in set(instructor_groups):
        raise ShareRefused(f"{instructor!r} is not an instructor of the course {course_name!r}")
    return ("user", instructor)
