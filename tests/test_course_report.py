"""`make course-report` against the real hub, cache service and Chromium: two students of
a course, one of whom runs a server, reads a dataset through the shared cache and edits
a course notebook; the report shows exactly that, and only the right people may build it.

The course groups are created here through the hub's REST API (at hub start they come
from the site file).  Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from courses import local as local_courses
from courses.usage import read_records, sessions, sessions_file
from lakehub.contract import course_group, instructors_group
from testkit.harness import (
    hub_token,
    run_in_kernel,
    stack_folder,
    start_stack,
    stop_stack,
    write_site,
)

pytestmark = pytest.mark.course

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).parent / "artifacts"
COURSE, OTHER = "lab", "summer"
TARGET = "lab-course"
STUDENTS = ["rep-ada", "rep-bob"]  # rep-ada works, rep-bob never starts a server
TEACHER, OTHER_TEACHER = "rep-teacher", "rep-other-teacher"


@pytest.fixture(scope="module")
def report_stack():
    folder = stack_folder()
    sources = {}
    for name in (COURSE, OTHER):
        sources[name] = folder / f"{name}-src"
        sources[name].mkdir()
        (sources[name] / "01-intro.ipynb").write_text(json.dumps({"cells": [], "nbformat": 4}))
    site_file = write_site(
        folder,
        courses=[
            {
                "name": COURSE,
                "source": str(sources[COURSE]),
                "target": TARGET,
                "students": STUDENTS,
                "instructors": [TEACHER],
            },
            {
                "name": OTHER,
                "source": str(sources[OTHER]),
                "target": f"{OTHER}-course",
                "students": [],
                "instructors": [OTHER_TEACHER],
            },
        ],
    )
    try:
        stack = start_stack(folder / "state", site_file)
        for name in (COURSE, OTHER):
            local_courses.push(stack.site, stack.paths, name)
        for user in [*STUDENTS, TEACHER, OTHER_TEACHER]:
            stack.admin.ensure_user(user)
        groups = {
            course_group(COURSE): STUDENTS,
            instructors_group(COURSE): [TEACHER],
            instructors_group(OTHER): [OTHER_TEACHER],
        }
        for group, users in groups.items():
            r = stack.admin.api("POST", f"/groups/{group}", json={"users": users})
            assert r.status_code in (201, 409), r.text
            r = stack.admin.api("POST", f"/groups/{group}/users", json={"users": users})
            assert r.status_code == 200, r.text
        yield stack, folder
    finally:
        stop_stack(folder / "state")
        shutil.rmtree(folder, ignore_errors=True)


KERNEL = r"""
import json, os
from lakehub import fetch
paths = fetch("DID", progress=False)
nb = os.path.expanduser("~/TARGET/01-intro.ipynb")
with open(nb, "a") as f:
    f.write("\n")
print(json.dumps({"bytes": sum(os.path.getsize(p) for p in paths)}))
"""


def run_report(stack, out: Path, course: str, token: str | None = None):
    env = {**os.environ, "LAKEHUB_STATE": str(stack.paths.state)}
    env.pop("JUPYTERHUB_API_TOKEN", None)
    if token:
        env["JUPYTERHUB_API_TOKEN"] = token
    cmd = [sys.executable, "-m", "courses", "report", "--site", str(stack.site_file)]
    cmd += ["--course", course, "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def wait_for_stop_record(stack, user: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = read_records(sessions_file(stack.paths))
        if any(r["user"] == user and r.get("event") == "stop" for r in records):
            return
        time.sleep(0.2)
    raise AssertionError(f"no stop record for {user} in {sessions_file(stack.paths)}")


@pytest.fixture(scope="module")
def worked(report_stack):
    """rep-ada's session: start, read GamGam through the cache, edit, stop."""
    stack, folder = report_stack
    demo = stack.site.local.demo_data
    did = f"{demo.scope}:{demo.dataset_name('GamGam')}"
    stack.admin.start_server(STUDENTS[0])
    code = KERNEL.replace("DID", did).replace("TARGET", TARGET)
    out = asyncio.run(run_in_kernel(stack.url, STUDENTS[0], stack.admin_token, code))
    read = json.loads(out.strip().splitlines()[-1])["bytes"]
    stack.admin.stop_server(STUDENTS[0])
    wait_for_stop_record(stack, STUDENTS[0])
    return did, read


def test_the_report_shows_who_worked_read_what_and_has_which_revision(report_stack, worked):
    stack, folder = report_stack
    did, read = worked
    out = folder / "reports"
    done = run_report(stack, out, COURSE)
    assert done.returncode == 0, done.stderr
    with (out / f"course-report-{COURSE}.csv").open() as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == STUDENTS  # the course's students, not its instructor
    ada, bob = rows[STUDENTS[0]], rows[STUDENTS[1]]
    assert float(ada["server_hours"]) > 0 and ada["sessions"] == "1"
    assert float(ada["cpu_seconds"]) > 0
    assert int(ada["peak_memory_bytes"]) > 10_000_000  # a JupyterLab, not a stray number
    assert int(ada["cache_bytes"]) == read > 0
    assert ada["datasets"] == did
    tip = local_courses.branch_tip(local_courses.mirror(stack.paths, COURSE), "main")
    assert ada["revision"] == tip and ada["up_to_date"] == "yes"
    assert ada["edited_files"] == "1"  # the notebook the kernel appended to
    assert ada["last_activity"]
    assert float(bob["server_hours"]) == 0 and bob["sessions"] == "0"
    hub_log = (stack.paths.logs / "hub.log").read_text()
    assert "usage sampling failed" not in hub_log and "cannot record usage" not in hub_log
    assert bob["cache_bytes"] == "0" and bob["revision"] == ""

    page = out / f"course-report-{COURSE}.html"
    from testkit.browser import chromium

    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        tab = browser.new_page(viewport={"width": 1300, "height": 900})
        tab.goto(page.as_uri())
        plots = tab.eval_on_selector_all(
            "figure img", "els => els.map(e => [e.alt, e.complete && e.naturalWidth > 0])"
        )
        assert plots == [
            ["Server hours per student", True],
            ["Sessions per day", True],
            ["Cache bytes per dataset", True],
        ]
        listed = tab.eval_on_selector_all(
            "#students td.student", "els => els.map(e => e.innerText)"
        )
        assert listed == STUDENTS
        tab.screenshot(path=str(ARTIFACTS / "course-report.png"), full_page=True)


def test_an_instructor_builds_their_own_courses_report(report_stack, worked):
    stack, folder = report_stack
    did, read = worked
    mine = hub_token(stack, TEACHER, ["inherit"])
    done = run_report(stack, folder / "teacher", COURSE, token=mine)
    assert done.returncode == 0, done.stderr
    with (folder / "teacher" / f"course-report-{COURSE}.csv").open() as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == STUDENTS
    assert int(rows[STUDENTS[0]]["cache_bytes"]) == read
    assert rows[STUDENTS[0]]["last_activity"]


def test_an_instructor_of_another_course_and_a_student_are_refused(report_stack, worked):
    stack, folder = report_stack
    other = hub_token(stack, OTHER_TEACHER, ["inherit"])
    done = run_report(stack, folder / "refused", COURSE, token=other)
    assert done.returncode == 1
    assert f"{OTHER_TEACHER} may not see the report of course {COURSE}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (folder / "refused" / f"course-report-{COURSE}.html").exists()
    done = run_report(stack, folder / "refused", "all", token=other)
    assert done.returncode == 1 and "only hub admins may" in done.stderr

    student = hub_token(stack, STUDENTS[0], ["inherit"])
    done = run_report(stack, folder / "refused", COURSE, token=student)
    assert done.returncode == 1 and f"{STUDENTS[0]} may not see" in done.stderr


def test_the_cache_tells_each_instructor_only_their_own_students_bytes(report_stack, worked):
    stack, folder = report_stack
    did, read = worked
    usage = f"{stack.url}/services/lakehub-cache/api/usage"

    def ask(user: str, course: str | None) -> httpx.Response:
        token = hub_token(stack, user, ["inherit"])
        params = {"course": course} if course else None
        return httpx.get(usage, params=params, headers={"Authorization": f"token {token}"})

    mine = ask(TEACHER, COURSE)
    assert mine.status_code == 200, mine.text
    assert mine.json()["users"] == {
        STUDENTS[0]: {
            did: {"bytes": read, "fetches": 1, "last": pytest.approx(time.time(), abs=600)}
        }
    }
    assert ask(TEACHER, OTHER).status_code == 403
    refused = ask(OTHER_TEACHER, COURSE)
    assert refused.status_code == 403 and "instructors of course lab" in refused.json()["error"]
    assert ask(STUDENTS[0], None).status_code == 403


def test_the_hub_gives_a_courses_sessions_to_its_instructors_and_admins_only(report_stack, worked):
    """``GET /hub/api/lakehub/usage?course=``: the report's rule (admins, the course's
    instructors), the course's students only, and a token narrowed below the students'
    activity is refused even for an admin."""
    stack, folder = report_stack
    usage = f"{stack.url}/hub/api/lakehub/usage"

    def ask(token: str, course: str | None) -> httpx.Response:
        params = {"course": course} if course else None
        return httpx.get(usage, params=params, headers={"Authorization": f"token {token}"})

    recorded = sessions(read_records(sessions_file(stack.paths)))
    mine = ask(hub_token(stack, TEACHER, ["inherit"]), COURSE)
    assert mine.status_code == 200, mine.text
    got = mine.json()
    assert got["recorded"] is True and got["course"] == COURSE
    expected = [s.as_dict() for s in recorded if s.user in STUDENTS]
    assert got["sessions"] == expected and {s["user"] for s in expected} == {STUDENTS[0]}
    assert got["sessions"][0]["cpu_s"] > 0 and got["sessions"][0]["end"] is not None
    assert ask(stack.admin_token, COURSE).json()["sessions"] == expected

    refused = ask(hub_token(stack, OTHER_TEACHER, ["inherit"]), COURSE)
    assert refused.status_code == 403
    assert f"only its instructors (hub group {instructors_group(COURSE)})" in refused.text
    student = ask(hub_token(stack, STUDENTS[0], ["inherit"]), COURSE)
    assert student.status_code == 403 and f"{STUDENTS[0]} may not see" in student.text
    narrowed = ask(hub_token(stack, TEACHER, [f"list:users!group={course_group(COURSE)}"]), COURSE)
    assert narrowed.status_code == 403 and "read:users:activity" in narrowed.text
    assert ask(stack.admin_token, "nosuch").status_code == 404
    assert ask(stack.admin_token, None).status_code == 400


def test_on_a_cluster_the_report_asks_the_running_servers(report_stack, worked):
    """The cluster path (``gather_cluster``) against this hub: it reads the hub and the
    servers only through the REST API and the proxy, as on a cluster (the sessions from
    the hub's usage endpoint); the course's source is a folder here, which clusters
    refuse, so the latest revision stays unknown."""
    from courses.report import Hub, build, gather_cluster, render_html

    stack, folder = report_stack
    did, read = worked
    stack.admin.start_server(STUDENTS[0])
    try:
        hub = Hub(stack.url, stack.admin_token)
        course = next(c for c in stack.site.courses if c.name == COURSE)
        inputs = gather_cluster(hub, stack.admin_token, hub.caller(), course)
    finally:
        stack.admin.stop_server(STUDENTS[0])
    tip = local_courses.branch_tip(local_courses.mirror(stack.paths, COURSE), "main")
    assert inputs.students == STUDENTS
    assert inputs.revisions == {STUDENTS[0]: {"revision": tip}}
    assert inputs.edits == {STUDENTS[0]: 1}
    assert inputs.cache[STUDENTS[0]][did]["bytes"] == read
    assert inputs.recorded
    local = [s for s in sessions(read_records(sessions_file(stack.paths))) if s.user in STUDENTS]
    assert inputs.sessions[0] == local[0]  # the first session: the figures the file holds
    report = build(COURSE, inputs, None, time.time())
    ada = report.rows[0]
    assert (ada.edited, ada.cache_bytes, ada.up_to_date) == (1, read, None)
    assert ada.hours > 0 and ada.cpu_s > 0 and ada.peak_rss > 10_000_000
    assert "not recorded on this site" not in render_html(report)
