"""lakehub's container images, built by scripts/build-images.sh and inspected while they run.

Three images, each built (or reused: the script is idempotent) by a fixture of its own:

- singleuser: JupyterLab started in a container with a random token; the account, the
  Python packages against requirements/analysis.txt, the Rucio client, the Jupyter
  extensions, the notebooks, and the absence of secrets and hub-side code.
- hub (FROM the z2jh hub image, or here FROM the hub-base equivalent built by the script):
  started the way the z2jh chart starts it (image entrypoint and command, config file at
  /usr/local/etc/jupyterhub/jupyterhub_config.py, uid/gid 1000, all capabilities dropped,
  a volume at /srv/jupyterhub that only group 1000 may write, as fsGroup makes it)
  behind the proxy image; then lakehub's hooks import, the versions are those of
  requirements/hub.txt, the database lands on the volume.
- configurable-http-proxy: started with the chart's command line and the token in its
  environment; its REST API answers with the token only, its public port answers.

The chart's ports are fixed (8000, 8001, 8081); here the containers share the host's
network (no bridge or iptables changes) and every port is a free one instead. The test
config for the hub replaces the chart's (which needs a Kubernetes API); nothing else is
mocked. Containers have random names and are removed by name at the end, also when a step
fails. Where podman cannot run, the tests fail with the reason; they are never skipped.
A cold build takes several minutes (debootstrap, wheelhouses, images), hence the timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

from lakehub import jupyter_ext

pytestmark = [pytest.mark.image, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(os.environ.get("LAKEHUB_HOME", ROOT / ".lakehub"))
ANALYSIS_LOCK = ROOT / "requirements" / "analysis.txt"
HUB_LOCK = ROOT / "requirements" / "hub.txt"
HUB_PIP_ALLOW = ROOT / "images" / "hub" / "pip-check-allow.txt"
PROXY_PACKAGE = ROOT / "images" / "proxy" / "package.json"
NOTEBOOKS = ROOT / "notebooks"
VENV = "/opt/lakehub/venv"
# what the image may hold beyond the lock: the venv's own installer
TOOLING = {"pip", "setuptools", "wheel"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The chart's container settings (z2jh 4.4.0 values: hub.containerSecurityContext,
# proxy.chp.containerSecurityContext) as podman flags.
HUB_SECURITY = ["--user", "1000:1000", "--cap-drop=all", "--security-opt=no-new-privileges"]
PROXY_SECURITY = ["--user", "65534:65534", "--cap-drop=all", "--security-opt=no-new-privileges"]
SECRETISH = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", re.I)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if m:
            pins[norm(m.group(1))] = m.group(2)
    return pins


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chp_version() -> str:
    return json.loads(PROXY_PACKAGE.read_text())["dependencies"]["configurable-http-proxy"]


def chart_proxy_command(public: int, api: int, hub: int) -> list[str]:
    """The proxy container's command in z2jh 4.4.0 (templates/proxy/deployment.yaml,
    plain HTTP), with free ports instead of 8000, 8001 and the hub Service's 8081."""
    target = f"http://127.0.0.1:{hub}"
    return [
        "configurable-http-proxy",
        "--ip=",
        "--api-ip=",
        f"--api-port={api}",
        f"--default-target={target}",
        f"--error-target={target}/hub/error",
        f"--port={public}",
    ]


# ---------------------------------------------------------------- building and the engine


@dataclass(frozen=True)
class Built:
    engine: str
    containers_conf: str
    image: str
    entry: dict


def build(what: str, entry: str | None = None) -> Built:
    """Run `scripts/build-images.sh WHAT`; return its build.json entry for the image."""
    env = {**os.environ, "LAKEHUB_HOME": str(HOME)}
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-images.sh"), what],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/build-images.sh {what} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    info = json.loads((HOME / "images" / "build.json").read_text())
    item = info["images"][entry or what]
    print(f"build-images.sh {what}: {time.monotonic() - started:.1f} s, {item}")
    return Built(info["engine"], info["containers_conf"], item["image"], item)


@contextlib.contextmanager
def engine_env(built: Built) -> Iterator[str]:
    """The engine configuration the script used (CONTAINERS_CONF), also for testinfra."""
    with pytest.MonkeyPatch.context() as mp:
        if built.containers_conf:
            mp.setenv("CONTAINERS_CONF", built.containers_conf)
        yield built.engine


def _engine(engine: str, *args: str, check: bool = False, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([engine, *args], capture_output=True, text=True, check=check, **kw)


def _config(engine: str, image: str) -> dict:
    out = _engine(engine, "image", "inspect", image, check=True).stdout
    return json.loads(out)[0]["Config"]


def _get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Authorization": f"token {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _wait_for(engine: str, name: str, port: int, path: str, token: str | None = None) -> None:
    """Poll http://127.0.0.1:PORT/PATH until it answers 200; fail with the container's
    logs when the container stops or after 120 s."""
    deadline = time.monotonic() + 120
    while True:
        try:
            if _get(port, path, token)[0] == 200:
                return
        except OSError:
            pass
        state = _engine(engine, "inspect", "--format", "{{.State.Status}}", name)
        if state.stdout.strip() not in ("running", "created", "configured"):
            logs = _engine(engine, "logs", name)
            pytest.fail(f"{name} exited ({state.stdout.strip()}):\n{logs.stderr[-4000:]}")
        if time.monotonic() > deadline:
            logs = _engine(engine, "logs", name)
            pytest.fail(f"{name}: no answer on port {port}{path} in 120 s:\n{logs.stderr[-4000:]}")
        time.sleep(0.5)


def _start(engine: str, name: str, *args: str, env: dict | None = None) -> None:
    proc = _engine(engine, "run", "-d", "--name", name, "--network=host", *args, env=env)
    if proc.returncode != 0:
        pytest.fail(f"{engine} cannot start {name}: {proc.stderr.strip()}")


@dataclass(frozen=True)
class Running:
    engine: str
    image: str
    name: str
    port: int
    token: str


# ---------------------------------------------------------------- singleuser


@pytest.fixture(scope="module")
def singleuser():
    """JupyterLab in a container of the single-user image, on 127.0.0.1:<free port>."""
    built = build("singleuser")
    with engine_env(built) as engine:
        name = f"lakehub-image-test-{secrets.token_hex(4)}"
        port = free_port()
        token = secrets.token_hex(16)
        try:
            _start(
                engine,
                name,
                built.image,
                "jupyter",
                "lab",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}",
            )
            _wait_for(engine, name, port, "/api/status", token)
            yield Running(engine, built.image, name, port, token)
        finally:
            _engine(engine, "rm", "--force", name)


@pytest.fixture(scope="module")
def su_host(singleuser):
    return testinfra.get_host(f"{singleuser.engine}://{singleuser.name}")


@pytest.fixture(scope="module")
def su_root(singleuser):
    return testinfra.get_host(f"{singleuser.engine}://root@{singleuser.name}")


def test_server_answers_with_token_only(singleuser):
    status, body = _get(singleuser.port, "/api/status", singleuser.token)
    assert status == 200
    assert "started" in json.loads(body)
    status, _ = _get(singleuser.port, "/api/contents", None)
    assert status == 403


def test_extensions_loaded_by_the_running_server(singleuser):
    logs = _engine(singleuser.engine, "logs", singleuser.name)
    text = logs.stdout + logs.stderr
    for ext in ("lakehub", "rucio_jupyterlab.server", "jupyterlab"):
        assert f"{ext} | extension was successfully loaded" in text, text[-4000:]


def test_singleuser_image_configuration(singleuser):
    out = _engine(singleuser.engine, "image", "inspect", singleuser.image, check=True).stdout
    config = json.loads(out)[0]["Config"]
    # numeric, so Kubernetes can verify runAsNonRoot
    assert config["User"] == "1000:100"
    assert config["WorkingDir"] == "/home/jovyan"
    assert config["Cmd"] == ["jupyterhub-singleuser"]
    assert "8888/tcp" in config["ExposedPorts"]
    secretish = [e for e in config["Env"] if re.search(r"TOKEN|SECRET|PASSWORD|KEY", e, re.I)]
    assert secretish == []


def test_runs_as_jovyan(su_host):
    user = su_host.user()
    assert (user.name, user.uid, user.gid, user.home) == ("jovyan", 1000, 100, "/home/jovyan")
    assert su_host.check_output("echo $HOME") == "/home/jovyan"
    # the server itself (PID 1 of the container) runs as uid 1000
    status = su_host.file("/proc/1/status").content_string
    assert re.search(r"^Uid:\s+1000\s+1000\s", status, re.M), status
    assert su_host.file("/home/jovyan").user == "jovyan"


def test_python_packages_equal_the_lock(su_host):
    pins = pinned(ANALYSIS_LOCK)
    assert len(pins) > 100
    installed = {
        norm(n): v["version"]
        for n, v in su_host.pip.get_packages(pip_path=f"{VENV}/bin/pip").items()
    }
    wrong = {n: (v, installed.get(n)) for n, v in pins.items() if installed.get(n) != v}
    assert wrong == {}, "pinned -> installed"
    extra = sorted(set(installed) - set(pins) - TOOLING)
    assert extra == []
    assert su_host.pip.check(pip_path=f"{VENV}/bin/pip").rc == 0
    assert su_host.check_output("command -v python") == f"{VENV}/bin/python"


def test_rucio_client(su_host):
    out = su_host.check_output("rucio --version")
    assert pinned(ANALYSIS_LOCK)["rucio-clients"] in out


def test_a_terminal_finds_the_analysis_tools(su_host):
    """JupyterLab opens terminals as login shells (``bash -l``) when the server has no
    terminal, as in a pod; Debian's /etc/profile resets PATH there.  Found on a real
    node: ``rucio`` was "command not found" in a student's terminal."""
    assert su_host.check_output("bash -lc 'command -v rucio'") == f"{VENV}/bin/rucio"
    assert su_host.check_output("bash -lc 'command -v python'") == f"{VENV}/bin/python"


def test_jupyter_extensions_enabled(su_host):
    cmd = su_host.run("jupyter server extension list")
    assert cmd.rc == 0, cmd.stderr
    text = ANSI.sub("", cmd.stdout + cmd.stderr)
    assert re.search(r"^\s+rucio_jupyterlab\S*\s+enabled", text, re.M), text
    assert re.search(r"^\s+lakehub\s+enabled", text, re.M), text
    assert re.search(r"^\s+lakehub\s+OK", text, re.M), text

    cmd = su_host.run("jupyter labextension list")
    assert cmd.rc == 0, cmd.stderr
    text = ANSI.sub("", cmd.stdout + cmd.stderr)
    version = pinned(ANALYSIS_LOCK)["rucio-jupyterlab"]
    assert re.search(rf"rucio-jupyterlab v{re.escape(version)}\s+enabled\s+OK", text), text

    assert (
        su_host.check_output("jupyterhub-singleuser --version")
        == pinned(ANALYSIS_LOCK)["jupyterhub"]
    )


def _page_config(html: bytes) -> dict:
    found = re.search(
        rb'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S
    )
    assert found, html[:2000]
    return json.loads(found.group(1))


def test_the_rucio_panel_icon_font_is_served_by_the_server(singleuser, su_host):
    """JupyterLab links custom.css; lakehub's extension serves it and the font of the
    Debian package beside it, so no outside font service is needed."""
    wanted = (ROOT / "images" / "singleuser" / "debian-packages.txt").read_text()
    for name in {w for line in wanted.splitlines() for w in line.split("#")[0].split()}:
        assert su_host.package(name).is_installed, name
    assert jupyter_ext.ICON_FONT_PACKAGE in wanted
    status, page = _get(singleuser.port, "/lab", singleuser.token)
    assert status == 200
    assert b"custom/custom.css" in page
    status, css = _get(singleuser.port, "/custom/custom.css")
    assert status == 200 and b'"Material Icons"' in css
    for name in jupyter_ext.ICON_FONT_FILES:
        status, font = _get(singleuser.port, f"/custom/{name}")
        assert status == 200, name
        assert font[:4] in (b"wOF2", b"wOFF"), name


def test_no_news_prompt_for_any_user(singleuser):
    """JupyterLab's announcements plugin (the "official Jupyter news?" question and the
    update check) is off in the environment's page config, for every account."""
    status, page = _get(singleuser.port, "/lab", singleuser.token)
    assert status == 200
    disabled = _page_config(page)["disabledExtensions"]
    assert "@jupyterlab/apputils-extension:announcements" in disabled


def test_the_extension_manager_lists_and_never_searches_pypi(singleuser):
    """The Extension Manager shows what the image holds and offers no installs: its
    PyPI mode would search pypi.org from the server (failing on offline campuses) and
    builds an HTTP client at every server start."""
    status, page = _get(singleuser.port, "/lab", singleuser.token)
    assert status == 200
    manager = _page_config(page)["extensionManager"]
    assert manager["name"] == "read-only" and manager["can_install"] is False, manager


def test_notebooks_shipped(su_host):
    expected = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert expected
    for name in expected:
        f = su_host.file(f"/opt/lakehub/notebooks/{name}")
        assert f.is_file
        assert f.mode & 0o444 == 0o444, oct(f.mode)
        want = hashlib.sha256((NOTEBOOKS / name).read_bytes()).hexdigest()
        assert f.sha256sum == want, name


def test_analysis_stack_imports(su_host):
    code = "import uproot, awkward, hist, mplhep, vector, lmfit, lakehub.jupyter_ext; print('ok')"
    assert su_host.check_output("python -c %s", code) == "ok"


# Runs inside the container as root: real PEM private-key blocks anywhere, and for each
# whether a package shipped it: a Python distribution's RECORD or a Debian package's file
# list (test fixtures and self-test keys, e.g. tornado's test.key, GnuTLS's GOST key).
_KEY_SCAN = r"""
import json, os, re, sysconfig
from pathlib import Path
pem = re.compile(
    rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n(?:[A-Za-z-]+: [^\n]*\r?\n)*\s*"
    rb"(?:[A-Za-z0-9+/=]{16,}\r?\n){2,}"
)
site = Path(sysconfig.get_path("purelib"))
recorded = set()
for rec in site.glob("*.dist-info/RECORD"):
    for line in rec.read_text().splitlines():
        recorded.add(str((site / line.rsplit(",", 2)[0]).resolve()))
for lst in Path("/var/lib/dpkg/info").glob("*.list"):
    for line in lst.read_text().splitlines():
        recorded.add(str(Path(line).resolve()))
hits = []
for top, dirs, files in os.walk("/"):
    if top == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for f in files:
        p = os.path.join(top, f)
        try:
            if os.path.islink(p) or os.path.getsize(p) > 8_000_000:
                continue
            data = open(p, "rb").read()
        except OSError:
            continue
        if pem.search(data):
            hits.append({"path": p, "packaged": str(Path(p).resolve()) in recorded})
print(json.dumps(hits))
"""


def test_no_secrets_or_hub_code(su_root):
    found = su_root.check_output(
        "find / -xdev \\( -name .lakehub -o -name 'id_rsa*' -o -name 'id_ed25519*' "
        "-o -name 'signing-key*' -o -name localstack \\) -print"
    )
    assert found == ""
    hits = json.loads(su_root.check_output(f"{VENV}/bin/python -c %s", _KEY_SCAN))
    unpackaged = [h["path"] for h in hits if not h["packaged"]]
    assert unpackaged == [], "private keys that no package shipped"
    print("private keys shipped inside packages:", [h["path"] for h in hits])
    code = (
        "import importlib.util as u; "
        "print([m for m in ('hub_config', 'spawner_hooks', 'hub_services', 'sitefile', "
        "'tokens', 'courses', 'localstack', 'testkit') "
        "if u.find_spec(m)])"
    )
    assert su_root.check_output(f"{VENV}/bin/python -c %s", code) == "[]"
    assert su_root.run("test -e /opt/lakehub/session/lakehub/jupyter_ext.py").rc == 0


# ---------------------------------------------------------------- hub and proxy

HUB_TEST_CONFIG = """\
# In place of the chart's jupyterhub_config.py (which needs a Kubernetes API): the hub
# behind an external proxy, as in the chart, on this test's free ports.
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub}"
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
c.JupyterHub.cleanup_servers = False
"""


@dataclass(frozen=True)
class Stack:
    engine: str
    hub_image: str
    hub_base: str
    proxy_image: str
    hub: str
    proxy: str
    public: int
    api: int
    token: str
    volume: Path


@pytest.fixture(scope="module")
def hub_stack(tmp_path_factory):
    """The hub image started as the chart starts it, behind a container of the proxy image.

    The volume at /srv/jupyterhub is a fresh folder owned by root with group 1000 and mode
    2770, which is how fsGroup 1000 leaves a new PersistentVolume: only the group may write.
    """
    if os.geteuid() != 0:
        pytest.fail("the hub volume must be handed to gid 1000 (as fsGroup does): run as root")
    hub = build("hub")
    proxy = build("proxy")
    with engine_env(hub) as engine:
        work = tmp_path_factory.mktemp("hub")
        volume = work / "srv"
        volume.mkdir()
        os.chown(volume, 0, 1000)
        volume.chmod(0o2770)
        public, api, hub_port = free_port(), free_port(), free_port()
        config = work / "jupyterhub_config.py"
        config.write_text(HUB_TEST_CONFIG.format(public=public, api=api, hub=hub_port))
        config.chmod(0o644)
        token = secrets.token_hex(32)
        env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": token}
        tag = secrets.token_hex(4)
        hub_name, proxy_name = f"lakehub-hub-test-{tag}", f"lakehub-chp-test-{tag}"
        command = chart_proxy_command(public, api, hub_port)
        try:
            _start(
                engine,
                proxy_name,
                *PROXY_SECURITY,
                "-e",
                "CONFIGPROXY_AUTH_TOKEN",
                "--entrypoint",
                command[0],
                proxy.image,
                *command[1:],
                env=env,
            )
            _wait_for(engine, proxy_name, public, "/_chp_healthz")
            # the image's own entrypoint and command, as the chart's default args
            _start(
                engine,
                hub_name,
                *HUB_SECURITY,
                "-e",
                "CONFIGPROXY_AUTH_TOKEN",
                "-e",
                "PYTHONUNBUFFERED=1",
                "-v",
                f"{config}:/usr/local/etc/jupyterhub/jupyterhub_config.py:ro",
                "-v",
                f"{volume}:/srv/jupyterhub",
                hub.image,
                env=env,
            )
            _wait_for(engine, hub_name, public, "/hub/health")
            yield Stack(
                engine,
                hub.image,
                hub.entry["base"],
                proxy.image,
                hub_name,
                proxy_name,
                public,
                api,
                token,
                volume,
            )
        finally:
            for name in (hub_name, proxy_name):
                _engine(engine, "rm", "--force", "--time", "10", name)


@pytest.fixture(scope="module")
def hub_host(hub_stack):
    return testinfra.get_host(f"{hub_stack.engine}://{hub_stack.hub}")


def _routes(port: int, token: str) -> dict:
    status, body = _get(port, "/api/routes", token)
    assert status == 200, body
    return json.loads(body)


def test_hub_image_configuration(hub_stack):
    config = _config(hub_stack.engine, hub_stack.hub_image)
    # as quay.io/jupyterhub/k8s-hub:4.4.0 sets them (images/hub/Dockerfile at that tag)
    assert config["User"] == "jovyan"
    assert config["WorkingDir"] == "/srv/jupyterhub"
    assert config["Entrypoint"] == ["tini", "--"]
    assert config["Cmd"] == [
        "jupyterhub",
        "--config",
        "/usr/local/etc/jupyterhub/jupyterhub_config.py",
    ]
    assert "8081/tcp" in config["ExposedPorts"]
    assert [e for e in config["Env"] if SECRETISH.search(e.split("=")[0])] == []


def test_hub_answers_through_the_proxy(hub_stack):
    status, body = _get(hub_stack.public, "/hub/api")
    assert status == 200
    assert json.loads(body)["version"] == pinned(HUB_LOCK)["jupyterhub"]
    # the hub put its own route into the proxy through the API, with the shared token
    deadline = time.monotonic() + 60
    while not _routes(hub_stack.api, hub_stack.token).get("/", {}).get("hub"):
        assert time.monotonic() < deadline, _routes(hub_stack.api, hub_stack.token)
        time.sleep(0.5)


def test_hub_database_on_the_volume(hub_stack):
    db = hub_stack.volume / "jupyterhub.sqlite"
    secret = hub_stack.volume / "jupyterhub_cookie_secret"
    assert db.is_file() and db.stat().st_uid == 1000
    assert secret.is_file() and secret.stat().st_uid == 1000
    assert secret.stat().st_mode & 0o077 == 0, oct(secret.stat().st_mode)
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert {"users", "servers", "api_tokens"} <= tables


def test_hub_runs_as_uid_1000(hub_host):
    assert hub_host.user().uid == 1000
    assert hub_host.check_output("id -g") == "1000"
    procs = hub_host.check_output("ps -eo pid=,uid=,gid=,args=").splitlines()
    by_pid = {int(p.split()[0]): p.split(None, 3)[1:] for p in procs}
    assert by_pid[1][2].startswith("tini --"), by_pid[1]
    hubs = [v for v in by_pid.values() if "jupyterhub --config" in v[2] and "tini" not in v[2]]
    assert hubs and all(v[:2] == ["1000", "1000"] for v in hubs), by_pid


def test_hub_imports_lakehub(hub_host):
    code = (
        "import hub_config.kubernetes, spawner_hooks.hooks, hub_services.issuer, "
        "hub_services.cache.app, dask_gateway_server.backends.kubernetes; print('ok')"
    )
    assert hub_host.check_output("python3 -c %s", code) == "ok"
    # the code lakehub's local stack needs stays out of the image
    code = (
        "import importlib.util as u; "
        "print([m for m in ('localstack', 'testkit', 'tests') if u.find_spec(m)])"
    )
    assert hub_host.check_output("python3 -c %s", code) == "[]"


def test_hub_versions_are_the_hub_lock(hub_host):
    pins = pinned(HUB_LOCK)
    assert hub_host.check_output("jupyterhub --version") == pins["jupyterhub"]
    installed = {
        norm(n): v["version"]
        for n, v in hub_host.pip.get_packages(pip_path="/usr/local/bin/pip").items()
    }
    for name in (
        "jupyterhub",
        "jupyterhub-kubespawner",
        "oauthenticator",
        "dask-gateway-server",
        "rucio-clients",
    ):
        assert installed.get(name) == pins[name], name
    check = hub_host.run("/usr/local/bin/pip check")
    allowed = {
        line for line in HUB_PIP_ALLOW.read_text().splitlines() if line and not line.startswith("#")
    }
    reported = {
        line for line in check.stdout.splitlines() if line and not line.startswith("No broken")
    }
    assert reported <= allowed, reported - allowed


def test_hub_and_sessions_run_jupyterhub_past_the_5_5_1_security_release(hub_host, su_host):
    """Filtered instructor roles (GHSA-69wv-m5fw-2fhp) and sharing (GHSA-c4gm-pwx9-9w8j)
    were fixed in 5.5.1; z2jh 4.4.0's base carries 5.5.0, so the hub image must upgrade
    it, and the analysis image's single-user side must be as new."""
    from packaging.version import Version

    for host, command in (
        (hub_host, "jupyterhub --version"),
        (su_host, "jupyterhub-singleuser --version"),
    ):
        version = Version(host.check_output(command))
        assert version >= Version("5.5.1") and version.major == 5, (command, version)


def test_hub_base_is_the_z2jh_lock(hub_stack):
    """The hub's base (k8s-hub:4.4.0, or hub-base built here) holds exactly z2jh 4.4.0's
    Python lock and the Debian packages of its Dockerfile."""
    out = _engine(
        hub_stack.engine,
        "run",
        "--rm",
        "--network=none",
        "--entrypoint",
        "sh",
        hub_stack.hub_base,
        "-c",
        "pip list --format=json && dpkg-query -W -f='${Package} ${Status}\\n'",
        check=True,
    ).stdout
    listing, _, dpkg = out.partition("\n")
    installed = {norm(p["name"]): p["version"] for p in json.loads(listing)}
    lock = pinned(ROOT / "images" / "hub-base" / "requirements.txt")
    assert len(lock) > 80
    assert {n: v for n, v in lock.items() if installed.get(n) != v} == {}
    # upstream's default image also has py-spy
    assert set(installed) - set(lock) <= TOOLING | {"py-spy"}
    debs = {line.split()[0] for line in dpkg.splitlines() if line.endswith("ok installed")}
    wanted = (ROOT / "images" / "hub-base" / "debian-packages.txt").read_text()
    names = {w for line in wanted.splitlines() for w in line.split("#")[0].split()}
    assert names and names <= debs, names - debs


@dataclass(frozen=True)
class Proxy:
    engine: str
    image: str
    name: str
    public: int
    api: int
    target: int
    token: str


@pytest.fixture(scope="module")
def proxy():
    """A container of the proxy image started with the chart's command and token variable;
    its default target is a free port where nothing listens."""
    built = build("proxy")
    with engine_env(built) as engine:
        public, api, target = free_port(), free_port(), free_port()
        token = secrets.token_hex(32)
        name = f"lakehub-chp-test-{secrets.token_hex(4)}"
        command = chart_proxy_command(public, api, target)
        try:
            _start(
                engine,
                name,
                *PROXY_SECURITY,
                "-e",
                "CONFIGPROXY_AUTH_TOKEN",
                "--entrypoint",
                command[0],
                built.image,
                *command[1:],
                env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": token},
            )
            _wait_for(engine, name, public, "/_chp_healthz")
            yield Proxy(engine, built.image, name, public, api, target, token)
        finally:
            _engine(engine, "rm", "--force", "--time", "10", name)


@pytest.fixture(scope="module")
def proxy_host(proxy):
    return testinfra.get_host(f"{proxy.engine}://{proxy.name}")


def test_proxy_image_configuration(proxy):
    assert proxy.image.endswith(f"/configurable-http-proxy:{chp_version()}")
    config = _config(proxy.engine, proxy.image)
    assert config["User"] == "65534:65534"
    assert config["Entrypoint"] == ["configurable-http-proxy"]
    assert {"8000/tcp", "8001/tcp"} <= set(config["ExposedPorts"])
    assert [e for e in config["Env"] if SECRETISH.search(e.split("=")[0])] == []


def test_proxy_api_needs_the_token(proxy):
    routes = _routes(proxy.api, proxy.token)
    assert routes["/"]["target"] == f"http://127.0.0.1:{proxy.target}"
    assert _get(proxy.api, "/api/routes")[0] == 403
    assert _get(proxy.api, "/api/routes", secrets.token_hex(32))[0] == 403


def test_proxy_public_port_answers(proxy):
    status, body = _get(proxy.public, "/_chp_healthz")
    assert status == 200, body
    # the default target is down: the proxy itself answers, with its error page
    assert _get(proxy.public, "/hub/")[0] == 503


def test_proxy_forwards_a_route_added_through_the_api(proxy):
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"hello from {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.api, timeout=5)
        target = json.dumps({"target": f"http://127.0.0.1:{server.server_address[1]}"})
        conn.request(
            "POST", "/api/routes/user/alice", target, {"Authorization": f"token {proxy.token}"}
        )
        assert conn.getresponse().status == 201
        conn.close()
        status, body = _get(proxy.public, "/user/alice/lab")
        assert (status, body) == (200, b"hello from /user/alice/lab")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_proxy_process(proxy_host, proxy):
    status = proxy_host.file("/proc/1/status").content_string
    assert re.search(r"^Uid:\s+65534\s+65534\s", status, re.M), status
    assert re.search(r"^Gid:\s+65534\s+65534\s", status, re.M), status
    assert proxy_host.file("/proc/1/comm").content_string.strip() == "node"
    major = int(proxy_host.check_output("node --version").lstrip("v").split(".")[0])
    assert major >= 20  # configurable-http-proxy's engines field
    assert proxy_host.check_output("configurable-http-proxy --version") == chp_version()


def test_second_build_changes_nothing(singleuser, hub_stack, proxy):
    """After the fixtures built every image, `build-images.sh all` finds them up to date."""
    env = {**os.environ, "LAKEHUB_HOME": str(HOME)}
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-images.sh"), "all"],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads((HOME / "images" / "build.json").read_text())
    names = ["singleuser", "hub", "proxy"]
    if info["images"]["hub"]["base_kind"] == "equivalent":
        names.append("hub-base")
    images = [info["images"][k]["image"] for k in names]
    for image in images:
        assert f"{image}: up to date" in proc.stderr, proc.stderr[-4000:]
    assert "STEP " not in proc.stdout + proc.stderr
    assert seconds < 60, seconds
