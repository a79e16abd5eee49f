"""Dask Gateway on the real hub: the real dask-gateway-server (local-process backend) run
by the real JupyterHub as a managed service, real single-user servers and kernels, real
schedulers and workers started by the gateway as the users' own system accounts, data
read through the real shared cache from the real Rucio server.  Nothing is mocked.

The stack is started once for the module with Dask switched on, two workers per user
and a short idle timeout (IDLE seconds), so the idle test needs no long wait.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path

import httpx
import pytest

from hub_config.scopes import DASK_ACCESS
from localstack.procs import wait_until
from spawner_hooks.local_spawner import system_username
from testkit.harness import (
    KernelSession,
    gateway_url,
    hub_token,
    notebook_code,
    temporary_stack,
    unique_user,
)

pytestmark = pytest.mark.dask

IDLE = 20  # seconds: the gateway's idle timeout in this module's stack
WORKERS = 2


@pytest.fixture(scope="module")
def dask_stack():
    with temporary_stack(
        events=30_000,  # the notebook's fit wants the same statistics as tests/test_notebooks
        dask={"enabled": True, "max_workers_per_user": WORKERS, "idle_timeout_seconds": IDLE},
    ) as stack:
        yield stack


def spawned(stack, prefix: str) -> str:
    user = unique_user(prefix)
    stack.admin.ensure_user(user)
    stack.admin.start_server(user)
    return user


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def processes_of(account: str) -> list[int]:
    """PIDs of the processes running as ``account`` (read from /proc)."""
    import pwd

    uid = pwd.getpwnam(account).pw_uid
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        real_uid = next(line for line in status.splitlines() if line.startswith("Uid:"))
        if int(real_uid.split()[1]) == uid:
            found.append(int(entry.name))
    return found


def dask_processes_of(account: str) -> list[int]:
    """PIDs of the Dask schedulers and workers running as ``account``."""
    found = []
    for pid in processes_of(account):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        if any(Path(a.decode()).name in ("dask-scheduler", "dask-worker") for a in argv):
            found.append(pid)
    return found


def clusters(stack, token: str) -> dict:
    """The token's user's active (pending or running) clusters, by name."""
    r = httpx.get(
        f"{gateway_url(stack)}/api/v1/clusters/",
        headers={"Authorization": f"jupyterhub {token}"},
        timeout=30,
    )
    r.raise_for_status()
    return r.json()


def status(stack, token: str, name: str) -> str:
    r = httpx.get(
        f"{gateway_url(stack)}/api/v1/clusters/{name}",
        headers={"Authorization": f"jupyterhub {token}"},
        timeout=30,
    )
    r.raise_for_status()
    return r.json()["status"]


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


REPORT = r"""
import json
print(json.dumps({
    "source": data_source,
    "files": files,
    "local": mass_hist.values().tolist(),
    "dask": None if dask_hist is None else dask_hist.values().tolist(),
    "local_flow": cut_flow,
    "dask_flow": dask_cut_flow,
    "workers": dask_workers,
    "partitions": events.npartitions,
}))
"""


def test_the_hyy_notebook_on_two_gateway_workers_fills_the_same_histogram(dask_stack):
    """The H->yy notebook, top to bottom in a student's kernel: data through the shared
    cache, the single-process selection, then its optional Dask section, which creates a
    cluster with no arguments, scales it to 2 workers and runs the same selection with
    uproot.dask / dask-awkward.  Both histograms and cut flows must agree bin by bin."""
    user = spawned(dask_stack, "nb")

    async def run() -> dict:
        async with KernelSession(dask_stack.url, user, dask_stack.admin_token) as kernel:
            for code in notebook_code("HyyAnalysis.ipynb"):
                await kernel.execute(code, limit_s=300)
            return last_json(await kernel.execute(REPORT))

    result = asyncio.run(run())
    assert "shared cache" in result["source"]
    assert all(f.startswith(str(dask_stack.paths.cache)) for f in result["files"])
    assert result["workers"] == WORKERS
    assert result["partitions"] >= WORKERS
    assert sum(result["local"]) > 1000
    assert result["dask"] == result["local"]  # bin by bin, exact counts
    assert result["dask_flow"] == result["local_flow"]
    # the section's `with` block shut its cluster down
    assert clusters(dask_stack, hub_token(dask_stack, user, [DASK_ACCESS])) == {}


CREATE = f"""
import json
from dask_gateway import Gateway
cluster = Gateway().new_cluster()
cluster.scale({WORKERS})
client = cluster.get_client()
client.wait_for_workers({WORKERS}, timeout=300)

def who():
    import getpass, os
    path = os.environ["BEARER_TOKEN_FILE"]
    return {{"user": getpass.getuser(), "token_file": path, "token": open(path).read()}}

print(json.dumps({{"name": cluster.name, "workers": list(client.run(who).values())}}))
"""

INTRUDE = """
import json
from dask_gateway import Gateway
gateway = Gateway()
seen = [c.name for c in gateway.list_clusters()]
tries = {}
for action in ("connect", "stop_cluster"):
    try:
        getattr(gateway, action)("NAME")
        tries[action] = "allowed"
    except Exception as exc:
        tries[action] = f"{type(exc).__name__}: {exc}"
try:
    open("TOKEN_FILE").read()
    tries["token_file"] = "read"
except PermissionError:
    tries["token_file"] = "denied"
print(json.dumps({"seen": seen, "tries": tries}))
"""


def test_a_users_workers_carry_only_their_token_and_other_users_cannot_reach_the_cluster(
    dask_stack,
):
    """Two real users.  The first one's workers run as the first one's system account and
    read the first one's Rucio token (the file the session refreshes).  The second one
    neither sees the cluster in the gateway's list, nor connects to it, nor stops it, nor
    reads the token; a hub token of the second user without the gateway's access scope is
    refused by the gateway itself (it accepts only tokens allowed for its service)."""
    owner, other = spawned(dask_stack, "own"), spawned(dask_stack, "oth")

    async def run() -> tuple[dict, dict, list]:
        async with KernelSession(dask_stack.url, owner, dask_stack.admin_token) as kernel:
            made = last_json(await kernel.execute(CREATE, limit_s=300))
            token_file = made["workers"][0]["token_file"]
            code = INTRUDE.replace("NAME", made["name"]).replace("TOKEN_FILE", token_file)
            async with KernelSession(dask_stack.url, other, dask_stack.admin_token) as intruder:
                attempt = last_json(await intruder.execute(code, limit_s=120))
            still = await kernel.execute(
                "print(json.dumps([c.name for c in Gateway().list_clusters()]))"
            )
            await kernel.execute("cluster.shutdown()")
            return made, attempt, json.loads(still.strip().splitlines()[-1])

    made, attempt, still = asyncio.run(run())
    owner_home = dask_stack.home(owner)
    assert len(made["workers"]) == WORKERS
    for worker in made["workers"]:
        assert worker["user"] == system_username(owner)
        assert worker["token_file"] == str(owner_home / ".lakehub" / "rucio-token")
        assert claims(worker["token"])["sub"] == owner
    assert made["name"] not in attempt["seen"]
    assert attempt["tries"]["connect"] != "allowed"
    assert attempt["tries"]["stop_cluster"] != "allowed"
    assert "Forbidden" in attempt["tries"]["stop_cluster"]
    assert attempt["tries"]["token_file"] == "denied"
    assert still == [made["name"]]  # the intruder's stop did nothing

    unscoped = hub_token(dask_stack, other, ["read:users!user"])
    r = httpx.get(
        f"{gateway_url(dask_stack)}/api/v1/clusters/",
        headers={"Authorization": f"jupyterhub {unscoped}"},
        timeout=30,
    )
    assert r.status_code in (401, 403)


def test_a_cluster_left_running_stops_with_the_users_server(dask_stack):
    """A real cluster left behind on purpose (shutdown_on_close=False, as a kernel that
    crashed would leave it) is stopped by the hub's post-stop hook when the server stops:
    the gateway lists it as stopped, no process of the user's account is left, and the
    hub log names the cluster the hook stopped."""
    user = spawned(dask_stack, "stop")
    code = (
        "from dask_gateway import Gateway\n"
        "cluster = Gateway().new_cluster(shutdown_on_close=False)\n"
        "cluster.scale(1)\n"
        "cluster.get_client().wait_for_workers(1, timeout=300)\n"
        "print(cluster.name)\n"
    )

    async def run() -> str:
        async with KernelSession(dask_stack.url, user, dask_stack.admin_token) as kernel:
            return (await kernel.execute(code, limit_s=300)).strip().splitlines()[-1]

    name = asyncio.run(run())
    token = hub_token(dask_stack, user, [DASK_ACCESS])
    assert status(dask_stack, token, name) == "RUNNING"
    assert len(dask_processes_of(system_username(user))) >= 2  # the scheduler and a worker
    started = time.monotonic()
    dask_stack.admin.stop_server(user)
    wait_until(
        lambda: status(dask_stack, token, name) == "STOPPED",
        timeout=60,
        what=f"{user}'s cluster to stop with the server",
    )
    assert time.monotonic() - started < IDLE  # not the idle timeout
    wait_until(
        lambda: not processes_of(system_username(user)),
        timeout=30,
        what=f"the processes of {system_username(user)} to end",
    )
    log = (dask_stack.paths.logs / "hub.log").read_text()
    assert f"stopped {user}'s Dask cluster(s) {name}" in log


def test_an_idle_cluster_is_shut_down_by_the_gateway(dask_stack):
    """A cluster created through the gateway's REST API (as dask-gateway's client does)
    that never gets work is shut down by its scheduler after the configured idle timeout
    (IDLE seconds), while the user's server keeps running."""
    user = spawned(dask_stack, "idle")
    token = hub_token(dask_stack, user, [DASK_ACCESS])
    r = httpx.post(
        f"{gateway_url(dask_stack)}/api/v1/clusters/",
        json={"cluster_options": {}},
        headers={"Authorization": f"jupyterhub {token}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    name = r.json()["name"]
    created = time.monotonic()
    wait_until(
        lambda: status(dask_stack, token, name) == "RUNNING",
        timeout=120,
        what=f"cluster {name} to run",
    )
    wait_until(
        lambda: status(dask_stack, token, name) == "STOPPED",
        timeout=IDLE * 3,
        what=f"idle cluster {name} to stop",
    )
    assert time.monotonic() - created >= IDLE * 0.9
    assert dask_stack.admin.user(user)["servers"][""]["ready"]  # the server is untouched
    wait_until(
        lambda: not dask_processes_of(system_username(user)),
        timeout=30,
        what=f"the scheduler of {system_username(user)} to end",
    )


def test_one_cluster_per_user(dask_stack):
    """The site's worker limit is per user because each user runs one cluster at a time:
    the gateway refuses a second one with a message saying what to do."""
    user = spawned(dask_stack, "one")
    token = hub_token(dask_stack, user, [DASK_ACCESS])
    headers = {"Authorization": f"jupyterhub {token}"}
    url = f"{gateway_url(dask_stack)}/api/v1/clusters/"
    first = httpx.post(url, json={"cluster_options": {}}, headers=headers, timeout=30)
    assert first.status_code == 201, first.text
    second = httpx.post(url, json={"cluster_options": {}}, headers=headers, timeout=30)
    assert second.status_code == 422
    assert "already has a running cluster" in second.text
    httpx.delete(f"{url}{first.json()['name']}", headers=headers, timeout=30).raise_for_status()


assert os.sep == "/"  # /proc and system accounts: Linux only
