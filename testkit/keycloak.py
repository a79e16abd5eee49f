"""A real Keycloak on 127.0.0.1 for OIDC tests: login, refresh and token exchange.

``scripts/ensure-keycloak.sh`` fetches the server distribution once; :class:`Keycloak`
starts it in development mode with an in-memory database (nothing is written but its
log), creates the realm of ``tests/data/keycloak-realm.json`` through the admin API (the
hub's OAuth client with standard token exchange on, the ``rucio`` audience, a ``groups``
claim, one student in the group ``year2``)
and stops it by its process group.  Every secret in the realm is made here, at random.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from localstack import procs
from testkit.harness import free_ports

REPO = Path(__file__).resolve().parent.parent
REALM_FILE = REPO / "tests" / "data" / "keycloak-realm.json"
REALM = "lakehub"
JAVA_HOMES = ["/usr/lib/jvm/temurin-25-jdk-amd64", "/usr/lib/jvm/temurin-21-jdk-amd64"]


def kc_script() -> Path:
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "ensure-keycloak.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/ensure-keycloak.sh failed:\n{done.stderr}")
    return Path(done.stdout.strip().splitlines()[-1])


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@dataclass
class Keycloak:
    redirect_uri: str
    username: str = "student"
    access_token_lifespan: int = 300
    client_id: str = "lakehub-hub"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    rucio_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def start(self, timeout: float = 300) -> Keycloak:
        (self.port,) = free_ports(1)
        self.folder = Path(tempfile.mkdtemp(prefix="lakehub-keycloak-"))
        java = next((j for j in JAVA_HOMES if Path(j, "bin", "java").exists()), None)
        env = {
            **os.environ,
            "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
            "KC_BOOTSTRAP_ADMIN_PASSWORD": self.admin_password,
            "JAVA_OPTS_KC_HEAP": "-Xms64m -Xmx768m",
            **({"JAVA_HOME": java} if java else {}),
        }
        self.log = self.folder / "keycloak.log"
        try:
            procs.serve(
                "keycloak",
                [
                    str(kc_script()),
                    "start-dev",
                    "--http-host=127.0.0.1",
                    f"--http-port={self.port}",
                    "--db=dev-mem",
                ],
                ready_url=f"{self.base}/realms/master/.well-known/openid-configuration",
                what="Keycloak",
                timeout=timeout,
                run_dir=self.folder,
                log_path=self.log,
                env=env,
            )
            self._create_realm()
        except BaseException:
            self.stop()  # nothing is left running when the start fails
            raise
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.base}/realms/{REALM}"

    def endpoint(self, name: str) -> str:
        return f"{self.issuer}/protocol/openid-connect/{name}"

    def hub_oauth(self, hub_url: str, auth_refresh_age: int) -> dict:
        """GenericOAuthenticator's settings for a hub at ``hub_url`` logging in here
        (``testkit.minihub``'s ``generic_oauth``)."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "authorize_url": self.endpoint("auth"),
            "token_url": self.endpoint("token"),
            "userdata_url": self.endpoint("userinfo"),
            "username_claim": "preferred_username",
            "scope": ["openid", "profile", "email"],
            "oauth_callback_url": f"{hub_url}/hub/oauth_callback",
            "auth_refresh_age": auth_refresh_age,
        }

    def admin(self) -> httpx.Client:
        r = httpx.post(
            f"{self.base}/realms/master/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": "admin",
                "password": self.admin_password,
            },
            timeout=30,
        )
        r.raise_for_status()
        token = r.json()["access_token"]
        return httpx.Client(
            base_url=f"{self.base}/admin/realms",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def _create_realm(self) -> None:
        text = REALM_FILE.read_text()
        for key, value in {
            "@CLIENT_SECRET@": self.client_secret,
            "@RUCIO_SECRET@": self.rucio_secret,
            "@REDIRECT_URI@": self.redirect_uri,
            "@USERNAME@": self.username,
            "@PASSWORD@": self.password,
        }.items():
            text = text.replace(key, value)
        realm = json.loads(text)
        realm["accessTokenLifespan"] = self.access_token_lifespan
        with self.admin() as api:
            api.post("", json=realm).raise_for_status()

    def introspect(self, token: str) -> dict:
        """What a resource server (the ``rucio`` client) learns about ``token``."""
        r = httpx.post(
            self.endpoint("token/introspect"),
            data={"token": token},
            auth=("rucio", self.rucio_secret),
            timeout=30,
        )
        r.raise_for_status()
        return r.json()

    def user_id(self) -> str:
        """The student's ``sub`` in this realm's tokens."""
        with self.admin() as api:
            (user,) = api.get(f"/{REALM}/users", params={"username": self.username}).json()
            return user["id"]

    def set_groups(self, names: list[str]) -> None:
        """Make the student a member of exactly these groups of the realm (the
        ``groups`` claim of their next login)."""
        uid = self.user_id()
        with self.admin() as api:
            ids = {g["name"]: g["id"] for g in api.get(f"/{REALM}/groups").json()}
            for group in api.get(f"/{REALM}/users/{uid}/groups").json():
                api.delete(f"/{REALM}/users/{uid}/groups/{group['id']}").raise_for_status()
            for name in names:
                api.put(f"/{REALM}/users/{uid}/groups/{ids[name]}").raise_for_status()

    def end_sessions(self) -> None:
        """Log the student out everywhere: their refresh tokens stop working."""
        with self.admin() as api:
            api.post(f"/{REALM}/users/{self.user_id()}/logout").raise_for_status()

    def stop(self) -> None:
        procs.stop("keycloak", self.folder, timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


def log_in(hub_url: str, kc: Keycloak) -> httpx.Client:
    """The student's browser, step by step: the hub's OAuth login, Keycloak's form, back
    to the hub's callback.  Keycloak marks its cookies Secure even on http, which a
    browser accepts for 127.0.0.1 and httpx does not, so they are carried by hand."""
    hub = httpx.Client(base_url=hub_url, timeout=30)
    r = hub.get("/hub/oauth_login", params={"next": "/hub/home"})
    assert r.status_code == 302, r.text[:300]
    page = httpx.get(r.headers["location"], timeout=30)
    action = re.search(r'action="([^"]+)"', page.text)
    assert action, page.text[:500]
    cookies = "; ".join(c.split(";")[0] for c in page.headers.get_list("set-cookie"))
    r = httpx.post(
        action.group(1).replace("&amp;", "&"),
        data={"username": kc.username, "password": kc.password, "credentialId": ""},
        headers={"Cookie": cookies},
        timeout=30,
    )
    assert r.status_code == 302, r.text[:500]
    done = hub.get(r.headers["location"])
    assert done.status_code == 302, done.text[:500]
    return hub
