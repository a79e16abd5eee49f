"""A student in a real browser: Debian's Chromium driven by Playwright against the real
hub, proxy and single-user server.  Nothing is mocked.  Screenshots go to
tests/artifacts/ (ignored by git)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from localstack.hubclient import approve_signup, signup
from testkit.browser import launch as launch_chromium
from testkit.harness import unique_user

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def approved_student(local_stack):
    """A student who signed up on the real form and was approved by the site's admin."""
    admin = local_stack.site.auth.admin_users[0]
    admin_password = secrets.token_urlsafe(12)
    signup(local_stack.url, admin, admin_password)
    student, password = unique_user("web"), secrets.token_urlsafe(12)
    signup(local_stack.url, student, password)
    approve_signup(local_stack.url, admin, admin_password, student)
    return student, password


@pytest.fixture
def page():
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            yield context.new_page()
        finally:
            browser.close()


def test_student_logs_in_and_finds_the_atlas_notebooks(local_stack, approved_student, page):
    student, password = approved_student
    page.goto(f"{local_stack.url}/hub/login")
    page.fill("#username_input", student)
    page.fill("#password_input", password)
    page.click("#login_submit")
    # the hub spawns the server and redirects into JupyterLab
    expect(page.locator(".jp-LauncherCard").first).to_be_visible(timeout=120_000)
    assert re.search(rf"/user/{student}/lab", page.url)

    folder = local_stack.site.notebooks.target
    page.locator(".jp-DirListing-item", has_text=folder).dblclick()
    notebook = page.locator(".jp-DirListing-item", has_text="HyyAnalysis.ipynb")
    expect(notebook).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "jupyterlab-notebooks.png"))


def test_wrong_password_is_refused(local_stack, approved_student, page):
    student, _ = approved_student
    page.goto(f"{local_stack.url}/hub/login")
    page.fill("#username_input", student)
    page.fill("#password_input", "not-the-password")
    page.click("#login_submit")
    expect(page.locator("#login_submit")).to_be_visible()
    assert "/hub/login" in page.url
    assert "/lab" not in page.url
