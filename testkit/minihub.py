"""Run a bare JupyterHub (``testkit/minihub_config.py``) with given services and roles.

For tests of hub services that need a real hub and proxy but not the embedded stack
(Rucio, demo data, spawner hooks): the token service against a kube-apiserver, for one.
Everything listens on 127.0.0.1; the hub, the proxy and the managed services are one
process group, stopped together.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from lakehub.contract import ISSUER_SERVICE
from localstack import procs
from sitefile.state import chp_binary, venv_bin
from testkit.harness import free_ports

CONFIG = Path(__file__).resolve().parent / "minihub_config.py"
ADMIN_SERVICE = "test-admin"
ADMIN_SCOPES = ["admin:users", "admin:auth_state", "tokens", "list:users", "read:users"]


def new_token() -> str:
    return base64.b32encode(os.urandom(20)).decode().lower()


@dataclass
class MiniHub:
    services: list[dict] = field(default_factory=list)
    roles: list[dict] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    admin_token: str = field(default_factory=new_token)
    login: dict = field(default_factory=dict)  # minihub_config's authenticator parameters

    def __post_init__(self) -> None:
        # chosen before start, so that services can be told the hub's public URL
        self.port, self.hub_port, self.proxy_api_port = free_ports(3)

    def start(self, timeout: float = 90) -> MiniHub:
        self.folder = Path(tempfile.mkdtemp(prefix="lakehub-minihub-"))
        params = {
            "folder": str(self.folder),
            "port": self.port,
            "hub_port": self.hub_port,
            "proxy_api_port": self.proxy_api_port,
            "proxy_command": str(chp_binary()),
            "services": [
                *self.services,
                {"name": ADMIN_SERVICE, "api_token": self.admin_token},
            ],
            "roles": [
                *self.roles,
                {"name": "test-admin", "scopes": ADMIN_SCOPES, "services": [ADMIN_SERVICE]},
            ],
            **self.login,
        }
        (self.folder / "params.json").write_text(json.dumps(params))
        (self.folder / "params.json").chmod(0o600)
        env = {
            **os.environ,
            **self.env,
            "LAKEHUB_MINIHUB": str(self.folder / "params.json"),
            "JUPYTERHUB_CRYPT_KEY": os.urandom(32).hex(),
        }
        self.log = self.folder / "hub.log"
        try:
            procs.serve(
                "hub",
                [str(venv_bin("dev", "jupyterhub")), "-f", str(CONFIG)],
                ready_url=f"{self.url}/hub/api/",
                ready=lambda r: r.status_code == 200,
                what="JupyterHub",
                timeout=timeout,
                run_dir=self.folder,
                log_path=self.log,
                env=env,
                cwd=self.folder,
            )
        except BaseException:
            self.stop()  # nothing is left running when the start fails
            raise
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/hub/api",
            headers={"Authorization": f"token {self.admin_token}"},
            timeout=30,
        )

    def add_user(self, name: str, auth_state: dict | None, scopes: list[str]) -> str:
        """Create ``name`` with this auth state; returns a token of theirs with ``scopes``."""
        with self.admin() as api:
            api.post(f"/users/{name}").raise_for_status()
            if auth_state is not None:
                api.patch(f"/users/{name}", json={"auth_state": auth_state}).raise_for_status()
            r = api.post(f"/users/{name}/tokens", json={"scopes": scopes})
            r.raise_for_status()
            return r.json()["token"]

    def stop(self) -> None:
        procs.stop("hub", self.folder)  # its process group: the proxy and services too
        self._stop_orphaned_proxy()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _stop_orphaned_proxy(self) -> None:
        """A hub that exited while starting leaves its proxy running (nobody stops it):
        end the process its pid file names, if that is still this hub's proxy."""
        try:
            pid = int((self.folder / "proxy.pid").read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return
        if b"configurable-http-proxy" in cmdline:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def token_service(port: int, args: list[str], environment: dict[str, str]) -> dict:
    """The hub-managed ``lakehub-issuer`` service (hub_services.issuer) on ``port``."""
    return {
        "name": ISSUER_SERVICE,
        "url": f"http://127.0.0.1:{port}",
        "command": [
            sys.executable,
            "-m",
            "hub_services.issuer",
            f"--listen=127.0.0.1:{port}",
            *args,
        ],
        "environment": environment,
    }
