"""Course membership from an identity provider's ``groups`` claim, with a real Keycloak.

Real, all on 127.0.0.1: Keycloak 26 (the test realm gives a ``groups`` claim; the student
starts in ``year2``), JupyterHub with configurable-http-proxy and lakehub's
``LakehubOAuthenticator`` configured by ``hub_config.course_access`` from an OIDC site
file, as the chart's hub is.  Each login and each refresh of a login maps the provider's
groups to course groups; a course an admin added by hand stays through both.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from localstack.procs import wait_until
from testkit.keycloak import Keycloak, log_in
from testkit.minihub import ADMIN_SERVICE, MiniHub

pytestmark = [pytest.mark.course, pytest.mark.oidc, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent


def oidc_site(folder: Path, kc: Keycloak) -> Path:
    data = yaml.safe_load((REPO / "examples" / "site.cluster.yaml").read_text())
    data["courses"] = [
        {"name": "hyy", "source": "https://git.example.org/hyy.git", "target": "hyy",
         "students": ["group:year2"], "instructors": ["group:staff"]},
        {"name": "masters", "source": "https://git.example.org/m.git", "target": "masters",
         "students": ["group:msc"]},
        {"name": "lab", "source": "https://git.example.org/lab.git", "target": "lab",
         "students": ["someone-else"]},
    ]  # fmt: skip
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def oidc_courses(tmp_path_factory):
    hub = MiniHub()
    kc = Keycloak(redirect_uri=f"{hub.url}/hub/oauth_callback").start()
    site = oidc_site(tmp_path_factory.mktemp("site"), kc)
    hub.roles = [
        {
            "name": "test-groups",
            "scopes": ["admin:groups", "groups", "read:groups"],
            "services": [ADMIN_SERVICE],
        }
    ]
    hub.login = {
        "authenticator_class": "generic-oauth",  # course_access names lakehub's subclass
        "generic_oauth": kc.hub_oauth(hub.url, auth_refresh_age=1),
        "lakehub_site": str(site),
    }
    try:
        hub.start()
        yield hub, kc
    finally:
        hub.stop()
        kc.stop()


def groups_of(hub: MiniHub, user: str) -> set[str]:
    with hub.admin() as api:
        r = api.get(f"/users/{user}")
        r.raise_for_status()
        return set(r.json()["groups"])


def test_provider_groups_map_to_courses_and_hand_added_courses_stay(oidc_courses):
    hub, kc = oidc_courses
    kc.set_groups(["year2"])
    log_in(hub.url, kc).close()
    assert groups_of(hub, kc.username) == {"year2", "course-hyy"}
    with hub.admin() as api:
        assert api.get("/groups/course-hyy-instructors").status_code == 200  # from the start

    # an admin adds the student to the lab course by hand
    with hub.admin() as api:
        api.post("/groups/course-lab").raise_for_status()
        r = api.post("/groups/course-lab/users", json={"users": [kc.username]})
        r.raise_for_status()

    # the student moves from year2 to msc at the provider, then logs in again
    kc.set_groups(["msc"])
    browser = log_in(hub.url, kc)
    assert groups_of(hub, kc.username) == {"msc", "course-masters", "course-lab"}

    # a refresh of the login (auth_refresh_age 1 s) syncs the groups too, and still
    # keeps the hand-added course: staff now also teach hyy
    kc.set_groups(["msc", "staff"])

    def refreshed() -> bool:
        assert browser.get("/hub/api/user").status_code == 200
        return "course-hyy-instructors" in groups_of(hub, kc.username)

    wait_until(refreshed, timeout=60, what="the login's refresh to bring the staff group")
    assert groups_of(hub, kc.username) == {
        "msc",
        "staff",
        "course-masters",
        "course-hyy-instructors",
        "course-lab",
    }
    browser.close()
