"""Courses as hub groups against the real local stack (JupyterHub, configurable-http-proxy,
Rucio, JupyterLab servers of the analysis environment): who is in a course, which courses
a spawn delivers, what an instructor may do and where they are refused, and to whom a
student may share their server.

The site names three courses: ``open`` (every user), ``hyy`` (alice; instructor ingrid)
and ``masters`` (bob; instructor olga).  carol joins hyy by hand (``make course-members``)
and must stay in it across a hub restart.  Every check goes through the hub's REST API or
the proxy with the users' own tokens; nothing is mocked.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from packaging.version import Version

from courses import local as local_courses
from localstack import procs
from localstack import stack as local_stack
from testkit.harness import (
    hub_token,
    stack_folder,
    start_stack,
    stop_stack,
    unique_user,
    write_site,
)

pytestmark = [pytest.mark.course, pytest.mark.timeout(1200)]

ARTIFACTS = Path(__file__).parent / "artifacts"
NOTEBOOK = "01-lab.ipynb"


def notebook(title: str) -> str:
    cells = [{"cell_type": "markdown", "id": "t", "metadata": {}, "source": [f"# {title}\n"]}]
    kernel = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    doc = {"cells": cells, "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(doc, indent=1) + "\n"


class People:
    def __init__(self) -> None:
        self.alice, self.bob, self.carol = (unique_user(n) for n in ("alice", "bob", "carol"))
        self.ingrid, self.olga = unique_user("ingrid"), unique_user("olga")


@pytest.fixture(scope="module")
def course_hub():
    people = People()
    folder = stack_folder()
    courses = []
    for name, students, instructors in (
        ("open", "everyone", []),
        ("hyy", [people.alice], [people.ingrid]),
        ("masters", [people.bob], [people.olga]),
    ):
        src = folder / f"src-{name}"
        src.mkdir()
        (src / NOTEBOOK).write_text(notebook(f"{name}, revision 1"))
        courses.append(
            {
                "name": name,
                "source": str(src),
                "target": f"course-{name}",
                "students": students,
                "instructors": instructors,
            }
        )
    site_file = write_site(folder, courses=courses)
    try:
        stack = start_stack(folder / "state", site_file)
        for name in ("open", "hyy", "masters"):
            local_courses.push(stack.site, stack.paths, name)
        yield stack, people, folder
    finally:
        stop_stack(folder / "state")
        shutil.rmtree(folder, ignore_errors=True)


def api(stack, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{stack.url}/hub/api", headers={"Authorization": f"token {token}"}, timeout=60
    )


def members_cli(stack, folder: Path, *args: str) -> subprocess.CompletedProcess:
    token_file = folder / "admin-token"
    token_file.write_text(stack.admin_token)
    token_file.chmod(0o600)
    cmd = [sys.executable, "-m", "courses.members", "--site", str(stack.site_file)]
    cmd += ["--hub-url", stack.url, "--token-file", str(token_file), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def group_members(stack, group: str) -> set[str]:
    r = stack.admin.api("GET", f"/groups/{group}")
    r.raise_for_status()
    return set(r.json()["users"])


def restart_hub(stack) -> None:
    assert procs.stop(local_stack.HUB, stack.paths.run, timeout=30)
    local_stack.start_hub(stack.site_file, stack.paths, stack.site)


def test_the_hub_runs_a_jupyterhub_past_the_sharing_and_filtered_role_fixes(course_hub):
    """GHSA-69wv-m5fw-2fhp (filtered admin roles) and GHSA-c4gm-pwx9-9w8j (sharing) are
    fixed in 5.5.1: the hub these powers rely on must not be older."""
    stack, _, _ = course_hub
    version = httpx.get(f"{stack.url}/hub/api/", timeout=30).json()["version"]
    assert Version(version) >= Version("5.5.1"), version
    assert Version(version).major == 5


def test_every_lock_pins_a_jupyterhub_past_the_security_release():
    """The hub (local and image), the sessions and the test tools; the images' own
    check is in tests/test_image.py."""
    root = Path(__file__).resolve().parent.parent / "requirements"
    for lock in ("hub.txt", "dev.txt", "analysis.txt"):
        pins = [
            ln for ln in (root / lock).read_text().splitlines() if ln.startswith("jupyterhub==")
        ]
        assert len(pins) == 1, lock
        version = Version(pins[0].split("==")[1])
        assert Version("5.5.1") <= version < Version("6"), (lock, version)


def test_members_from_the_site_file_and_by_hand_survive_a_restart(course_hub):
    stack, p, folder = course_hub
    assert group_members(stack, "course-hyy") == {p.alice}
    assert group_members(stack, "course-hyy-instructors") == {p.ingrid}
    assert group_members(stack, "course-masters") == {p.bob}
    assert group_members(stack, "course-open") == set()  # everyone takes it, nobody listed

    done = members_cli(stack, folder, "--course", "hyy", "--add", f"{p.carol},{p.alice}")
    assert done.returncode == 0, done.stderr
    assert f"added {p.carol}" in done.stdout and f"added {p.alice}" not in done.stdout
    assert group_members(stack, "course-hyy") == {p.alice, p.carol}

    restart_hub(stack)  # load_groups again: adds the site's members, removes nobody
    assert group_members(stack, "course-hyy") == {p.alice, p.carol}

    listing = members_cli(stack, folder, "--course", "hyy", "--instructors")
    assert listing.returncode == 0 and p.ingrid in listing.stdout
    nope = members_cli(stack, folder, "--course", "nope", "--add", "x")
    assert nope.returncode == 1 and "no course 'nope'" in nope.stderr
    (folder / "bad-token").write_text("not-a-token")
    refused = subprocess.run(
        [sys.executable, "-m", "courses.members", "--site", str(stack.site_file)]
        + ["--hub-url", stack.url, "--token-file", str(folder / "bad-token")]
        + ["--course", "hyy", "--add", "x"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr + nope.stderr


def test_a_spawn_delivers_only_the_users_courses_and_a_leaver_keeps_their_copy(course_hub):
    stack, p, folder = course_hub
    for user in (p.alice, p.bob):
        stack.admin.start_server(user)
    folders = {u: sorted(d.name for d in stack.home(u).glob("course-*")) for u in (p.alice, p.bob)}
    # each course's material and its members' shared folder, and nothing of other courses
    assert folders[p.alice] == [
        "course-hyy",
        "course-hyy-shared",
        "course-open",
        "course-open-shared",
    ]
    assert folders[p.bob] == [
        "course-masters",
        "course-masters-shared",
        "course-open",
        "course-open-shared",
    ]

    # alice leaves hyy; the instructor publishes revision 2; alice's copy stays at 1
    done = members_cli(stack, folder, "--course", "hyy", "--remove", p.alice)
    assert done.returncode == 0 and f"removed {p.alice}" in done.stdout, done.stderr
    (folder / "src-hyy" / NOTEBOOK).write_text(notebook("hyy, revision 2"))
    assert local_courses.push(stack.site, stack.paths, "hyy").new
    stack.admin.stop_server(p.alice)
    stack.admin.start_server(p.alice)
    kept = (stack.home(p.alice) / "course-hyy" / NOTEBOOK).read_text()
    assert "revision 1" in kept
    assert not (stack.home(p.alice) / "course-hyy-shared").exists()  # the members' folder goes
    # back in the course, the next start brings revision 2
    done = members_cli(stack, folder, "--course", "hyy", "--add", p.alice)
    assert done.returncode == 0, done.stderr
    stack.admin.stop_server(p.alice)
    stack.admin.start_server(p.alice)
    assert "revision 2" in (stack.home(p.alice) / "course-hyy" / NOTEBOOK).read_text()


def test_an_instructor_acts_on_their_course_and_is_refused_elsewhere(course_hub):
    stack, p, _ = course_hub
    for user in (p.alice, p.bob):
        stack.admin.start_server(user)
    token = hub_token(stack, p.ingrid, ["inherit"])
    with api(stack, token) as hub:
        me = hub.get("/user").json()
        assert me["admin"] is False
        listed = {u["name"] for u in hub.get("/users").json()}
        assert listed == {p.alice, p.carol}  # hyy's students: no one else
        alice = hub.get(f"/users/{p.alice}").json()
        assert alice["servers"][""]["ready"] and alice["last_activity"]
        assert hub.get(f"/users/{p.bob}").status_code == 404  # not even seen
        assert hub.delete(f"/users/{p.bob}/server").status_code in (403, 404)
        assert hub.post("/groups/course-hyy/users", json={"users": [p.bob]}).status_code == 403
        assert hub.post("/users/newcomer").status_code == 403

        # open the student's running server (access:servers): a single-user server
        # cannot resolve `!group=` filters itself, so a token for it names the server
        # (the hub resolves the group when it issues the token, as it does for the
        # browser's OAuth login); bob's server is refused either way
        lab = httpx.Client(timeout=60)
        server_token = hub_token(stack, p.ingrid, [f"access:servers!server={p.alice}/"])
        as_ingrid = {"Authorization": f"token {server_token}"}
        status = lab.get(f"{stack.url}/user/{p.alice}/api/status", headers=as_ingrid)
        assert status.status_code == 200
        contents = lab.get(f"{stack.url}/user/{p.alice}/api/contents/course-hyy", headers=as_ingrid)
        assert contents.status_code == 200 and NOTEBOOK in contents.text
        for headers in (as_ingrid, {"Authorization": f"token {token}"}):
            assert (
                lab.get(f"{stack.url}/user/{p.bob}/api/status", headers=headers).status_code == 403
            )
        refused = stack.admin.api(
            "POST",
            f"/users/{p.ingrid}/tokens",
            json={"scopes": [f"access:servers!server={p.bob}/"]},
        )
        assert refused.status_code == 400 and "not held" in refused.text, refused.text

        # stop and start the student's server
        assert hub.delete(f"/users/{p.alice}/server").status_code in (202, 204)
        stack.admin.stop_server(p.alice)  # waits until it is down
        assert hub.post(f"/users/{p.alice}/server").status_code in (201, 202)
    assert stack.admin.start_server(p.alice)["ready"]  # already starting: waits until ready
    assert stack.admin.user(p.bob)["servers"][""]["ready"]  # bob's server was never touched


def test_a_student_shares_only_with_their_courses_instructors(course_hub):
    stack, p, _ = course_hub
    stack.admin.start_server(p.alice)
    alice = hub_token(stack, p.alice, ["inherit"])
    bob = hub_token(stack, p.bob, ["inherit"])
    share_url = f"/lakehub/shares/{p.alice}"
    with api(stack, alice) as hub:
        # JupyterHub's own sharing API is closed to students: no `shares` scope
        direct = hub.post(f"/shares/{p.alice}/", json={"user": p.bob})
        assert direct.status_code == 403
        offer = hub.get(share_url).json()
        assert {c["course"] for c in offer["courses"]} == {"hyy", "open"}

        r = hub.post(share_url, json={"course": "hyy"})
        assert r.status_code == 200, r.text
        assert r.json()["with"] == "course-hyy-instructors" and r.json()["kind"] == "group"
        r = hub.post(share_url, json={"course": "hyy", "instructor": p.ingrid})
        assert r.status_code == 200 and r.json()["with"] == p.ingrid

        refused = {
            "a course she is not in": {"course": "masters"},
            "another course's instructor": {"course": "hyy", "instructor": p.olga},
            "a fellow student": {"course": "hyy", "instructor": p.carol},
        }
        for why, body in refused.items():
            r = hub.post(share_url, json=body)
            assert r.status_code == 403, (why, r.text)
        # a body that is not a JSON object is a client's mistake, said as such
        r = hub.post(share_url, json=["hyy"])
        assert r.status_code == 400 and "JSON object" in r.json()["message"], r.text
    # nobody shares someone else's server
    with api(stack, bob) as hub:
        assert hub.post(share_url, json={"course": "open"}).status_code == 403

    shares = stack.admin.api("GET", f"/shares/{p.alice}/").json()["items"]
    got = {(s["user"] or {}).get("name") or (s["group"] or {}).get("name") for s in shares}
    assert got == {"course-hyy-instructors", p.ingrid}
    # ingrid sees the share among the servers shared with her
    with api(stack, hub_token(stack, p.ingrid, ["inherit"])) as hub:
        mine = hub.get(f"/users/{p.ingrid}/shared").json()["items"]
        # twice: to her by name, and to the course's instructors' group she is in
        assert sorted((s["server"]["user"]["name"], s["kind"]) for s in mine) == [
            (p.alice, "group"),
            (p.alice, "user"),
        ]
    with api(stack, alice) as hub:
        r = hub.request("DELETE", share_url, json={"course": "hyy", "instructor": p.ingrid})
        assert r.status_code == 204
    shares = stack.admin.api("GET", f"/shares/{p.alice}/").json()["items"]
    assert [s["group"]["name"] for s in shares] == ["course-hyy-instructors"]


@pytest.mark.browser
def test_an_instructor_sees_only_their_students_and_opens_a_shared_notebook(course_hub):
    from playwright.sync_api import expect

    from localstack.hubclient import approve_signup, signup
    from testkit.browser import chromium, sign_in

    stack, p, _ = course_hub
    stack.admin.ensure_user(p.carol)
    r = stack.admin.api("POST", "/groups/course-hyy/users", json={"users": [p.alice, p.carol]})
    r.raise_for_status()
    stack.admin.start_server(p.alice)
    with api(stack, hub_token(stack, p.alice, ["inherit"])) as hub:
        assert hub.post(f"/lakehub/shares/{p.alice}", json={"course": "hyy"}).status_code == 200
    admin = stack.site.auth.admin_users[0]
    admin_password, password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    signup(stack.url, admin, admin_password)
    signup(stack.url, p.ingrid, password)
    approve_signup(stack.url, admin, admin_password, p.ingrid)

    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        sign_in(page, stack.url, p.ingrid, password, next_path="/hub/admin")
        row = lambda name: page.get_by_test_id(f"user-name-div-{name}")  # noqa: E731
        expect(row(p.alice)).to_be_visible(timeout=60_000)
        expect(row(p.carol)).to_be_visible()
        for outsider in (p.bob, p.olga):
            assert row(outsider).count() == 0
            assert page.get_by_text(outsider).count() == 0
        page.screenshot(path=str(ARTIFACTS / "course-instructor-admin.png"))

        page.goto(f"{stack.url}/user/{p.alice}/lab/tree/course-hyy/{NOTEBOOK}")
        # someone else's server: JupyterHub asks the instructor to confirm, once
        authorize = page.get_by_role("button", name="Authorize")
        lab_or_consent = page.locator(".jp-NotebookPanel").or_(authorize)
        expect(lab_or_consent.first).to_be_visible(timeout=120_000)
        if authorize.count():
            page.screenshot(path=str(ARTIFACTS / "course-instructor-consent.png"))
            authorize.click()
        heading = page.locator(".jp-NotebookPanel").get_by_role("heading", name="hyy")
        expect(heading).to_be_visible(timeout=120_000)
        assert f"/user/{p.alice}/lab" in page.url
        page.screenshot(path=str(ARTIFACTS / "course-instructor-opens-notebook.png"))
