"""Course membership decided from hub groups (courses.membership): pure functions."""

from __future__ import annotations

import pytest

from courses import membership
from courses.groups import ShareRefused, login_groups, share_target
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


# --- a login's groups (courses.groups.login_groups) ----------------------------------------


def test_a_login_adds_the_providers_courses_and_keeps_hand_added_ones():
    got = login_groups(ALL, "zoe", current=["course-masters"], provider=["year2"], previous=[])
    # masters was added by hand; year2 grants hyy
    assert got.groups == ["course-hyy", "course-masters", "year2"]
    assert got.from_provider == ["course-hyy", "year2"]


def test_a_login_takes_away_only_what_the_provider_gave_and_no_longer_gives():
    first = login_groups(ALL, "zoe", current=[], provider=["year2"], previous=[])
    # an admin adds zoe to masters by hand; she leaves year2 at the provider
    later = login_groups(
        ALL,
        "zoe",
        current=[*first.groups, "course-masters"],
        provider=[],
        previous=first.from_provider,
    )
    assert later.groups == ["course-masters"]
    assert later.from_provider == []


def test_a_group_someone_added_by_hand_stays_when_the_provider_stops_giving_it():
    # zoe was in hyy by hand before the provider also put her into year2
    both = login_groups(ALL, "zoe", current=["course-hyy"], provider=["year2"], previous=[])
    assert "course-hyy" in both.groups and "course-hyy" not in both.from_provider
    gone = login_groups(ALL, "zoe", current=both.groups, provider=[], previous=both.from_provider)
    assert gone.groups == ["course-hyy"]


def test_the_site_files_usernames_get_their_groups_at_login():
    got = login_groups(ALL, "ingrid", current=[], provider=[], previous=[])
    assert got.groups == ["course-hyy-instructors"] and got.from_provider == []
    staff = login_groups(ALL, "sam", current=[], provider=["staff"], previous=[])
    assert "course-masters-instructors" in staff.groups


# --- sharing with a course's instructors (courses.groups.share_target) ---------------------


def test_a_student_shares_only_with_the_instructors_of_their_own_courses():
    alice = ["course-hyy"]
    assert share_target(ALL, alice, "hyy") == ("group", "course-hyy-instructors")
    assert share_target(ALL, alice, "hyy", "ingrid", ["course-hyy-instructors"]) == (
        "user",
        "ingrid",
    )
    assert share_target(ALL, [], "welcome") == ("group", "course-welcome-instructors")
    with pytest.raises(ShareRefused, match="not in the course 'masters'"):
        share_target(ALL, alice, "masters")
    with pytest.raises(ShareRefused, match="'bob' is not an instructor of the course 'hyy'"):
        share_target(ALL, alice, "hyy", "bob", ["course-hyy"])
    with pytest.raises(ShareRefused, match="'olga' is not an instructor"):
        share_target(ALL, alice, "hyy", "olga", ["course-masters-instructors"])
    with pytest.raises(ShareRefused, match="no course 'nope'"):
        share_target(ALL, alice, "nope")


# --- what the hub is given (hub_config.course_access) and what a spawn pulls ---------------


def test_each_course_has_an_instructor_role_filtered_to_its_students():
    from hub_config.course_access import course_roles, instructor_scopes

    scopes = instructor_scopes("hyy")
    assert "admin-ui" in scopes
    filtered = [s for s in scopes if s != "admin-ui"]
    assert all(s.endswith("!group=course-hyy") for s in filtered), filtered
    for needed in ("list:users", "access:servers", "servers", "read:users:activity"):
        assert f"{needed}!group=course-hyy" in scopes
    # nothing that would make them admins or let them change who is in a course
    assert not {s.split("!")[0] for s in scopes} & {"admin:users", "admin:servers", "groups"}

    class FakeSite:
        courses = ALL

    roles = {r["name"]: r for r in course_roles(FakeSite())}
    assert roles["lakehub-course-masters-instructors"]["groups"] == ["course-masters-instructors"]


def test_a_spawn_pulls_only_the_users_courses():
    from spawner_hooks.courses import user_courses

    mirrors = [c.model_copy(update={"source": f"file:///m/{c.name}.git"}) for c in ALL]
    mine = user_courses(ALL, mirrors, ["course-hyy"])
    assert [(c.name, c.source) for c in mine] == [
        ("hyy", "file:///m/hyy.git"),
        ("welcome", "file:///m/welcome.git"),
    ]
    assert [c.name for c in user_courses(ALL, ALL, [])] == ["welcome"]
    assert [c.name for c in user_courses(ALL, ALL, ["course-masters-instructors"])] == [
        "masters",
        "welcome",
    ]


def test_one_configure_gives_native_sites_load_groups_and_oidc_sites_the_login_sync():
    """What hub_config.course_access.configure puts into a hub's traitlets config (both
    hub_config.local and hub_config.kubernetes call it)."""
    from pathlib import Path

    from traitlets.config import Config

    from hub_config.course_access import AUTHENTICATOR_CLASS, configure
    from sitefile import load_site

    examples = Path(__file__).resolve().parent.parent / "examples"
    native = load_site(examples / "site.cluster-native.yaml").model_copy(update={"courses": ALL})
    oidc = load_site(examples / "site.cluster.yaml").model_copy(update={"courses": ALL})

    c = Config()
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self"]}]
    configure(c, native)
    assert c.JupyterHub.load_groups["course-hyy"] == {"users": ["alice"]}
    assert [r["name"] for r in c.JupyterHub.load_roles][1:] == [
        "lakehub-course-hyy-instructors",
        "lakehub-course-masters-instructors",
        "lakehub-course-welcome-instructors",
    ]
    assert "custom:lakehub:course-share" in c.JupyterHub.custom_scopes
    assert c.JupyterHub.extra_handlers[0][0] == "/api/lakehub/shares/(?P<user_name>[^/]+)"

    c = Config()
    c.JupyterHub.load_roles = []
    configure(c, oidc)
    assert "load_groups" not in c.JupyterHub  # JupyterHub refuses it beside manage_groups
    assert c.JupyterHub.authenticator_class == AUTHENTICATOR_CLASS
    assert c.LakehubOAuthenticator.manage_groups is True
    assert c.LakehubOAuthenticator.auth_state_groups_key == "oauth_user.groups"
    assert [x["name"] for x in c.LakehubOAuthenticator.lakehub_courses] == [
        "hyy",
        "masters",
        "welcome",
    ]
