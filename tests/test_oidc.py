"""OIDC sites end to end with a real identity provider.

Real, all on 127.0.0.1: Keycloak 26 (login, refresh tokens, RFC 8693 standard token
exchange), JupyterHub with configurable-http-proxy and GenericOAuthenticator carrying
lakehub's ``refresh_user_hook``, the token service (``hub_services.issuer --source
token_exchange``) as a hub-managed service, and the session's refresher
(``lakehub.token_refresher``), and a Rucio server trusting the realm (``[oidc] idpsecrets``) with
the student's account bound to their Keycloak identity.  Not here: Kubernetes
(``tests/test_k8s.py`` covers the Secrets).  Access tokens live 20 s here, so several
lifetimes fit in a minute.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import pytest

from hub_config import values as hv
from hub_config.scopes import TOKEN_ACCESS
from lakehub.token_refresher import NOTICE, TokenRefresher
from localstack import rucio_server
from sitefile import RucioInstance, load_site
from sitefile.state import StackPaths, venv_bin
from spawner_hooks.rucio import AdminCredentials, RucioAccounts
from spawner_hooks.session import rucio_cfg
from testkit.harness import free_ports
from testkit.keycloak import Keycloak, claims, log_in
from testkit.minihub import MiniHub, token_service
from tokens.mint import oidc_identity

pytestmark = [pytest.mark.tokens, pytest.mark.oidc, pytest.mark.timeout(900)]

LIFESPAN = 20  # seconds an access token lives
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def oidc():
    hub = MiniHub()
    kc = Keycloak(
        redirect_uri=f"{hub.url}/hub/oauth_callback", access_token_lifespan=LIFESPAN
    ).start()
    (port,) = free_ports(1)
    args = [
        "--source=token_exchange",
        f"--exchange-token-url={kc.endpoint('token')}",
        f"--exchange-client-id={kc.client_id}",
    ]
    hub.services = [token_service(port, args, {"OAUTH_CLIENT_SECRET": kc.client_secret})]
    # the roles the chart gives an OIDC site: users reach the token service, the service
    # reads users' auth state
    roles = hv.token_service_role(load_site(REPO / "examples" / "site.cluster.yaml"))
    hub.roles = [
        {"name": "user", "scopes": ["self", TOKEN_ACCESS]},
        *({"name": name, **role} for name, role in roles.items()),
    ]
    hub.login = {
        "authenticator_class": "generic-oauth",
        "generic_oauth": kc.hub_oauth(hub.url, auth_refresh_age=5),
        "lakehub_refresh_ahead": True,
    }
    try:
        hub.start()
        yield hub, kc
    finally:
        hub.stop()
        kc.stop()


@pytest.fixture(scope="module")
def rucio(oidc, tmp_path_factory):
    """A real Rucio server (SQLite) trusting the Keycloak realm; the student's account is
    bound to the identity ``SUB=<Keycloak user id>, ISS=<realm>``."""
    _, kc = oidc
    paths = StackPaths(tmp_path_factory.mktemp("rucio"))
    rucio_server.configure(paths, kc.issuer)
    rucio_server.init_database(paths)
    (port,) = free_ports(1)
    rucio_server.start(paths, port)
    try:
        instance = RucioInstance(name="lake", rucio_host=f"http://127.0.0.1:{port}")
        admin = AdminCredentials("root", "root", paths.rucio_root_password)
        accounts = RucioAccounts(instance, admin, kc.issuer)
        try:
            identity = oidc_identity(kc.user_id(), kc.issuer)
            asyncio.run(accounts.ensure_account(kc.username, identity, "student@example.org"))
        finally:
            accounts.close()
        yield instance
    finally:
        rucio_server.stop(paths)


def rucio_whoami(instance: RucioInstance, account: str, token_file: Path) -> str:
    """The ``rucio`` command as a session runs it (a process of its own, the analysis
    environment, the token file named by BEARER_TOKEN_FILE); its output."""
    import os
    import subprocess

    config = token_file.parent / "rucio.cfg"
    config.write_text(rucio_cfg(instance, account))
    tmp = token_file.parent / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(token_file.parent),
        "TMPDIR": str(tmp),
        "RUCIO_CONFIG": str(config),
        "BEARER_TOKEN_FILE": str(token_file),
    }
    done = subprocess.run(
        [str(venv_bin("analysis", "rucio")), "whoami"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-1000:]
    return done.stdout


def session_token(hub: MiniHub, user: str) -> str:
    """What the student's server holds: a hub token that may call the token service."""
    with hub.admin() as api:
        r = api.post(f"/users/{user}/tokens", json={"scopes": [TOKEN_ACCESS]})
        r.raise_for_status()
        return r.json()["token"]


def session_refresher(hub: MiniHub, kc: Keycloak, token_file: Path, logger: str):
    """The refresher a student's server runs (lakehub.token_refresher), home = the file's folder."""
    return TokenRefresher(
        token_file,
        f"{hub.url}/services/lakehub-issuer",
        session_token(hub, kc.username),
        token_file.parent,
        logging.getLogger(logger),
        shortest_pause=1,
    )


def access_token(hub: MiniHub, user: str) -> str:
    with hub.admin() as api:
        return api.get(f"/users/{user}").json()["auth_state"]["access_token"]


async def until(check, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"not within {limit_s:.0f} s: {what}"
        await asyncio.sleep(0.5)


async def test_a_session_keeps_a_valid_rucio_token_over_several_access_token_lifetimes(
    oidc, rucio, tmp_path
):
    hub, kc = oidc
    log_in(hub.url, kc)
    first_access = access_token(hub, kc.username)
    token_file = tmp_path / "rucio-token"
    refresher = session_refresher(hub, kc, token_file, "test")
    task = asyncio.ensure_future(refresher.run())
    seen: dict[str, dict] = {}
    whoami = 0
    try:
        await until(token_file.exists, 60, "the first Rucio token")
        started = time.time()
        while time.time() - started < 3 * LIFESPAN:  # three access-token lifetimes
            token = token_file.read_text()
            if token not in seen:
                seen[token] = claims(token)
            info = await asyncio.to_thread(kc.introspect, token)
            # at every moment the session's token is one Rucio would accept
            assert info["active"] is True, (time.time() - started, info)
            assert "rucio" in ([info["aud"]] if isinstance(info["aud"], str) else info["aud"])
            assert info["preferred_username"] == kc.username
            assert not (tmp_path / NOTICE).exists()
            # and Rucio accepts it: the student's own account, no password anywhere
            out = await asyncio.to_thread(rucio_whoami, rucio, kc.username, token_file)
            assert re.search(rf"^account\s*:\s*{kc.username}$", out, re.M), out
            whoami += 1
            await asyncio.sleep(1)
    finally:
        task.cancel()
    # renewed again and again, each token issued for the rucio audience by exchange
    assert len(seen) >= 3, len(seen)
    assert whoami >= 10  # Rucio calls spread over the three lifetimes, none refused
    assert all(c["azp"] == kc.client_id and c["iss"] == kc.issuer for c in seen.values())
    # the hub refreshed the login with the refresh token: the first access token is long
    # expired, the one it holds now is another
    assert claims(first_access)["exp"] < time.time()
    assert access_token(hub, kc.username) != first_access


async def test_a_revoked_login_is_reported_once_and_recovers_after_logging_in_again(
    oidc, tmp_path, caplog
):
    hub, kc = oidc
    log_in(hub.url, kc)
    token_file = tmp_path / "rucio-token"
    refresher = session_refresher(hub, kc, token_file, "lakehub-test-refresher")
    notice = tmp_path / NOTICE
    task = asyncio.ensure_future(refresher.run())
    try:
        await until(token_file.exists, 60, "the first Rucio token")
        kc.end_sessions()  # the provider ends the student's login: refresh tokens die
        # once the hub has tried the refresh token, the note says what to do
        await until(
            lambda: notice.exists() and "log out of the hub and in again" in notice.read_text(),
            3 * LIFESPAN,
            "the notice in the home asking to log in again",
        )
        warnings = [r for r in caplog.records if r.name == "lakehub-test-refresher"]
        assert len(warnings) == 1  # said once, while it keeps retrying
        log_in(hub.url, kc)  # the student logs in again; the session recovers by itself
        await until(lambda: not notice.exists(), 3 * LIFESPAN, "the notice to go away")
        info = await asyncio.to_thread(kc.introspect, token_file.read_text())
        assert info["active"] is True
    finally:
        task.cancel()
