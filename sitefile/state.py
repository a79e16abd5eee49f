"""Where a local site keeps its state (the embedded stack of `make up`, and the tests'
stacks): secrets, the Rucio and hub databases, homes, the cache, course mirrors.  One
folder; `make clean` removes it.  Also where the environments and tools live
(``$LAKEHUB_HOME``, by default ``<repo>/.lakehub``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lakehub.contract import DASK_SERVICE, ENV_HOME, ENV_STATE, ISSUER_KEY_KEY

REPO = Path(__file__).resolve().parent.parent


def lakehub_home() -> Path:
    """Environments, tools and state live here (default: ``<repo>/.lakehub``)."""
    return Path(os.environ.get(ENV_HOME) or REPO / ".lakehub").resolve()


@dataclass(frozen=True)
class StackPaths:
    state: Path

    @classmethod
    def default(cls) -> StackPaths:
        return cls(Path(os.environ.get(ENV_STATE) or lakehub_home() / "state").resolve())

    # secrets: folder 0700, files 0600
    @property
    def secrets(self) -> Path:
        return self.state / "secrets"

    @property
    def rucio_root_password(self) -> Path:
        return self.secrets / "rucio-root-password"

    @property
    def issuer_key(self) -> Path:
        return self.secrets / ISSUER_KEY_KEY

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
        return self.state / DASK_SERVICE

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
    def system_groups(self) -> Path:
        """The system groups made for courses' shared folders (for `make clean`)."""
        return self.state / "system-groups.txt"

    @property
    def shared_courses(self) -> Path:
        """The courses' shared folders (spawner_hooks.course_folders), one per course."""
        return self.state / "courses-shared"

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
