"""What a student and an admin do on a hub deployed in the one-node lab, for the tests and
the benchmarks: sign up, log in until the server is ready, run code in the session's
kernel, and watch a renewed Rucio token travel from the session Secret into the pod."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote

from lakehub.contract import SESSION_MOUNT, TOKEN_FILE, session_secret_name
from localstack.hubclient import HubError, approve_signup, login, signup
from testkit.harness import KernelSession
from testkit.node import Node
from tokens.jwt import expiry


def new_student(base_url: str, admin: str, admin_password: str, prefix: str = "s") -> tuple:
    """A student signed up through the form and approved by the admin: (name, password)."""
    name, password = f"{prefix}{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    signup(base_url, name, password)
    approve_signup(base_url, admin, admin_password, name)
    return name, password


def login_until_ready(base_url: str, name: str, password: str, timeout: float = 300) -> float:
    """Log in through the form, follow the hub to the spawn, and wait until the hub reports
    the server ready; returns the seconds from the login's POST to ready."""
    began = time.monotonic()
    client = login(base_url, name, password)
    try:
        client.get("/hub/spawn", follow_redirects=False)
        while time.monotonic() - began < timeout:
            server = client.get(f"/hub/api/users/{quote(name)}").json()["servers"].get("")
            if server and server.get("ready"):
                return time.monotonic() - began
            time.sleep(0.2)
    finally:
        client.close()
    raise HubError(f"{name}'s server was not ready {timeout:.0f} s after logging in")


def stop_server(base_url: str, name: str, password: str, timeout: float = 120) -> None:
    """Stop the student's server as they would (their own cookie) and wait until it is."""
    client = login(base_url, name, password)
    try:
        client.delete(
            f"/hub/api/users/{quote(name)}/server",
            headers={"X-XSRFToken": client.cookies.get("_xsrf", "")},
        )
        deadline = time.monotonic() + timeout
        while client.get(f"/hub/api/users/{quote(name)}").json()["servers"].get(""):
            if time.monotonic() > deadline:
                raise HubError(f"{name}'s server did not stop within {timeout:.0f} s")
            time.sleep(0.25)
    finally:
        client.close()


def run_code(base_url: str, name: str, token: str, code: str, limit_s: float = 120) -> str:
    """Run ``code`` in a new kernel of the student's server; its stdout."""

    async def go() -> str:
        async with KernelSession(base_url, name, token) as kernel:
            return await kernel.execute(code, limit_s)

    return asyncio.run(go())


@dataclass
class Propagation:
    first: str  # the token the session Secret held at first
    renewed: str  # the one the token service wrote into it
    delay_s: float  # from the Secret's change to the same token in the pod's file


def token_propagation(
    node: Node, namespace: str, base_url: str, name: str, api_token: str, lifetime: int
) -> Propagation:
    """Wait for the token service to renew the student's token into their session Secret
    (the session asks at two thirds of the lifetime), then for the kubelet to bring the
    new content into the running pod's Secret-mounted file; the delay between the two."""
    path = f"/api/v1/namespaces/{namespace}/secrets/{session_secret_name(f'jupyter-{name}')}"

    def in_secret() -> str:
        return base64.b64decode(node.get(path)["data"][TOKEN_FILE]).decode()

    first = in_secret()
    if expiry(first) is None:
        raise AssertionError("the session Secret holds no JWT")
    renewed = node.wait_until(
        lambda: (token := in_secret()) != first and token,
        timeout=lifetime + 60,
        what="the renewed token in the session Secret",
        interval=0.2,
    )
    changed = time.monotonic()

    async def watch_file() -> float:
        async with KernelSession(base_url, name, api_token) as kernel:
            while time.monotonic() - changed < 120:
                code = f"print(open('{SESSION_MOUNT}/{TOKEN_FILE}').read())"
                if (await kernel.execute(code)).strip() == renewed:
                    return time.monotonic() - changed
                await asyncio.sleep(0.2)
        raise AssertionError("the renewed token did not reach the pod's file in 120 s")

    return Propagation(first, renewed, asyncio.run(watch_file()))
