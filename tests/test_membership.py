"""Course membership decided from hub groups (courses.membership): pure functions."""

from __future__ import annotations

import pytest

from courses import membership
from sitefile.model import Course, SiteError


def course(name: str, **fields) -> Course:
    return Course(name=name, source=f"courses/{name}", target=f"course-{name}", **fields)


HYY = course("hyy", students=["alice", "group:year2"], instructors=["ingrid"])
MASTERS = course(
    "masters",
    students=["bob", "group:msc"],
    instructors=["group:staff"],
    profiles=["Large"],
    storage="50Gi",
)
OPEN = course("welcome")  # students: everyone
ALL = [HYY, MASTERS, OPEN]


def test_site_groups_name_the_listed_users_and_leave_provider_groups_to_login():
    assert membership.site_groups(ALL) == {
        "course-hyy": ["alice"],
        "course-hyy-instructors": ["ingrid"],
        "course-masters": ["bob"],
        "course-masters-instructors": [],
        "course-welcome": [],
        "course-welcome-instructors": [],
    }


def test_provider_groups_map_to_course_groups():
    assert membership.groups_from_provider(ALL, ["year2", "unrelated"]) == {"course-hyy"}
    assert membership.groups_from_provider(ALL, ["staff", "msc"]) == {
        "course-masters",
        "course-masters-instructors",
    }
    assert membership.groups_from_provider(ALL, []) == set()


def test_a_user_gets_only_their_courses_and_every_open_one():
    names = [(e.name, e.role) for e in membership.enrolments(ALL, ["course-hyy"])]
    assert names == [("hyy", "student"), ("welcome", "student")]
    assert [e.name for e in membership.enrolments(ALL, [])] == ["welcome"]
    teaching = membership.enrolments(ALL, ["course-masters-instructors", "course-masters"])
    assert [(e.name, e.role) for e in teaching][0] == ("masters", "instructor")


def test_profiles_named_by_a_course_are_for_its_members_only():
    profiles = ["Standard", "Large"]
    outsider = membership.enrolments(ALL, ["course-hyy"])
    member = membership.enrolments(ALL, ["course-hyy", "course-masters"])
    assert membership.allowed_profiles(profiles, ALL, outsider) == ["Standard"]
    assert membership.allowed_profiles(profiles, ALL, member) == ["Standard", "Large"]


def test_home_storage_is_the_largest_of_the_users_courses():
    big = course("big", students=["x"], storage="1Ti")
    mine = membership.enrolments([MASTERS, big], ["course-masters", "course-big"])
    assert membership.home_storage(mine) == "1Ti"
    assert membership.home_storage(membership.enrolments(ALL, [])) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"students": ["two words"]}, "no spaces"),
        ({"instructors": ["ann", "ann"]}, "listed more than once: ann"),
        ({"storage": "-3Gi"}, "storage"),
    ],
)
def test_bad_members_are_refused_with_the_field(fields, message):
    with pytest.raises((ValueError, SiteError), match=message):
        course("x", **fields)
