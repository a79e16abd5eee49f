"""End to end: the real Rucio server, the real JupyterHub with configurable-http-proxy,
real single-user servers, code run inside the users' kernels.

Nothing is mocked.  The stack runs as root here, so each hub user's server runs under a
system account of its own (``lh-<account>``), as on a real small-course machine.
"""

from __future__ import annotations

import json
import os

import httpx
import pytest

from lakehub.contract import NOTICE_FILE as NOTICE_NAME
from lakehub.contract import SESSION_DIR, TOKEN_FILE
from localstack.procs import wait_until
from spawner_hooks.names import rucio_account
from testkit.harness import run_in_kernel, unique_user

pytestmark = pytest.mark.e2e

SESSION_PROBE = r"""
import json, os, stat, subprocess
from rucio.client import Client
from rucio.client.downloadclient import DownloadClient
import uproot

result = {}
cli = subprocess.run(["rucio", "whoami"], capture_output=True, text=True)
result["cli_rc"] = cli.returncode
result["cli_out"] = cli.stdout
client = Client()
result["account"] = client.whoami()["account"]
result["files"] = sorted(f["name"] for f in client.list_files("SCOPE", "DATASET"))
target = os.path.expanduser("~/data")
DownloadClient().download_dids([{"did": "SCOPE:" + result["files"][0], "base_dir": target}])
path = os.path.join(target, "SCOPE", result["files"][0])
with uproot.open(path) as f:
    result["entries"] = f["analysis"].num_entries
    result["branches"] = sorted(f["analysis"].keys())
token_file = os.environ["BEARER_TOKEN_FILE"]
result["token_mode"] = stat.S_IMODE(os.stat(token_file).st_mode)
result["token_owner_is_me"] = os.stat(token_file).st_uid == os.getuid()
result["uid"] = os.getuid()
result["env"] = dict(os.environ)
home = os.path.expanduser("~")
contents = []
for root, dirs, files in os.walk(home):
    for name in files:
        p = os.path.join(root, name)
        if p == token_file:
            continue
        try:
            with open(p, "rb") as fh:
                contents.append(fh.read().decode("utf-8", "replace"))
        except OSError:
            pass
result["home_text"] = "\n".join(contents)
print(json.dumps(result))
"""


def probe(local_stack, username: str) -> dict:
    demo = local_stack.site.local.demo_data
    code = SESSION_PROBE.replace("SCOPE", demo.scope).replace(
        "DATASET", demo.dataset_name("GamGam")
    )
    out = run_in_kernel_sync(local_stack, username, code)
    return json.loads(out.strip().splitlines()[-1])


def run_in_kernel_sync(local_stack, username: str, code: str, limit_s: float = 120) -> str:
    import asyncio

    return asyncio.run(
        run_in_kernel(local_stack.url, username, local_stack.admin_token, code, limit_s)
    )


def spawn(local_stack, username: str) -> None:
    local_stack.admin.ensure_user(username)
    local_stack.admin.start_server(username)


def test_session_works_as_the_users_own_rucio_account(local_stack):
    user = unique_user("alice")
    spawn(local_stack, user)
    result = probe(local_stack, user)
    demo = local_stack.site.local.demo_data

    # the CLI and the client library act as the user's own account, via the token
    assert result["account"] == rucio_account(user)
    assert result["cli_rc"] == 0 and rucio_account(user) in result["cli_out"]
    # the demo dataset is listed, and a file downloads and opens with uproot
    assert result["files"] == [f"demo.GamGam.data_{i:02d}.root" for i in range(1, demo.files + 1)]
    assert result["entries"] == demo.events
    assert "photon_pt" in result["branches"] and "photon_isTightID" in result["branches"]
    # the token is a private file, not an environment value
    assert result["token_mode"] == 0o600 and result["token_owner_is_me"]
    assert result["uid"] != 0, "a student's server must not run as root"
    env = result["env"]
    assert "BEARER_TOKEN" not in env and env["RUCIO_CONFIG"].startswith(str(local_stack.home(user)))
    # rucio-jupyterlab keeps its credentials database in the private home, not in /tmp
    assert env["RUCIO_CACHE_DIR"].startswith(str(local_stack.home(user)))
    # no password or hub secret anywhere in the session's environment or home
    env_text = json.dumps(env)
    for secret in local_stack.secrets_on_disk():
        assert secret not in env_text
        assert secret not in result["home_text"]
    # the hub log says how long each spawn step took, and never shows the token
    hub_log = (local_stack.paths.logs / "hub.log").read_text()
    ready = [ln for ln in hub_log.splitlines() if f"lakehub: {user} ready in " in ln]
    assert len(ready) == 1, ready
    for step in (f"rucio {local_stack.site.rucio.default.name}", "token", "session files"):
        assert f"{step} " in ready[0]
    token = (local_stack.home(user) / SESSION_DIR / TOKEN_FILE).read_text().strip()
    assert token and token not in hub_log


def test_rucio_jupyterlab_lists_the_dataset_as_the_user(local_stack):
    """The extension's own REST API (what its side panel calls) works without any setup."""
    user = unique_user("ext")
    spawn(local_stack, user)
    demo = local_stack.site.local.demo_data
    base = f"{local_stack.url}/user/{user}/rucio-jupyterlab"
    headers = {"Authorization": f"token {local_stack.admin_token}"}
    instances = httpx.get(f"{base}/instances", headers=headers, timeout=60).json()
    assert instances["auth_type"] == "oidc"
    assert [i["name"] for i in instances["instances"]] == [local_stack.site.rucio.default.name]
    check = httpx.get(
        f"{base}/oidc-auth-check", params={"namespace": "local"}, headers=headers, timeout=60
    ).json()
    assert check["success"] is True
    files = httpx.get(
        f"{base}/files",
        params={"namespace": "local", "did": f"{demo.scope}:{demo.dataset_name('GamGam')}"},
        headers=headers,
        timeout=60,
    )
    assert files.status_code == 200, files.text
    names = sorted(d["did"] for d in files.json())
    assert names == [
        f"{demo.scope}:demo.GamGam.data_{i:02d}.root" for i in range(1, demo.files + 1)
    ]


def test_the_dask_panels_server_side_answers_after_its_late_load(local_stack):
    """lakehub's extension loads dask-labextension's server side after the server started
    (its import is slow); the Dask panel's request for clusters must then succeed."""
    user = unique_user("dask")
    spawn(local_stack, user)
    url = f"{local_stack.url}/user/{user}/dask/clusters"
    headers = {"Authorization": f"token {local_stack.admin_token}"}

    def listed() -> bool:
        r = httpx.get(url, headers=headers, timeout=60)
        return r.status_code == 200 and r.json() == []

    wait_until(listed, timeout=60, what="the Dask panel's cluster list")
    hub_log = (local_stack.paths.logs / "hub.log").read_text()
    assert "could not load the server extension" not in hub_log


def test_one_student_cannot_read_another_students_token(local_stack):
    assert os.geteuid() == 0, "the stack isolates users only when the hub runs as root"
    alice, bob = unique_user("alice"), unique_user("bob")
    spawn(local_stack, alice)
    spawn(local_stack, bob)
    bob_token = local_stack.home(bob) / ".lakehub" / "rucio-token"
    assert bob_token.exists()
    out = run_in_kernel_sync(
        local_stack,
        alice,
        f"""
try:
    open({str(bob_token)!r}).read()
    print("READ")
except PermissionError:
    print("DENIED")
""",
    )
    assert out.strip() == "DENIED"


def test_notebooks_arrive_and_student_edits_survive_a_restart(local_stack):
    user = unique_user("nb")
    spawn(local_stack, user)
    notebook = local_stack.home(user) / local_stack.site.notebooks.target / "HyyAnalysis.ipynb"
    assert notebook.is_file()
    run_in_kernel_sync(
        local_stack,
        user,
        f"""
import json
p = {str(notebook)!r}
nb = json.load(open(p))
nb["cells"].append({{"cell_type": "markdown", "metadata": {{}}, "source": ["my notes"]}})
json.dump(nb, open(p, "w"))
""",
    )
    edited = notebook.read_text()
    local_stack.admin.stop_server(user)
    local_stack.admin.start_server(user)
    assert notebook.read_text() == edited
    assert "my notes" in notebook.read_text()


def test_spawn_succeeds_with_a_clear_note_when_rucio_is_down(local_stack):
    user = unique_user("down")
    local_stack.admin.ensure_user(user)
    local_stack.stop_rucio()
    try:
        local_stack.admin.start_server(user)
        notice = local_stack.home(user) / NOTICE_NAME
        assert notice.is_file()
        text = notice.read_text()
        assert "Rucio" in text and "did not answer" in text
        hub_log = (local_stack.paths.logs / "hub.log").read_text()
        assert f"Rucio setup for {user}" in hub_log
    finally:
        local_stack.start_rucio()
    # once Rucio is back, a restart sets the session up and the note goes away
    local_stack.admin.stop_server(user)
    local_stack.admin.start_server(user)
    wait_until(lambda: not notice.exists(), timeout=10, what="the notice to disappear")
    result = probe(local_stack, user)
    assert result["account"] == rucio_account(user)


RUN_NOTEBOOKS = r"""
import glob, json, os, subprocess
out = os.path.join(os.environ.get("TMPDIR", "/tmp"), "nbrun-" + os.environ["USER"])
result = {}
for nb in sorted(glob.glob(os.path.expanduser("~/FOLDER/*.ipynb"))):
    p = subprocess.run(["jupyter", "nbconvert", "--to", "notebook", "--execute",
                        "--output-dir", out, nb], capture_output=True, text=True)
    result[os.path.basename(nb)] = p.returncode if p.returncode == 0 else p.stderr[-500:]
print(json.dumps(result))
"""


@pytest.mark.notebooks
def test_every_atlas_notebook_runs_top_to_bottom_in_a_students_session(local_stack):
    """The student's own server executes each notebook as handed out: data come through
    the shared cache (lakehub.fetch), exactly as when a student presses "run all"."""
    user = unique_user("nbrun")
    spawn(local_stack, user)
    folder = local_stack.site.notebooks.target
    out = run_in_kernel_sync(
        local_stack, user, RUN_NOTEBOOKS.replace("FOLDER", folder), limit_s=900
    )
    result = json.loads(out.strip().splitlines()[-1])
    shipped = sorted(p.name for p in local_stack.site.notebooks.source.glob("*.ipynb"))
    assert sorted(result) == shipped and len(shipped) >= 4
    assert result == {name: 0 for name in shipped}
