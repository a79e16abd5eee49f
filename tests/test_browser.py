"""A student in a real browser: Debian's Chromium driven by Playwright against the real
hub, proxy and single-user server.  Nothing is mocked.  Screenshots go to
tests/artifacts/ (ignored by git)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from localstack.hubclient import approve_signup, signup
from testkit.browser import chromium, start_from_the_spawn_form
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
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        yield context.new_page()


def test_student_logs_in_and_finds_the_atlas_notebooks(local_stack, approved_student, page):
    student, password = approved_student
    page.goto(f"{local_stack.url}/hub/login")
    page.fill("#username_input", student)
    page.fill("#password_input", password)
    page.click("#login_submit")
    # the example site offers two profiles: the spawn form, Start with the preselected one
    assert start_from_the_spawn_form(page, 120_000)
    # the hub spawns the server and redirects into JupyterLab
    expect(page.locator(".jp-LauncherCard").first).to_be_visible(timeout=120_000)
    assert re.search(rf"/user/{student}/lab", page.url)

    folder = local_stack.site.notebooks.target
    page.locator(".jp-DirListing-item", has_text=folder).dblclick()
    notebook = page.locator(".jp-DirListing-item", has_text="HyyAnalysis.ipynb")
    expect(notebook).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "jupyterlab-notebooks.png"))


def _log_in(page, url: str, student: str, password: str) -> None:
    page.goto(f"{url}/hub/login")
    page.fill("#username_input", student)
    page.fill("#password_input", password)
    page.click("#login_submit")
    start_from_the_spawn_form(page, 120_000)
    expect(page.locator(".jp-LauncherCard").first).to_be_visible(timeout=120_000)


# Per icon of the Rucio panel: how it is drawn.  A glyph of an icon font is about one em
# wide; the same word in a text font ("folder_open", "visibility") is several em wide.
_ICON_BOXES = """
els => els.filter(e => e.offsetParent !== null).map(e => {
    const style = getComputedStyle(e);
    return {text: e.textContent, width: e.getBoundingClientRect().width,
            em: parseFloat(style.fontSize), family: style.fontFamily};
})
"""
# Whether a text box shows all of its text (no ellipsis, nothing clipped).
_FULLY_SHOWN = "e => e.scrollWidth <= e.clientWidth"


def test_first_screen_needs_nothing_from_outside(local_stack, approved_student, page):
    """The first screen of a student on a network that reaches only the hub: every request
    to another address is refused.  No news prompt; the Rucio panel finds the demo
    datasets, shows their names in full and draws its icons as icons (the font comes from
    the student's own server), not as words."""
    student, password = approved_student
    refused: list[str] = []
    fonts: dict[str, int] = {}

    def only_the_hub(route) -> None:
        if urlsplit(route.request.url).hostname != "127.0.0.1":
            refused.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    def font_responses(response) -> None:
        if response.request.resource_type == "font":
            fonts[response.url] = response.status

    page.context.route("**/*", only_the_hub)
    page.on("response", font_responses)
    _log_in(page, local_stack.url, student, password)

    page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id='rucio-jupyterlab:panel']").click()
    search = page.get_by_placeholder("Enter a Data Identifier (DID)")
    expect(search).to_be_visible(timeout=30_000)
    demo = local_stack.site.local.demo_data
    search.fill(f"{demo.scope}:demo.*")
    search.press("Enter")

    panel = page.locator(".jp-RucioExtensionPanel")
    names = [f"{demo.scope}:{demo.dataset_name(layout)}" for layout in demo.layouts]
    for did in names:
        row = panel.locator("[class^='listItemCollapsed']", has_text=did).first
        expect(row).to_be_visible(timeout=60_000)
        text = row.locator("[class^='textContainer']")
        expect(text).to_have_text(did)
        assert text.evaluate(_FULLY_SHOWN), f"{did} is cut short in the panel"
    page.screenshot(path=str(ARTIFACTS / "rucio-panel-offline.png"))

    icons = panel.locator("i.material-icons").evaluate_all(_ICON_BOXES)
    assert len(icons) >= len(names) * 2, icons  # a folder and an eye per dataset at least
    as_words = [i for i in icons if i["width"] > 1.5 * i["em"]]
    assert as_words == [], "icons drawn as words"
    assert all("Material Icons" in i["family"] for i in icons), icons
    assert page.evaluate("document.fonts.check('24px \"Material Icons\"')")
    served = {urlsplit(u).path.rsplit("/", 1)[-1]: s for u, s in fonts.items()}
    assert served.get("MaterialIcons-Regular.woff2") == 200, fonts
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in fonts), fonts

    # long after JupyterLab was ready: no question about news from the internet
    expect(page.get_by_text("official Jupyter news")).to_have_count(0)
    print("requests refused (not to the hub):", refused)


def test_wrong_password_is_refused(local_stack, approved_student, page):
    student, _ = approved_student
    page.goto(f"{local_stack.url}/hub/login")
    page.fill("#username_input", student)
    page.fill("#password_input", "not-the-password")
    page.click("#login_submit")
    expect(page.locator("#login_submit")).to_be_visible()
    assert "/hub/login" in page.url
    assert "/lab" not in page.url
