"""Where the embedded stack keeps its state.  One folder; `make clean` removes it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def lakehub_home() -> Path:
    """Environments, tools and state live here (default: ``<repo>/.lakehub``)."""
    return Path(os.environ.get("LAKEHUB_HOME") or REPO / ".lakehub").resolve()


@dataclass(frozen=True)
class StackPaths:
    state: Path

    @classmethod
    def default(cls) -> StackPaths:
        return cls(Path(os.environ.get("LAKEHUB_STATE") or lakehub_home() / "state").resolve())

    # secrets: folder 0700, files 0600
    @property
    def secrets(self) -> Path:
        return self.state / "secrets"

    @property
    def rucio_root_password(self) -> Path:
        return self.secrets / "rucio-root-password"

    @property
    def issuer_key(self) -> Path:
        return self.secrets / "issuer-key.json"

    @property
    def admin_token(self) -> Path:
        return self.secrets / "hub-admin-service-token"

    @property
    def cookie_secret(self) -> Path:
        return self.secrets / "jupyterhub_cookie_secret"

    @property
    def demo_logins(self) -> Path:
        return self.secrets / "demo-logins.txt"

    @property
    def cache(self) -> Path:
        return self.state / "cache"

    @property
    def cache_service(self) -> Path:
        return self.state / "cache-service"

    @property
    def dask_gateway(self) -> Path:
        return self.state / "dask-gateway"

    @property
    def dask_clusters(self) -> Path:
        """Working folders of the users' Dask clusters (each 0700, its user's)."""
        return self.state / "dask-clusters"

    @property
    def rucio(self) -> Path:
        return self.state / "rucio"

    @property
    def rse(self) -> Path:
        return self.state / "rse"

    @property
    def demo_staging(self) -> Path:
        return self.state / "demo-data"

    @property
    def hub(self) -> Path:
        return self.state / "hub"

    @property
    def homes(self) -> Path:
        return self.state / "homes"

    @property
    def system_users(self) -> Path:
        return self.state / "system-users.txt"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def logs(self) -> Path:
        return self.state / "logs"


def venv_bin(name: str, program: str) -> Path:
    return lakehub_home() / "venvs" / name / "bin" / program


def chp_binary() -> Path:
    """configurable-http-proxy from npm (not the PyPI package of the same name)."""
    return lakehub_home() / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
