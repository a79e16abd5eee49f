"""Debian's Chromium, driven by Playwright, for browser tests and the login figures.

Never a downloaded browser: ``/usr/bin/chromium`` (apt), headless, with the flags that
keep it from reaching for the network on its own (FACTS: this machine refuses outside
connections, and Chromium would try them at every start).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright):
    """A headless Chromium browser from a ``sync_playwright()`` handle."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Playwright's sync API); closed on the way out."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page, hub_url: str, username: str, password: str, next_path: str = "") -> None:
    """Fill the hub's login form (``/hub/login``, then ``next_path`` if given)."""
    query = f"?next={next_path}" if next_path else ""
    page.goto(f"{hub_url}/hub/login{query}")
    page.fill("#username_input", username)
    page.fill("#password_input", password)
    page.click("#login_submit")


# where a browser lands after the hub's login form: the spawn form (a site that offers
# more than one profile), the spawn's progress page, or the server itself
_AFTER_LOGIN = re.compile(r"/hub/spawn($|[/?-])|/user/")


def start_from_the_spawn_form(page, timeout_ms: float) -> bool:
    """After "Sign in": if the hub shows its spawn form, press Start with the profile it
    preselects, as a student would; True if there was a form."""
    page.wait_for_url(_AFTER_LOGIN, wait_until="commit", timeout=timeout_ms)
    if not urlparse(page.url).path.endswith("/hub/spawn"):
        return False
    page.click("#spawn_form [type=submit]", timeout=timeout_ms)
    return True
