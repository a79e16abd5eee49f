"""Harness for tests and benchmarks: the real embedded stack on free loopback ports,
and code run inside a user's kernel.

The stack is started with the same functions `make up` uses (localstack.stack), in a
temporary state folder, and stopped by PID at the end, also when a test fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from localstack import postgres, procs, rucio_server, stack
from localstack.hubclient import HubAdmin
from sitefile import Site, load_site
from sitefile.state import REPO, StackPaths, venv_bin

LIGHT_SERVER = Path(__file__).with_name("light_server.py")


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def stack_folder() -> Path:
    """A fresh folder the per-user system accounts can traverse (pytest's tmp is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="lakehub-test-", dir="/tmp"))
    os.chmod(folder, 0o755)  # noqa: S103  homes inside are 0700
    return folder


def write_site(
    folder: Path,
    *,
    events: int = 5000,
    cache: dict | None = None,
    tokens: dict | None = None,
    courses: list | None = None,
    dask: dict | None = None,
    **local_overrides,
) -> Path:
    """A site file like examples/site.local.yaml, on free ports and with small demo data."""
    data = yaml.safe_load((REPO / "examples" / "site.local.yaml").read_text())
    hub, api, proxy, issuer, cache_port, rucio, gateway, database = free_ports(8)
    data["rucio"]["instances"][0]["rucio_host"] = f"http://127.0.0.1:{rucio}"
    data["notebooks"]["source"] = str(REPO / "notebooks")
    data["local"].update(
        hub_port=hub,
        hub_api_port=api,
        proxy_api_port=proxy,
        issuer_port=issuer,
        cache_port=cache_port,
        dask_gateway_port=gateway,
        rucio_database_port=database,
        **local_overrides,
    )
    data["local"]["demo_data"]["events"] = events
    data.setdefault("cache", {}).update(rule_poll_seconds=1, **(cache or {}))
    data.setdefault("tokens", {}).update(tokens or {})
    data["courses"] = courses or []  # the example's course only where a test asks for one
    data["dask"] = dask or {"enabled": False}  # a Dask Gateway only where a test asks for one
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class Stack:
    site_file: Path
    site: Site
    paths: StackPaths

    @property
    def url(self) -> str:
        assert self.site.local is not None
        return f"http://127.0.0.1:{self.site.local.hub_port}"

    @property
    def admin(self) -> HubAdmin:
        return HubAdmin(self.url, self.paths.admin_token.read_text().strip())

    @property
    def admin_token(self) -> str:
        return self.paths.admin_token.read_text().strip()

    def home(self, username: str) -> Path:
        return self.paths.homes / username

    def start_rucio(self) -> None:
        from hub_config.local import issuer_url

        stack.start_rucio(self.site, self.paths, issuer_url(self.site))

    def stop_rucio(self) -> None:
        rucio_server.stop(self.paths)

    def secrets_on_disk(self) -> list[str]:
        """Every password and private key the stack holds (for leak checks)."""
        found = [self.paths.rucio_root_password.read_text().strip(), self.admin_token]
        if postgres.password_file(self.paths).exists():  # Rucio's database, when PostgreSQL
            found.append(postgres.password(self.paths))
        if self.paths.demo_logins.exists():
            found += [ln.split(":", 1)[1] for ln in self.paths.demo_logins.read_text().split()]
        key = json.loads(self.paths.issuer_key.read_text())
        found += [key[k] for k in ("d", "p", "q")]
        return found


def start_stack(
    state: Path,
    site_file: Path,
    *,
    with_hooks: bool = True,
    mock_servers: bool = False,
    with_rucio: bool = True,
    single_user_env: str = "analysis",
    light_servers: bool = False,
) -> Stack:
    """The stack of ``site_file`` in ``state``.  ``mock_servers``: JupyterHub's test
    server instead of JupyterLab; ``light_servers``: :mod:`testkit.light_server`, lighter
    still (standard library only), for hundreds of servers at once."""
    paths = StackPaths(state)
    site = load_site(site_file)
    # No process-wide TMPDIR games: rucio-clients fixes its token folder when first
    # imported, and pytest's own temporary folders live under TMPDIR.  The servers get
    # their own TMPDIR through their environments (localstack.stack).
    stack.prepare_secrets(paths)
    s = Stack(site_file, site, paths)
    if with_rucio:
        s.start_rucio()
        stack.load_demo_data(site, paths, progress=False)
    stack.start_hub(
        site_file,
        paths,
        site,
        with_hooks=with_hooks,
        mock_servers=mock_servers,
        single_user_env=single_user_env,
        server_cmd=[str(venv_bin(single_user_env, "python")), str(LIGHT_SERVER)]
        if light_servers
        else None,
    )
    return s


@contextmanager
def temporary_stack(**site_options) -> Iterator[Stack]:
    """A whole stack in a fresh folder (``write_site`` options), removed afterwards."""
    folder = stack_folder()
    site_file = write_site(folder, **site_options)
    try:
        yield start_stack(folder / "state", site_file)
    finally:
        stop_stack(folder / "state")
        site_file.unlink(missing_ok=True)
        folder.rmdir()


def stop_stack(state: Path) -> None:
    """Stop every process by PID, remove the system accounts made for test users."""
    paths = StackPaths(state)
    try:
        stack.down(paths)
        stack.remove_system_users(paths)
    finally:
        shutil.rmtree(paths.state, ignore_errors=True)


def unique_user(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class KernelSession:
    """One kernel of a user's server, kept open for several executions (its variables
    survive between them), through the proxy as JupyterLab does."""

    def __init__(self, base_url: str, username: str, token: str):
        self.server = f"{base_url}/user/{username}"
        self.username = username
        self.headers = {"Authorization": f"token {token}"}
        self.kernel_id: str | None = None
        self.conn = None

    async def __aenter__(self) -> KernelSession:
        from tornado.httpclient import AsyncHTTPClient

        resp = await AsyncHTTPClient().fetch(
            f"{self.server}/api/kernels",
            method="POST",
            body="{}",
            headers=self.headers,
            request_timeout=60,
        )
        self.kernel_id = json.loads(resp.body)["id"]
        ws_url = self.server.replace("http://", "ws://") + f"/api/kernels/{self.kernel_id}/channels"
        self.conn = await websocket_connect(HTTPRequest(ws_url, headers=self.headers))
        return self

    async def __aexit__(self, *exc) -> None:
        from tornado.httpclient import AsyncHTTPClient

        if self.conn is not None:
            self.conn.close()
        try:
            await AsyncHTTPClient().fetch(
                f"{self.server}/api/kernels/{self.kernel_id}",
                method="DELETE",
                headers=self.headers,
                request_timeout=30,
            )
        except HTTPClientError:
            pass

    async def execute(self, code: str, limit_s: float = 120) -> str:
        """Run ``code``; return its stdout; raise AssertionError with the traceback."""
        msg_id = uuid.uuid4().hex
        await self.conn.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": self.username,
                        "session": msg_id,
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        out: list[str] = []
        error = None

        async def collect() -> None:
            nonlocal error
            while True:
                raw = await self.conn.read_message()
                if raw is None:
                    raise RuntimeError("kernel websocket closed")
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                if kind == "stream" and msg["content"]["name"] == "stdout":
                    out.append(msg["content"]["text"])
                elif kind == "error":
                    error = "\n".join(msg["content"]["traceback"])
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    return

        await asyncio.wait_for(collect(), limit_s)
        if error:
            raise AssertionError(f"code failed in {self.username}'s kernel:\n{error}")
        return "".join(out)


async def run_in_kernel(
    base_url: str, username: str, token: str, code: str, limit_s: float = 120
) -> str:
    """Execute ``code`` in a new kernel of ``username``'s server; return its stdout."""
    async with KernelSession(base_url, username, token) as kernel:
        return await kernel.execute(code, limit_s)


def user_tokens(s: Stack, username: str, scopes: list[str] | None = None) -> tuple[str, str]:
    """A hub user with a JupyterHub API token (cache access by default) and a Rucio JWT.

    Does for ``username`` what the spawn hook does (Rucio account bound to the hub
    identity, token signed by the hub's issuer) without starting a JupyterLab: tests of
    many concurrent users need the identities, not 20 servers on 2 cores.
    """
    from hub_config.local import CACHE_ACCESS, issuer_url
    from spawner_hooks.names import rucio_account
    from spawner_hooks.rucio import AdminCredentials, RucioAccounts
    from tokens.mint import Issuer, load_signing_key, oidc_identity

    s.admin.ensure_user(username)
    r = s.admin.api(
        "POST",
        f"/users/{username}/tokens",
        json={"scopes": scopes if scopes is not None else [CACHE_ACCESS], "note": "test"},
    )
    r.raise_for_status()
    hub_token = r.json()["token"]
    url = issuer_url(s.site)
    accounts = RucioAccounts(
        s.site.rucio.default,
        AdminCredentials("root", "root", s.paths.rucio_root_password),
        url,
    )
    try:
        asyncio.run(
            accounts.ensure_account(
                rucio_account(username), oidc_identity(username, url), "t@lakehub.invalid"
            )
        )
    finally:
        accounts.close()
    issuer = Issuer(url, load_signing_key(s.paths.issuer_key), s.site.tokens.lifetime_seconds)
    return hub_token, issuer.mint(username, int(time.time()))


def make_dataset(s: Stack, name: str, files: dict[str, bytes], *, lie_about=()) -> str:
    """Register a dataset of ``files`` on the demo RSE; return its DID.

    ``lie_about`` names files registered with a wrong adler32, as a corrupt replica
    would look.
    """
    from localstack.bootstrap import admin_client, checksums

    assert s.site.local is not None
    demo = s.site.local.demo_data
    folder = s.paths.rse / "demo" / demo.scope
    client = admin_client(s.site.rucio.default, s.paths)
    replicas = []
    for fname, data in files.items():
        path = folder / fname
        path.write_bytes(data)
        facts = checksums(path)
        adler = facts.adler32 if fname not in lie_about else f"{int(facts.adler32, 16) ^ 1:08x}"
        replicas.append(
            {"scope": demo.scope, "name": fname, "bytes": facts.bytes, "adler32": adler}
        )
    client.add_replicas(demo.rse, replicas)
    client.add_dataset(demo.scope, name)
    client.attach_dids(demo.scope, name, [{"scope": demo.scope, "name": f} for f in files])
    return f"{demo.scope}:{name}"


def cache_stats(s: Stack) -> dict:
    import httpx

    assert s.site.local is not None
    r = httpx.get(
        f"http://127.0.0.1:{s.site.local.cache_port}/api/stats",
        headers={"Authorization": f"token {s.admin_token}"},
        timeout=30,
    )
    r.raise_for_status()
    return r.json()


def is_running(s: Stack, name: str) -> bool:
    return procs.running(name, s.paths.run) is not None


def notebook_code(name: str) -> list[str]:
    """The code cells of one of notebooks/, in order (what a student runs top to bottom)."""
    cells = json.loads((REPO / "notebooks" / name).read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def gateway_url(s: Stack) -> str:
    """The stack's Dask Gateway API, straight at its proxy (as the hub reaches it)."""
    from hub_config.local import dask_gateway_api

    return dask_gateway_api(s.site)


def hub_token(s: Stack, username: str, scopes: list[str]) -> str:
    """A JupyterHub API token of ``username`` with exactly ``scopes`` (made by the admin)."""
    r = s.admin.api(
        "POST",
        f"/users/{username}/tokens",
        json={"scopes": scopes, "note": "test", "expires_in": 600},
    )
    r.raise_for_status()
    return r.json()["token"]


def add_to_group(s: Stack, group: str, users: list[str]) -> None:
    """Put ``users`` into the hub group ``group`` (made if missing) through the REST API,
    as an admin does by hand."""
    r = s.admin.api("POST", f"/groups/{group}")
    if r.status_code not in (201, 409):
        raise AssertionError(f"creating group {group}: HTTP {r.status_code} {r.text[:200]}")
    r = s.admin.api("POST", f"/groups/{group}/users", json={"users": users})
    if r.status_code != 200:
        raise AssertionError(f"adding {users} to {group}: HTTP {r.status_code} {r.text[:200]}")
