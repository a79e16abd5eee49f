"""Debian's Chromium, driven by Playwright, for browser tests and the login figures.

Never a downloaded browser: ``/usr/bin/chromium`` (apt), headless, with the flags that
keep it from reaching for the network on its own (FACTS: this machine refuses outside
connections, and Chromium would try them at every start).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
