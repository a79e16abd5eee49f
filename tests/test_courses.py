"""Course material with nbgitpuller against the real hub: `make push-notebooks` publishes
a revision, every server start pulls it as the student, and students' edits survive.

What nbgitpuller does, and what these tests hold it to:

* untouched files become the new revision exactly;
* an edited notebook keeps the student's lines; the instructor's changes elsewhere in the
  same file are merged in (where both changed the same lines, the student's win);
* a course file the student deleted comes back with the new revision's content
  (nbgitpuller checks deleted files out again before merging; deleting is how a student
  asks for a fresh copy);
* a file the instructor removed disappears where the student never touched it;
* files of the student's own in the course folder are left alone.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import time
from pathlib import Path

import pytest

from courses import local as local_courses
from courses.links import nbgitpuller_link
from lakehub.contract import COURSES_NOTICE_FILE as NOTICE_NAME
from sitefile import Course
from testkit.harness import (
    run_in_kernel,
    stack_folder,
    start_stack,
    stop_stack,
    unique_user,
    write_site,
)

pytestmark = pytest.mark.course

COURSE = "physics"
TARGET = "physics-course"
ARTIFACTS = Path(__file__).parent / "artifacts"


def notebook(title: str, exercise: str = "answer = None") -> str:
    """A small notebook in the layout JupyterLab saves (one JSON line per source line)."""
    cells = [
        {"cell_type": "markdown", "id": "title", "metadata": {}, "source": [f"# {title}\n"]},
        {
            "cell_type": "markdown",
            "id": "intro",
            "metadata": {},
            "source": ["Read the sample,\n", "fill a histogram,\n", "and compare.\n"],
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "setup",
            "metadata": {},
            "outputs": [],
            "source": ["import numpy as np\n", "rng = np.random.default_rng(1)\n"],
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "exercise",
            "metadata": {},
            "outputs": [],
            "source": ["# exercise\n", exercise],
        },
    ]
    kernel = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    doc = {"cells": cells, "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(doc, indent=1) + "\n"


REV1 = {
    "01-intro.ipynb": notebook("Introduction"),
    "02-plots.ipynb": notebook("Plots"),
    "03-fit.ipynb": notebook("Fitting"),
}
REV2 = {
    "01-intro.ipynb": notebook("Introduction (updated for week 2)"),
    "02-plots.ipynb": notebook("Plots"),
    "04-selection.ipynb": notebook("Event selection"),
}


@pytest.fixture(scope="module")
def course_stack():
    """A stack of its own whose site file names one course from a folder."""
    folder = stack_folder()
    source = folder / "course-src"
    source.mkdir()
    site_file = write_site(
        folder,
        courses=[{"name": COURSE, "source": str(source), "branch": "main", "target": TARGET}],
    )
    try:
        yield start_stack(folder / "state", site_file), source
    finally:
        stop_stack(folder / "state")
        shutil.rmtree(folder, ignore_errors=True)


def publish(stack, source: Path, files: dict[str, str]) -> local_courses.PushReport:
    """Make the instructor's folder hold exactly ``files``, then push it."""
    for old in source.iterdir():
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (source / name).write_text(text)
    report = local_courses.push(stack.site, stack.paths, COURSE)
    print(report.text())
    return report


def course_files(home: Path) -> dict[str, str]:
    root = home / TARGET
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def restart(stack, user: str) -> None:
    stack.admin.stop_server(user)
    stack.admin.start_server(user)


def spawn(stack, user: str) -> None:
    stack.admin.ensure_user(user)
    stack.admin.start_server(user)


def as_student(stack, user: str, code: str) -> str:
    return asyncio.run(run_in_kernel(stack.url, user, stack.admin_token, code))


def test_pure_builders_link_plan_and_revision_record():
    from urllib.parse import parse_qs, urlsplit

    from courses.local import record_revisions
    from lakehub.courses import first_clone_command, pull_plan
    from spawner_hooks.courses import course_entries

    src = Course(
        name="demo",
        source="file:///srv/state/courses/demo.git",
        branch="main",
        target="course-demo",
    )
    link = urlsplit(nbgitpuller_link("http://hub.example:8000/", src, "01-welcome.ipynb"))
    assert link.path == "/hub/user-redirect/git-pull"
    assert parse_qs(link.query) == {
        "repo": ["file:///srv/state/courses/demo.git"],
        "branch": ["main"],
        "targetpath": ["course-demo"],
        "urlpath": ["lab/tree/course-demo/01-welcome.ipynb"],
    }
    assert pull_plan(course_entries([src]), "/homes/alice")[0]["path"] == "/homes/alice/course-demo"
    # a first start clones as nbgitpuller would (NBGITPULLER_DEPTH=0: the whole history)
    assert first_clone_command("R", "main", "/h/c", 1) == [
        *("git", "clone", "--depth", "1", "--branch", "main", "--", "R", "/h/c")
    ]
    assert "--depth" not in first_clone_command("R", "main", "/h/c", 0)
    before = {"demo": {"bob": {"revision": "a", "pulled_at": 1}}}
    after = record_revisions(before, "alice", {"demo": "b"}, 5.0)
    assert after["demo"] == {
        "bob": {"revision": "a", "pulled_at": 1},
        "alice": {"revision": "b", "pulled_at": 5},
    }
    assert "alice" not in before["demo"]  # pure: the input is not changed


def test_a_home_without_git_reports_the_pull_instead_of_failing(tmp_path, monkeypatch):
    """An image without git (the pull runs in a pod's postStart hook, whose failure kills
    the server): the pull is reported as failed, the command still exits 0."""
    from lakehub.courses import pull_one

    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    entry = {"repo": "https://example.org/c.git", "branch": "main", "target": "c"}
    found = pull_one({**entry, "path": str(tmp_path / "c")}, "gitpuller", timeout=10)
    assert found == {
        "ok": False,
        "reason": "the course source https://example.org/c.git cannot be read"
        " (fatal: cannot run git: No such file or directory)",
    }


def test_revisions_reach_students_and_edits_are_never_lost(course_stack):
    stack, source = course_stack
    started = time.monotonic()
    first = publish(stack, source, REV1)
    assert first.new and first.number == 1
    assert sorted(first.changes["added"]) == sorted(REV1)

    alice, bob = unique_user("alice"), unique_user("bob")
    spawn(stack, alice)
    spawn(stack, bob)
    for user in (alice, bob):
        assert course_files(stack.home(user)) == REV1
        assert not (stack.home(user) / NOTICE_NAME).exists()

    # alice answers the exercise in 01, deletes 02 and keeps notes of her own in the folder
    course = stack.home(alice) / TARGET
    as_student(
        stack,
        alice,
        f"""
from pathlib import Path
root = Path({str(course)!r})
nb = root / "01-intro.ipynb"
nb.write_text(nb.read_text().replace("answer = None", "answer = 42  # alice's answer"))
(root / "02-plots.ipynb").unlink()
(root / "my-notes.md").write_text("alice's notes")
""",
    )

    second = publish(stack, source, REV2)
    assert second.new and second.number == 2
    assert second.changes == {
        "changed": ["01-intro.ipynb"],
        "added": ["04-selection.ipynb"],
        "removed": ["03-fit.ipynb"],
    }
    assert (second.behind, second.current) == (2, 0)
    assert "2 student(s) update on their next server start" in second.text()

    restart(stack, alice)
    restart(stack, bob)

    # bob never touched anything: his folder is revision 2, exactly
    assert course_files(stack.home(bob)) == REV2

    got = course_files(stack.home(alice))
    # her edit stays, and the instructor's new title in the same notebook is merged in
    merged = json.loads(got["01-intro.ipynb"])
    sources = ["".join(cell["source"]) for cell in merged["cells"]]
    assert "answer = 42  # alice's answer" in sources[-1]
    assert sources[0] == "# Introduction (updated for week 2)\n"
    # the notebook she deleted is back, as revision 2 has it
    assert got["02-plots.ipynb"] == REV2["02-plots.ipynb"]
    # the removed notebook is gone (she never touched it), the new one arrived
    assert "03-fit.ipynb" not in got
    assert got["04-selection.ipynb"] == REV2["04-selection.ipynb"]
    # her own file is untouched
    assert got["my-notes.md"] == "alice's notes"
    assert set(got) == set(REV2) | {"my-notes.md"}

    # the instructor sees both students on revision 2
    revisions = json.loads(local_courses.revisions_file(stack.paths).read_text())[COURSE]
    assert revisions[alice]["revision"] == revisions[bob]["revision"] == second.revision
    status = local_courses.status_text(stack.site, stack.paths)
    print(status)
    assert f"course {COURSE} (~/{TARGET}): revision 2 ({second.revision[:7]})" in status
    for user in (alice, bob):
        assert re.search(rf"{user}\s+revision 2 \({second.revision[:7]}\).*up to date", status)
    # pushing again without changes is not a new revision, and nobody is behind
    again = local_courses.push(stack.site, stack.paths, COURSE)
    assert not again.new and again.number == 2 and again.behind == 0
    print(f"course flow: {time.monotonic() - started:.1f} s")


def test_unreachable_course_source_never_fails_the_spawn(course_stack):
    stack, source = course_stack
    if not (local_courses.mirror(stack.paths, COURSE) / "HEAD").exists():
        publish(stack, source, REV1)
    carol = unique_user("carol")
    mirror = local_courses.mirror(stack.paths, COURSE)
    away = mirror.with_name("away.git")
    mirror.rename(away)
    try:
        spawn(stack, carol)  # returns once the server answers
        assert stack.admin.user(carol)["servers"][""]["ready"]
        notice = stack.home(carol) / NOTICE_NAME
        text = notice.read_text()
        assert COURSE in text and "cannot be read" in text and "does not appear" in text
        assert not (stack.home(carol) / TARGET).exists()
        log = (stack.paths.logs / "hub.log").read_text()
        lines = [ln for ln in log.splitlines() if f"course {COURSE} for {carol} not updated" in ln]
        assert len(lines) == 1, lines
    finally:
        away.rename(mirror)
    # the source is back: the next start pulls the course and removes the note
    restart(stack, carol)
    assert not (stack.home(carol) / NOTICE_NAME).exists()
    assert course_files(stack.home(carol))


def test_push_from_a_git_url_fetches_into_the_mirror(course_stack, tmp_path):
    """A course whose source is a git URL: push fetches the branch into the mirror."""
    import subprocess

    stack, _ = course_stack
    remote = tmp_path / "remote"
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.ipynb").write_text(notebook("From a remote"))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "HOME": str(tmp_path)}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x", "PATH": "/usr/bin:/bin"}
    for cmd in (
        ["git", "init", "-q", "-b", "spring", str(work)],
        ["git", "-C", str(work), "add", "."],
        ["git", "-C", str(work), "commit", "-qm", "one"],
        ["git", "clone", "-q", "--bare", str(work), str(remote)],
    ):
        subprocess.run(cmd, check=True, env=env)
    from sitefile import Course

    site = stack.site.model_copy(
        update={
            "courses": [
                Course(name="remote", source=remote.as_uri(), branch="spring", target="remote")
            ]
        }
    )
    report = local_courses.push(site, stack.paths, "remote")
    assert report.new and report.number == 1 and report.changes["added"] == ["a.ipynb"]
    assert (
        report.revision
        == subprocess.run(
            ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, env=env
        ).stdout.strip()
    )
    assert not local_courses.push(site, stack.paths, "remote").new


@pytest.mark.browser
def test_student_pulls_through_an_nbgitpuller_link(course_stack):
    from playwright.sync_api import expect, sync_playwright

    from localstack.hubclient import approve_signup, signup
    from testkit.browser import launch as launch_chromium
    from testkit.browser import sign_in, start_from_the_spawn_form

    stack, source = course_stack
    publish(stack, source, REV2)
    admin = stack.site.auth.admin_users[0]
    admin_password = secrets.token_urlsafe(12)
    signup(stack.url, admin, admin_password)
    student, password = unique_user("web"), secrets.token_urlsafe(12)
    signup(stack.url, student, password)
    approve_signup(stack.url, admin, admin_password, student)

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            sign_in(page, stack.url, student, password)
            start_from_the_spawn_form(page, 120_000)  # the site's profiles
            expect(page.locator(".jp-LauncherCard").first).to_be_visible(timeout=120_000)
            assert course_files(stack.home(student)) == REV2  # pulled at spawn

            # the instructor publishes a new notebook while the student works
            publish(stack, source, {**REV2, "05-from-the-link.ipynb": notebook("Pulled now")})
            src = next(s for s in local_courses.sources(stack.site, stack.paths))
            assert isinstance(src, Course)
            page.goto(nbgitpuller_link(stack.url, src, "05-from-the-link.ipynb"))
            expect(page.locator(".jp-NotebookPanel")).to_be_visible(timeout=120_000)
            heading = page.locator(".jp-NotebookPanel").get_by_role("heading", name="Pulled now")
            expect(heading).to_be_visible(timeout=30_000)
            assert f"/user/{student}/lab/tree/{TARGET}/05-from-the-link.ipynb" in page.url
            page.screenshot(path=str(ARTIFACTS / "course-nbgitpuller-link.png"))
        finally:
            browser.close()
    assert "05-from-the-link.ipynb" in course_files(stack.home(student))


def test_cluster_commands_ask_running_servers_and_push_to_the_remote(course_stack, tmp_path):
    """`make push-notebooks` / `make course-status` for a cluster site
    (``courses.cluster``), driven against this stack's real hub: the hub API, the
    proxy and every running server's ``/lakehub/courses`` (lakehub's server extension)
    are real.  What a cluster's pods pull from, the course's git remote, is here the
    stack's bare mirror (``file://``); nothing else is simulated."""

    import yaml

    from courses import cluster
    from sitefile import Course

    stack, source = course_stack
    publish(stack, source, REV1)
    remote = local_courses.mirror(stack.paths, COURSE).as_uri()
    course = Course(name=COURSE, source=remote, branch="main", target=TARGET)
    site = stack.site.model_copy(update={"courses": [course]})
    # the instructor's token: the scopes of the chart's lakehub-courses service
    admin = stack.site.auth.admin_users[0]
    stack.admin.ensure_user(admin)
    r = stack.admin.api("POST", f"/users/{admin}/tokens", json={"scopes": cluster.SCOPES})
    r.raise_for_status()
    token = r.json()["token"]

    carol, dave = unique_user("carol"), unique_user("dave")
    spawn(stack, carol)
    spawn(stack, dave)
    stack.admin.stop_server(dave)
    first = cluster.publish(course, None)
    assert first.number == revision_count(remote)
    text = cluster.status(site, stack.url, token)
    print(text)
    assert f"revision {first.number} ({first.revision[:7]})" in text
    # (servers of the other tests' students run too: look at carol's and dave's lines)
    assert mine(section(text, "running servers on it"), carol, dave) == [carol]
    assert mine(section(text, "running servers behind"), carol, dave) == []
    assert "pull link: " in text and "students without a running server:" in text

    # carol edits a notebook; the instructor pushes a folder to the remote
    as_student(
        stack,
        carol,
        f"""
from pathlib import Path
nb = Path.home() / {TARGET!r} / "01-intro.ipynb"
nb.write_text(nb.read_text().replace("answer = None", "answer = 7"))
""",
    )
    folder = tmp_path / "course"
    folder.mkdir()
    for name, content in REV2.items():
        (folder / name).write_text(content)
    pushed = cluster.publish(course, folder)
    assert pushed.new and pushed.number == first.number + 1
    assert pushed.revision == git_out(remote, "rev-parse", "refs/heads/main")
    assert git_out(remote, "ls-tree", "--name-only", pushed.revision).split() == sorted(REV2)
    assert "pushed revision" in "\n".join(cluster.push_lines(course, pushed))
    assert not cluster.publish(course, folder).new  # the same content is not a new revision

    text = cluster.status(site, stack.url, token)
    print(text)
    assert mine(section(text, "running servers behind"), carol, dave) == [
        f"{carol} ({first.revision[:7]}, 1 file(s) edited)"
    ]
    restart(stack, carol)
    text = cluster.status(site, stack.url, token)
    assert mine(section(text, "running servers on it"), carol, dave) == [
        f"{carol}, 1 file(s) edited"
    ]

    # the command line: a cluster site file; a token without the scopes is refused clearly
    data = yaml.safe_load((EXAMPLES / "site.cluster-native.yaml").read_text())
    data["courses"] = [{"name": COURSE, "source": remote, "branch": "main", "target": TARGET}]
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(data))
    token_file = tmp_path / "token"
    token_file.write_text(token)
    base = ["--site", str(site_file), "--hub-url", stack.url]
    done = run_cli(["status", *base, "--token-file", str(token_file)])
    assert done.returncode == 0 and carol in done.stdout, done.stderr
    token_file.write_text(
        stack.admin.api("POST", f"/users/{admin}/tokens", json={"scopes": []}).json()["token"]
    )
    done = run_cli(["status", *base, "--token-file", str(token_file)])
    assert done.returncode == 1 and "access:servers" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli(["push", *base, "--course", "nope"])
    assert done.returncode == 1 and "no course 'nope'" in done.stderr


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def git_out(url: str, *args: str) -> str:
    import subprocess

    path = url.removeprefix("file://")
    return subprocess.run(
        ["git", f"--git-dir={path}", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def revision_count(url: str) -> int:
    return int(git_out(url, "rev-list", "--count", "refs/heads/main"))


def section(text: str, title: str) -> list[str]:
    """The indented names under the first line of ``text`` starting with ``title``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title))
    found = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        found.append(line.strip())
    return found


def mine(lines: list[str], *users: str) -> list[str]:
    return [line for line in lines if line.split(" ")[0].rstrip(",") in users]


def run_cli(args: list[str]):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "courses.cluster", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
