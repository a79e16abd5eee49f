"""The single-user image, built by scripts/build-images.sh and inspected while it runs.

The module builds the image (or reuses it: the script is idempotent), starts JupyterLab in
a container on a free port of 127.0.0.1 with a random token, checks that it answers, and
then looks inside with pytest-testinfra (``podman exec``): the account, the Python
packages against requirements/analysis.txt, the Rucio client, the Jupyter extensions, the
notebooks, and the absence of secrets and hub-side code.

The container has a random name and is removed by that name at the end, also when a step
fails. Where podman cannot run, the tests fail with the reason; they are never skipped.
A cold build takes a few minutes (debootstrap, wheelhouse, image), hence the timeout.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "analysis.txt"
NOTEBOOKS = ROOT / "notebooks"
VENV = "/opt/lakehub/venv"
# what the image may hold beyond the lock: the venv's own installer
TOOLING = {"pip", "setuptools", "wheel"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if m:
            pins[norm(m.group(1))] = m.group(2)
    return pins


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Running:
    engine: str
    image: str
    name: str
    port: int
    token: str


@pytest.fixture(scope="module")
def built():
    """Run the build script; return its build.json (engine, image, timings)."""
    home = Path(os.environ.get("LAKEHUB_HOME", ROOT / ".lakehub"))
    env = {**os.environ, "LAKEHUB_HOME": str(home)}
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-images.sh"), "singleuser"],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/build-images.sh singleuser failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
        )
    info = json.loads((home / "images" / "build.json").read_text())
    info["test_build_seconds"] = round(time.monotonic() - started, 1)
    print(f"image build step: {info['test_build_seconds']} s, details {info['singleuser']}")
    return info


@pytest.fixture(scope="module")
def engine_env(built):
    """The engine configuration the script used (CONTAINERS_CONF) for this module."""
    with pytest.MonkeyPatch.context() as mp:
        if built["containers_conf"]:
            mp.setenv("CONTAINERS_CONF", built["containers_conf"])
        yield built["engine"]


def _engine(engine: str, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([engine, *args], capture_output=True, text=True, check=check)


def _get(port: int, path: str, token: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Authorization": f"token {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def running(built, engine_env):
    """JupyterLab in a container of the image, answering on 127.0.0.1:<free port>."""
    engine = engine_env
    image = built["singleuser"]["image"]
    name = f"lakehub-image-test-{secrets.token_hex(4)}"
    port = free_port()
    token = secrets.token_hex(16)
    try:
        start = _engine(
            engine,
            "run",
            "-d",
            "--name",
            name,
            "--network=host",
            image,
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
        )
        if start.returncode != 0:
            pytest.fail(f"{engine} cannot run {image}: {start.stderr.strip()}")
        deadline = time.monotonic() + 120
        while True:
            try:
                status, body = _get(port, "/api/status", token)
                if status == 200:
                    break
            except OSError:
                pass
            state = _engine(engine, "inspect", "--format", "{{.State.Status}}", name)
            if state.stdout.strip() not in ("running", "created", "configured"):
                logs = _engine(engine, "logs", name)
                pytest.fail(f"container exited ({state.stdout.strip()}):\n{logs.stderr[-4000:]}")
            if time.monotonic() > deadline:
                logs = _engine(engine, "logs", name)
                pytest.fail(f"no answer on port {port} in 120 s:\n{logs.stderr[-4000:]}")
            time.sleep(0.5)
        yield Running(engine, image, name, port, token)
    finally:
        _engine(engine, "rm", "--force", name)


@pytest.fixture(scope="module")
def host(running):
    return testinfra.get_host(f"{running.engine}://{running.name}")


@pytest.fixture(scope="module")
def root_host(running):
    return testinfra.get_host(f"{running.engine}://root@{running.name}")


def test_server_answers_with_token_only(running):
    status, body = _get(running.port, "/api/status", running.token)
    assert status == 200
    assert "started" in json.loads(body)
    status, _ = _get(running.port, "/api/contents", None)
    assert status == 403


def test_extensions_loaded_by_the_running_server(running):
    logs = _engine(running.engine, "logs", running.name)
    text = logs.stdout + logs.stderr
    for ext in ("lakehub", "rucio_jupyterlab.server", "jupyterlab"):
        assert f"{ext} | extension was successfully loaded" in text, text[-4000:]


def test_image_configuration(running):
    out = _engine(running.engine, "image", "inspect", running.image, check=True).stdout
    config = json.loads(out)[0]["Config"]
    # numeric, so Kubernetes can verify runAsNonRoot
    assert config["User"] == "1000:100"
    assert config["WorkingDir"] == "/home/jovyan"
    assert config["Cmd"] == ["jupyterhub-singleuser"]
    assert "8888/tcp" in config["ExposedPorts"]
    secretish = [e for e in config["Env"] if re.search(r"TOKEN|SECRET|PASSWORD|KEY", e, re.I)]
    assert secretish == []


def test_runs_as_jovyan(host):
    user = host.user()
    assert (user.name, user.uid, user.gid, user.home) == ("jovyan", 1000, 100, "/home/jovyan")
    assert host.check_output("echo $HOME") == "/home/jovyan"
    # the server itself (PID 1 of the container) runs as uid 1000
    status = host.file("/proc/1/status").content_string
    assert re.search(r"^Uid:\s+1000\s+1000\s", status, re.M), status
    assert host.file("/home/jovyan").user == "jovyan"


def test_python_packages_equal_the_lock(host):
    pins = pinned()
    assert len(pins) > 100
    installed = {
        norm(n): v["version"] for n, v in host.pip.get_packages(pip_path=f"{VENV}/bin/pip").items()
    }
    wrong = {n: (v, installed.get(n)) for n, v in pins.items() if installed.get(n) != v}
    assert wrong == {}, "pinned -> installed"
    extra = sorted(set(installed) - set(pins) - TOOLING)
    assert extra == []
    assert host.pip.check(pip_path=f"{VENV}/bin/pip").rc == 0
    assert host.check_output("command -v python") == f"{VENV}/bin/python"


def test_rucio_client(host):
    out = host.check_output("rucio --version")
    assert pinned()["rucio-clients"] in out


def test_jupyter_extensions_enabled(host):
    cmd = host.run("jupyter server extension list")
    assert cmd.rc == 0, cmd.stderr
    text = ANSI.sub("", cmd.stdout + cmd.stderr)
    assert re.search(r"^\s+rucio_jupyterlab\S*\s+enabled", text, re.M), text
    assert re.search(r"^\s+lakehub\s+enabled", text, re.M), text
    assert re.search(r"^\s+lakehub\s+OK", text, re.M), text

    cmd = host.run("jupyter labextension list")
    assert cmd.rc == 0, cmd.stderr
    text = ANSI.sub("", cmd.stdout + cmd.stderr)
    version = pinned()["rucio-jupyterlab"]
    assert re.search(rf"rucio-jupyterlab v{re.escape(version)}\s+enabled\s+OK", text), text

    assert host.check_output("jupyterhub-singleuser --version") == pinned()["jupyterhub"]


def test_notebooks_shipped(host):
    expected = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert expected
    for name in expected:
        f = host.file(f"/opt/lakehub/notebooks/{name}")
        assert f.is_file
        assert f.mode & 0o444 == 0o444, oct(f.mode)
        want = hashlib.sha256((NOTEBOOKS / name).read_bytes()).hexdigest()
        assert f.sha256sum == want, name


def test_analysis_stack_imports(host):
    code = "import uproot, awkward, hist, mplhep, vector, lmfit, lakehub.jupyter_ext; print('ok')"
    assert host.check_output("python -c %s", code) == "ok"


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


def test_no_secrets_or_hub_code(root_host):
    found = root_host.check_output(
        "find / -xdev \\( -name .lakehub -o -name 'id_rsa*' -o -name 'id_ed25519*' "
        "-o -name 'signing-key*' -o -name localstack \\) -print"
    )
    assert found == ""
    hits = json.loads(root_host.check_output(f"{VENV}/bin/python -c %s", _KEY_SCAN))
    unpackaged = [h["path"] for h in hits if not h["packaged"]]
    assert unpackaged == [], "private keys that no package shipped"
    print("private keys shipped inside packages:", [h["path"] for h in hits])
    code = (
        "import importlib.util as u; "
        "print([m for m in ('hub_config', 'spawner_hooks', 'hub_services', 'localstack') "
        "if u.find_spec(m)])"
    )
    assert root_host.check_output(f"{VENV}/bin/python -c %s", code) == "[]"
    assert root_host.run("test -e /opt/lakehub/session/lakehub/jupyter_ext.py").rc == 0
