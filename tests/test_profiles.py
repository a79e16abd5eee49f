"""Per-course profiles: the site's top-level ``profiles:``, the ones a user may choose by
their courses (the union of them), the spawn form and the hub's refusal of any other.

The real-hub test (marker ``course``) runs JupyterHub with configurable-http-proxy and
lakehub's hooks as ``make up`` does, without Rucio (a spawn goes on without it); the
course groups are made through the hub's REST API, as an admin (or the hub at start) does.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
from types import SimpleNamespace

import pytest
import yaml

from lakehub import contract
from localstack.hubclient import approve_signup, login, signup
from sitefile import SiteError, parse_site
from spawner_hooks import profiles
from testkit.harness import (
    add_to_group,
    run_in_kernel,
    stack_folder,
    start_stack,
    stop_stack,
    unique_user,
    write_site,
)

PROFILES = [
    {"name": "Standard", "cpu": 2, "memory": "4G", "default": True},
    {"name": "Large", "cpu": 4, "memory": "12G", "description": "for the final project"},
    {"name": "GPU night", "cpu": 8, "memory": "32G"},
]


def site_data(masters: str = "masters", hyy: str = "hyy") -> dict:
    return {
        "name": "profiles",
        "rucio": {"instances": [{"name": "lake", "rucio_host": "http://127.0.0.1:8010"}]},
        "auth": {"type": "native", "admin_users": ["admin"]},
        "profiles": PROFILES,
        "courses": [
            {
                "name": hyy,
                "source": "c/h",
                "target": "h",
                "students": [],
                "profiles": ["GPU night"],
            },
            {
                "name": masters,
                "source": "c/m",
                "target": "m",
                "students": [],
                "profiles": ["Large"],
            },
        ],
    }


SITE = parse_site(site_data())
MASTERS = [contract.course_group("masters")]
BOTH = [contract.course_group("masters"), contract.course_group("hyy")]


def names(found) -> list[str]:
    return [p.name for p in found]


def test_a_course_grants_its_profiles_and_two_courses_give_the_union():
    assert names(profiles.offered(SITE, [])) == ["Standard"]
    assert names(profiles.offered(SITE, MASTERS)) == ["Standard", "Large"]
    assert names(profiles.offered(SITE, BOTH)) == ["Standard", "Large", "GPU night"]
    # an instructor of a course may choose its profiles too
    teacher = [contract.instructors_group("hyy")]
    assert names(profiles.offered(SITE, teacher)) == ["Standard", "GPU night"]


def test_choose_refuses_another_profile_naming_it_and_the_courses_that_grant_it():
    assert profiles.choose(SITE, MASTERS, "large").name == "Large"
    assert profiles.choose(SITE, MASTERS, "Large").name == "Large"  # the name works too
    assert profiles.choose(SITE, MASTERS, None).name == "Standard"  # the site's default
    with pytest.raises(profiles.ProfileRefused) as info:
        profiles.choose(SITE, MASTERS, "gpu-night")
    message = str(info.value)
    assert "'gpu-night' (GPU night)" in message and "course(s) hyy" in message
    assert "you may choose 'standard', 'large'" in message
    with pytest.raises(profiles.ProfileRefused, match="there is no profile 'huge'"):
        profiles.choose(SITE, MASTERS, "huge")


def test_without_an_open_profile_a_non_member_is_told_why():
    data = site_data()
    data["courses"][1]["profiles"] = ["Large", "Standard"]
    data["courses"][0]["profiles"] = ["GPU night"]
    site = parse_site(data)
    with pytest.raises(profiles.ProfileRefused, match="no profile is open to you"):
        profiles.choose(site, [], None)
    # a member gets the first of theirs when the site's default is not theirs
    assert profiles.choose(site, [contract.course_group("hyy")], None).name == "GPU night"


def test_the_form_lists_only_the_users_profiles_and_none_for_one_choice():
    form = profiles.options_form(SITE)
    user = SimpleNamespace(groups=[SimpleNamespace(name=g) for g in MASTERS])
    page = form(SimpleNamespace(user=user))
    assert re.findall(r'value="([^"]+)"', page) == ["standard", "large"]
    assert 'value="standard" checked' in page
    nobody = SimpleNamespace(user=SimpleNamespace(groups=[]))
    assert form(nobody) == ""  # one choice: no form, the server just starts
    assert profiles.options_from_form({"profile": ["large"]}) == {"profile": "large"}
    assert profiles.options_from_form({}) == {}


def test_cluster_profile_list_is_each_users_own():
    listed = profiles.kube_profile_list(SITE)
    user = SimpleNamespace(groups=[SimpleNamespace(name=g) for g in MASTERS])
    entries = listed(SimpleNamespace(user=user))
    assert [e["slug"] for e in entries] == ["standard", "large"]
    assert [e.get("default", False) for e in entries] == [True, False]
    assert entries[1]["kubespawner_override"]["mem_limit"] == "12G"


def test_kubernetes_profiles_say_where_profiles_moved():
    data = site_data()
    data["kubernetes"] = {"public_url": "https://hub.example.org", "profiles": PROFILES}
    data["rucio"]["instances"][0]["rucio_host"] = "https://rucio.example.org"
    with pytest.raises(SiteError) as info:
        parse_site(data)
    assert "kubernetes.profiles: profiles moved to the top level" in str(info.value)


def test_a_course_may_name_only_the_sites_profiles():
    data = site_data()
    data["courses"][1]["profiles"] = ["Larg"]
    with pytest.raises(SiteError, match=r"courses\[1\]\.profiles: \['Larg'\] not among"):
        parse_site(data)


# --- the real hub --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def profile_stack():
    folder = stack_folder()
    course = SimpleNamespace(hyy=unique_user("hyy"), masters=unique_user("msc"))
    site_file = write_site(folder)
    data = yaml.safe_load(site_file.read_text())
    data["profiles"] = PROFILES
    data["courses"] = site_data(course.masters, course.hyy)["courses"]
    for c in data["courses"]:
        c["source"] = str(folder)  # never pulled: the spawn notes that and goes on
    site_file.write_text(yaml.safe_dump(data))
    try:
        yield start_stack(folder / "state", site_file, with_rucio=False), course
    finally:
        stop_stack(folder / "state")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.course
def test_the_hub_offers_and_enforces_each_users_profiles(profile_stack):
    stack, course = profile_stack
    member, outsider = unique_user("mara"), unique_user("olaf")
    # the member signs up and an admin approves, as people do; the outsider is made by API
    admin, admin_password = stack.site.auth.admin_users[0], secrets.token_urlsafe(12)
    signup(stack.url, admin, admin_password)
    password = secrets.token_urlsafe(12)
    signup(stack.url, member, password)
    approve_signup(stack.url, admin, admin_password, member)
    for user in (member, outsider):
        stack.admin.ensure_user(user)
    add_to_group(stack, contract.course_group(course.masters), [member])

    # the spawn page as the member sees it: their two profiles, not the other course's
    client = login(stack.url, member, password)
    try:
        page = client.get(f"/hub/spawn/{member}")
    finally:
        client.close()
    assert page.status_code == 200, page.text[:300]
    assert re.findall(r'name="profile" value="([^"]+)"', page.text) == ["standard", "large"]

    # asking the API for a profile of a course one is not in: refused, with the reason
    r = stack.admin.api("POST", f"/users/{outsider}/server", json={"profile": "large"})
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert "'large' (Large)" in message and f"course(s) {course.masters}" in message
    assert "'gpu-night'" not in message and "you may choose 'standard'" in message
    assert "" not in stack.admin.user(outsider)["servers"]  # no server was left behind
    r = stack.admin.api("POST", f"/users/{member}/server", json={"profile": "gpu-night"})
    assert r.status_code == 403 and course.hyy in r.json()["message"], r.text

    # the member's own choice starts, and a local server sees its limits as env only
    r = stack.admin.api("POST", f"/users/{member}/server", json={"profile": "large"})
    assert r.status_code in (201, 202), r.text
    stack.admin.start_server(member)  # waits until ready
    code = "import os; print(os.environ['MEM_LIMIT'], os.environ['CPU_LIMIT'])"
    out = asyncio.run(run_in_kernel(stack.url, member, stack.admin_token, code))
    assert out.split() == [str(12 * 1024**3), "4.0"]
    stack.admin.stop_server(member)
