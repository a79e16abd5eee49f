"""Small helpers that talk to a running hub the way a person or an admin script would.

Used by ``make up`` (demo logins), by the tests and by the benchmarks.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import quote

import httpx

_XSRF_INPUT = re.compile(r'name="_xsrf"\s+value="([^"]+)"')


class HubError(RuntimeError):
    pass


@dataclass
class HubAdmin:
    """The hub REST API with the admin service's token."""

    base_url: str  # e.g. http://127.0.0.1:8000
    token: str

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"token {self.token}"}, timeout=30
        )

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        with self._client() as client:
            return client.request(method, f"/hub/api{path}", **kw)

    def ensure_user(self, name: str) -> None:
        r = self.api("GET", f"/users/{quote(name, safe='')}")
        if r.status_code == 404:
            r = self.api("POST", f"/users/{quote(name, safe='')}")
        if r.status_code >= 300:
            raise HubError(f"creating user {name} failed: HTTP {r.status_code} {r.text[:200]}")

    def user(self, name: str) -> dict:
        r = self.api("GET", f"/users/{quote(name, safe='')}")
        r.raise_for_status()
        return r.json()

    def start_server(self, name: str, timeout: float = 180) -> dict:
        """Start ``name``'s server and wait until the hub reports it ready."""
        r = self.api("POST", f"/users/{quote(name, safe='')}/server")
        if r.status_code not in (201, 202, 400):  # 400: already running
            raise HubError(f"starting {name}'s server failed: HTTP {r.status_code} {r.text[:300]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.user(name).get("servers", {}).get("")
            if server is None:
                raise HubError(f"{name}'s server stopped while starting; see the hub log")
            if server.get("ready"):
                return server
            time.sleep(0.25)
        raise HubError(f"{name}'s server was not ready after {timeout:.0f} s")

    def stop_server(self, name: str, timeout: float = 60) -> None:
        self.api("DELETE", f"/users/{quote(name, safe='')}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "" not in self.user(name).get("servers", {}):
                return
            time.sleep(0.25)
        raise HubError(f"{name}'s server did not stop within {timeout:.0f} s")


def _form_xsrf(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    page.raise_for_status()
    match = _XSRF_INPUT.search(page.text)
    if not match:
        raise HubError(f"no _xsrf field on {path}")
    return match.group(1)


def signup(base_url: str, username: str, password: str) -> None:
    """Sign up through the real NativeAuthenticator form."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        xsrf = _form_xsrf(client, "/hub/signup")
        r = client.post(
            "/hub/signup",
            data={
                "username": username,
                "signup_password": password,
                "signup_password_confirmation": password,
                "_xsrf": xsrf,
            },
        )
    # the page reports the outcome in an alert box: success or info (awaiting approval)
    if r.status_code >= 400 or not re.search(r'class="alert alert-(success|info)"', r.text):
        reason = re.search(r'class="alert alert-danger"[^>]*>(.*?)</div>', r.text, re.S)
        detail = " ".join(reason.group(1).split()) if reason else f"HTTP {r.status_code}"
        raise HubError(f"sign-up of {username} was refused: {detail[:200]}")


def login(base_url: str, username: str, password: str) -> httpx.Client:
    """Log in through the real login form; returns a client holding the session cookie."""
    client = httpx.Client(base_url=base_url, timeout=30)
    xsrf = _form_xsrf(client, "/hub/login")
    r = client.post(
        "/hub/login",
        data={"username": username, "password": password, "_xsrf": xsrf},
        follow_redirects=False,
    )
    if r.status_code != 302:
        client.close()
        raise HubError(f"login of {username} failed (HTTP {r.status_code})")
    return client


def approve_signup(base_url: str, admin: str, admin_password: str, username: str) -> None:
    """Approve a NativeAuthenticator sign-up as a logged-in admin, as a person would.

    The approval page toggles; call it once, right after the sign-up.
    """
    client = login(base_url, admin, admin_password)
    try:
        r = client.get(f"/hub/authorize/{quote(username, safe='')}", follow_redirects=False)
    finally:
        client.close()
    if r.status_code >= 400:
        raise HubError(f"approving {username} failed: HTTP {r.status_code}")


def user_api_token(
    base_url: str, username: str, password: str, note: str = "lakehub", expires_in: int = 3600
) -> str:
    """A JupyterHub API token of ``username`` (with their own permissions), made after
    logging in through the form, as the token page of the hub does."""
    client = login(base_url, username, password)
    try:
        r = client.post(
            f"/hub/api/users/{quote(username, safe='')}/tokens",
            json={"note": note, "expires_in": expires_in},
            headers={"X-XSRFToken": client.cookies.get("_xsrf", "")},
        )
    finally:
        client.close()
    if r.status_code != 201:
        raise HubError(f"a token for {username} was refused: HTTP {r.status_code} {r.text[:200]}")
    return r.json()["token"]
