"""A throwaway Kubernetes control plane on 127.0.0.1, and the k8s spawn figures.

:class:`ControlPlane` starts a real etcd and a real kube-apiserver (built by
``scripts/ensure-k8s-tools.sh``, cached outside the repository) with a self-signed
certificate, a static admin token and RBAC; installs the namespace, the hub's
ServiceAccount, z2jh's hub Role and its RoleBinding; and runs kwok as the controller of
one fake node, so that pods bound to it are reported Running.  What is simulated: no
kubelet, no scheduler, no controller-manager.  Pods never execute; kwok writes their
status.  User pods are bound to the fake node by ``nodeName``; the namespace's
``default`` ServiceAccount is created here (the controller-manager's job).

``tests/test_k8s.py`` and the k8s figures of ``make bench`` (``benchmarks/k8s.py``) use it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
TOOLS_SCRIPT = REPO / "scripts" / "ensure-k8s-tools.sh"
NAMESPACE = "lakehub"
HUB_SA = "hub"
NODE = "lakehub-fake-node"
ADMIN_USER = "lakehub-test-admin"

# z2jh 4.4.0's hub Role (templates/hub/rbac.yaml), as the chart grants it
HUB_ROLE_RULES = [
    {
        "apiGroups": [""],
        "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
        "verbs": ["get", "watch", "list", "create", "delete"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "watch", "list"]},
]


def log(message: str) -> None:
    print(f"[k8s {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the tools ----------------------------------------------------------------------------


def k8s_tools(build: bool = True) -> dict[str, Path]:
    """Paths of kube-apiserver, etcd and kwok; builds them first when ``build``."""
    cmd = ["bash", str(TOOLS_SCRIPT)] + ([] if build else ["--check"])
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{TOOLS_SCRIPT.name} failed (exit {done.returncode}); see its messages above"
        )
    tools = dict(line.split("=", 1) for line in done.stdout.split() if "=" in line)
    return {k: Path(v) for k, v in tools.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- certificates -------------------------------------------------------------------------


def write_tls(folder: Path) -> tuple[Path, Path]:
    """A self-signed serving certificate for 127.0.0.1 (it is its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lakehub-test-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "apiserver.crt", folder / "apiserver.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def write_service_account_key(folder: Path) -> Path:
    """The key the apiserver signs ServiceAccount tokens with (RSA, PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "service-accounts.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


# --- kwok's stages (what the fake kubelet does) ------------------------------------------

_NODE_READY = """{{ $now := Now }}
conditions:
- type: Ready
  status: "True"
  reason: KwokReady
  message: simulated by kwok
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
addresses:
- type: InternalIP
  address: {{ NodeIP | Quote }}
allocatable: {cpu: "1000", memory: 4Ti, pods: "10000"}
capacity: {cpu: "1000", memory: 4Ti, pods: "10000"}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: fake
  containerRuntimeVersion: fake
phase: Running
"""

_POD_RUNNING = """{{ $now := Now }}
phase: Running
startTime: {{ $now | Quote }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName false .metadata.uid .metadata.name .metadata.namespace | Quote }}
conditions:
{{ range list "PodScheduled" "Initialized" "ContainersReady" "Ready" }}
- type: {{ . }}
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
"""


def kwok_stages() -> list[dict]:
    """Node: Ready.  Pod on the node: Running with an IP.  Pod being deleted: gone."""

    def stage(name: str, kind: str, expressions: list[dict], then: dict) -> dict:
        return {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Stage",
            "metadata": {"name": name},
            "spec": {
                "resourceRef": {"apiGroup": "v1", "kind": kind},
                "selector": {"matchExpressions": expressions},
                "next": then,
            },
        }

    not_ready = {
        "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
        "operator": "NotIn",
        "values": ["True"],
    }
    return [
        stage("lakehub-node-ready", "Node", [not_ready], {"statusTemplate": _NODE_READY}),
        stage(
            "lakehub-pod-running",
            "Pod",
            [
                {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                not_ready,
            ],
            {"statusTemplate": _POD_RUNNING},
        ),
        stage(
            "lakehub-pod-gone",
            "Pod",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            {"delete": True},
        ),
    ]


# --- processes ----------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to this process's group (it leads its own session), then SIGKILL."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout)


def _start(name: str, argv: list[str], folder: Path) -> Process:
    log_path = folder / f"{name}.log"
    with open(log_path, "wb") as out:
        popen = subprocess.Popen(  # noqa: S603 (our own binaries, fixed arguments)
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=folder,
        )
    return Process(name, popen, log_path)


def _wait(what: str, ready, timeout: float, process: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            process.check_alive()
        try:
            if ready():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    detail = f"\n{process.tail()}" if process else ""
    raise TimeoutError(f"{what} was not ready after {timeout:.0f} s{detail}")


# --- the control plane --------------------------------------------------------------------


@dataclass
class ControlPlane:
    tools: dict[str, Path]
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lakehub-k8s-")))
    namespace: str = NAMESPACE
    processes: list[Process] = field(default_factory=list)
    port: int = 0
    admin_token: str = ""
    ca_file: Path | None = None
    audit_log: Path | None = None
    startup_s: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def hub_user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{HUB_SA}"

    # -- start and stop --

    def start(self) -> ControlPlane:
        try:
            self._start_etcd()
            self._start_apiserver()
            self._install()
            self._start_kwok()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop what was started (by PID, newest first) and remove the folder."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start_etcd(self) -> None:
        t0 = time.monotonic()
        client, peer = free_port(), free_port()
        data = self.folder / "etcd"
        process = _start(
            "etcd",
            [
                str(self.tools["ETCD"]),
                "--name=lakehub-test",
                f"--data-dir={data}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=lakehub-test=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",  # a test cluster: speed over durability
                "--log-level=warn",
            ],
            self.folder,
        )
        self.processes.append(process)
        self.etcd_url = f"http://127.0.0.1:{client}"
        _wait(
            "etcd",
            lambda: httpx.get(f"{self.etcd_url}/health", timeout=2).status_code == 200,
            60,
            process,
        )
        self.startup_s["etcd"] = time.monotonic() - t0

    def _start_apiserver(self) -> None:
        t0 = time.monotonic()
        self.port = free_port()
        cert, key = write_tls(self.folder)
        self.ca_file = cert
        sa_key = write_service_account_key(self.folder)
        self.admin_token = base64.b32encode(os.urandom(20)).decode().lower()
        tokens = self.folder / "tokens.csv"
        tokens.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)
        policy = self.folder / "audit-policy.yaml"
        policy.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived"],
                    "rules": [
                        # every ServiceAccount of the namespace: the hub, the token service
                        {
                            "level": "Metadata",
                            "userGroups": [f"system:serviceaccounts:{self.namespace}"],
                        },
                        {"level": "None"},
                    ],
                }
            )
        )
        self.audit_log = self.folder / "audit.jsonl"
        process = _start(
            "kube-apiserver",
            [
                str(self.tools["KUBE_APISERVER"]),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--tls-cert-file={cert}",
                f"--tls-private-key-file={key}",
                f"--cert-dir={self.folder / 'certs'}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--profiling=false",
                "--endpoint-reconciler-type=none",  # 127.0.0.1 cannot be a Service endpoint
                "--v=1",
            ],
            self.folder,
        )
        self.processes.append(process)
        _wait(
            "kube-apiserver",
            lambda: self.admin().get("/readyz", timeout=3).status_code == 200,
            120,
            process,
        )
        self.startup_s["kube-apiserver"] = time.monotonic() - t0

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            verify=ssl.create_default_context(cafile=str(self.ca_file)),
            timeout=30,
        )

    def apply(self, path: str, body: dict, exist_ok: bool = False) -> dict:
        """Create an object as the admin (the cluster operator's step)."""
        with self.admin() as api:
            r = api.post(path, json=body)
        if exist_ok and r.status_code == 409:
            return r.json()
        if r.status_code not in (200, 201):
            raise RuntimeError(f"POST {path}: HTTP {r.status_code} {r.text[:300]}")
        return r.json()

    def grant(self, account: str, rules: list[dict]) -> str:
        """A ServiceAccount bound to a Role of ``rules`` (kept if it exists); returns its
        user name."""
        ns = self.namespace
        self.apply(
            f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": account}}, True
        )
        rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"
        self.apply(f"{rbac}/roles", {"metadata": {"name": account}, "rules": rules}, True)
        self.apply(
            f"{rbac}/rolebindings",
            {
                "metadata": {"name": account},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": account,
                },
            },
            exist_ok=True,
        )
        return f"system:serviceaccount:{ns}:{account}"

    def _install(self) -> None:
        """Namespace, default + hub ServiceAccounts, z2jh's hub Role and binding, node."""
        ns = self.namespace
        self.apply("/api/v1/namespaces", {"metadata": {"name": ns}})
        self.apply(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "default"}})
        self.grant(HUB_SA, HUB_ROLE_RULES)
        self.apply(
            "/api/v1/nodes",
            {
                "metadata": {
                    "name": NODE,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {"type": "kwok", "kubernetes.io/hostname": NODE},
                }
            },
        )

    def _start_kwok(self) -> None:
        t0 = time.monotonic()
        stages = self.folder / "kwok-stages.yaml"
        stages.write_text(yaml.safe_dump_all(kwok_stages()))
        kubeconfig = self.write_kubeconfig(self.folder / "admin.kubeconfig", self.admin_token)
        health = free_port()
        process = _start(
            "kwok",
            [
                str(self.tools["KWOK"]),
                f"--kubeconfig={kubeconfig}",
                f"--config={stages}",
                f"--manage-single-node={NODE}",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.240.0.1",
                f"--server-address=127.0.0.1:{health}",
            ],
            self.folder,
        )
        self.processes.append(process)

        def node_ready() -> bool:
            with self.admin() as api:
                node = api.get(f"/api/v1/nodes/{NODE}").json()
            conditions = node.get("status", {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        _wait("kwok (fake node Ready)", node_ready, 60, process)
        self.startup_s["kwok"] = time.monotonic() - t0

    # -- identities --

    def service_account_token(self, name: str = HUB_SA, seconds: int = 3600) -> str:
        """A token for the ServiceAccount from the TokenRequest API."""
        body = self.apply(
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        return body["status"]["token"]

    def write_kubeconfig(self, path: Path, token: str) -> Path:
        ca = base64.b64encode(Path(self.ca_file).read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "test", "cluster": {"server": self.url, "certificate-authority-data": ca}}
            ],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "test",
                    "context": {"cluster": "test", "user": "user", "namespace": self.namespace},
                }
            ],
            "current-context": "test",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def audit_events(self) -> list[dict]:
        """Completed requests made by the namespace's ServiceAccounts, oldest first."""
        events = []
        for line in Path(self.audit_log).read_text().splitlines():
            event = json.loads(line)
            if event.get("stage") == "ResponseComplete":
                events.append(event)
        return events

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()


@contextlib.contextmanager
def kubeconfig_in_use(path: Path) -> Iterator[Path]:
    """Make KubeSpawner in this process talk to the cluster of kubeconfig ``path``.

    KubeSpawner uses kubernetes_asyncio's process-wide default configuration, loaded
    once per process (``kubespawner.clients.load_config`` is cached) from the file that
    $KUBECONFIG named when kubernetes_asyncio was first imported.  So: point both at
    ``path``, load it into the default configuration now, and put all three back on the
    way out, so other tests in the same process see what they saw before.
    """
    from concurrent.futures import ThreadPoolExecutor

    import kubernetes_asyncio.config.kube_config as kube_config
    from kubernetes_asyncio.client import Configuration

    saved = (
        os.environ.get("KUBECONFIG"),
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION,
        Configuration.get_default_copy(),
    )
    os.environ["KUBECONFIG"] = str(path)
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)
    with ThreadPoolExecutor(1) as pool:  # no event loop may run in this thread
        pool.submit(asyncio.run, kube_config.load_kube_config(config_file=str(path))).result()
    try:
        yield path
    finally:
        if saved[0] is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = saved[0]
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = saved[1]
        Configuration.set_default(saved[2])


# --- a fake identity provider (token endpoint only) ---------------------------------------


def fake_jwt(claims: dict) -> str:
    """JWT-shaped, unsigned-looking token: enough for code that only reads ``exp``."""

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'at+jwt'})}.{part(claims)}.c2lnbmF0dXJl"


@dataclass
class FakeIdentityProvider:
    """An RFC 8693 token endpoint on 127.0.0.1 that checks what the hub sends.

    Accepts ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange`` from the OAuth
    client ``client_id``/``client_secret`` (HTTP Basic) for subject tokens it issued
    (``access_token_for``), and answers with a new JWT-shaped token whose ``aud`` is the
    requested audience.  Runs in a thread: the hub's event loop is not involved.
    """

    client_id: str = "lakehub-hub"
    client_secret: str = field(default_factory=lambda: base64.b32encode(os.urandom(10)).decode())
    requests: list[dict] = field(default_factory=list)
    issued: dict[str, str] = field(default_factory=dict)  # exchanged token -> user
    lifetime: int = 3600

    def access_token_for(self, user: str) -> str:
        return fake_jwt({"sub": user, "aud": "hub", "exp": int(time.time()) + 3600})

    url: str | None = None  # set when the provider runs in another process

    def start(self, port: int = 0) -> FakeIdentityProvider:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as identity providers serve

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                status, body = idp.answer(self.headers.get("Authorization", ""), form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # the hub may open hundreds of connections at once

        self.server = Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def token_url(self) -> str:
        return self.url or f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def answer(self, authorization: str, form: dict) -> tuple[int, dict]:
        self.requests.append({"authorization": authorization, "form": form})
        expected = (
            "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        )
        if authorization != expected:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            return 400, {"error": "unsupported_grant_type"}
        if form.get("subject_token_type") != "urn:ietf:params:oauth:token-type:access_token":
            return 400, {"error": "invalid_request"}
        try:
            payload = form["subject_token"].split(".")[1]
            subject = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (KeyError, IndexError, ValueError):
            return 400, {"error": "invalid_grant"}
        now = int(time.time())
        token = fake_jwt(
            {
                "sub": subject["sub"],
                "iss": "http://fake-idp.invalid",
                "aud": [form.get("audience", "")],
                "scope": form.get("scope", ""),
                "iat": now,
                "exp": now + self.lifetime,
                "jti": base64.b32encode(os.urandom(10)).decode(),
            }
        )
        self.issued[token] = subject["sub"]
        return 200, {
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": self.lifetime,
        }

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- KubeSpawner as the hub runs it -------------------------------------------------------


class HubUser:
    """The parts of jupyterhub.user.User that a Spawner and lakehub's hooks read."""

    def __init__(self, name: str, auth_state: dict | None = None):
        self.name = name
        self.id = abs(hash(name)) % 10**8
        self.url = f"/user/{name}/"
        self.escaped_name = name
        self._auth_state = auth_state

    async def get_auth_state(self) -> dict | None:
        return self._auth_state


def spawner_config(site_environ: dict[str, str] | None = None):
    """KubeSpawner configuration as z2jh renders it for lakehub, plus lakehub's hooks.

    What the chart's values give (image, home PVC, the shared cache read-only from
    spawner_hooks.kube_volumes) is written here the same way; the hooks come from
    hub_config.kubernetes.configure, exactly as the hub's jupyterhub_config.d file
    calls it.  ``nodeName`` binds pods to kwok's node (there is no scheduler).
    """
    from traitlets.config import Config

    from spawner_hooks.kube_volumes import cache_volume, cache_volume_mount

    c = Config()
    k = c.KubeSpawner
    k.namespace = NAMESPACE
    k.image = "localhost/lakehub/singleuser:test"
    k.cmd = ["jupyterhub-singleuser"]
    k.uid = 1000
    k.fs_gid = 100
    k.automount_service_account_token = False
    k.storage_pvc_ensure = True
    k.storage_capacity = "1Gi"
    k.pvc_name_template = "claim-{user_server}"
    k.volumes = [
        {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
        cache_volume(),
    ]
    k.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}, cache_volume_mount()]
    k.extra_pod_config = {"nodeName": NODE}
    k.start_timeout = 120
    k.k8s_api_request_timeout = 10
    k.k8s_api_request_retry_timeout = 60
    return c


def make_site(rucio_port: int, dask: bool = False):
    """A native-login site; ``dask``: with a Dask Gateway, whose workers read the
    per-user token Secret."""
    from sitefile import parse_site

    return parse_site(
        {
            "name": "lakehub k8s test",
            "rucio": {
                "instances": [{"name": "lake", "rucio_host": f"http://127.0.0.1:{rucio_port}"}]
            },
            "auth": {"type": "native", "admin_users": ["admin"]},
            "dask": {"enabled": dask},
        }
    )


def new_spawner(config, user: HubUser, authenticator=None):
    from jupyterhub.objects import Hub
    from kubespawner import KubeSpawner

    return KubeSpawner(
        config=config,
        hub=Hub(ip="127.0.0.1", port=8081, base_url="/hub/"),
        user=user,
        authenticator=authenticator,
        api_token=base64.b32encode(os.urandom(20)).decode().lower(),
        oauth_client_id=f"jupyterhub-user-{user.name}",
    )


async def hub_spawn(spawner) -> str:
    """What JupyterHub's User.spawn does around the spawner: pre_spawn_hook, start."""
    from jupyterhub.utils import maybe_future

    await maybe_future(spawner.run_pre_spawn_hook())
    return await spawner.start()


async def hub_stop(spawner) -> None:
    """What JupyterHub's User.stop does: stop, then post_stop_hook (also on errors)."""
    from jupyterhub.utils import maybe_future

    try:
        await spawner.stop()
    finally:
        await maybe_future(spawner.run_post_stop_hook())


async def stop_reflectors() -> None:
    """KubeSpawner keeps its watches per class; end them before the event loop closes."""
    from kubespawner import KubeSpawner

    await KubeSpawner._stop_all_reflectors()


@contextlib.contextmanager
def idp_process(folder: Path) -> Iterator[FakeIdentityProvider]:
    """The fake identity provider in a process of its own, as a real one would be: its
    work must not share the hub's interpreter.  Stopped by PID on the way out."""
    idp = FakeIdentityProvider()
    port = free_port()
    env = {**os.environ, "LAKEHUB_FAKE_IDP_SECRET": idp.client_secret}
    log_path = folder / "idp.log"
    with open(log_path, "wb") as out:
        popen = subprocess.Popen(  # noqa: S603 (this module, fixed arguments)
            [sys.executable, "-m", "testkit.apiserver", "--serve-idp", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=REPO,
            env=env,
        )
    process = Process("fake-idp", popen, log_path)
    try:

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        _wait("fake identity provider", listening, 30, process)
        idp.url = f"http://127.0.0.1:{port}/token"
        yield idp
    finally:
        process.stop()


def serve_idp(port: int) -> None:
    """``--serve-idp PORT``: the fake identity provider in the foreground."""
    idp = FakeIdentityProvider(client_secret=os.environ["LAKEHUB_FAKE_IDP_SECRET"])
    idp.start(port)
    idp.thread.join()  # until SIGTERM (its default action ends the process)


def main(argv: list[str] | None = None) -> int:
    """``python -m testkit.apiserver --serve-idp PORT``: the fake identity provider as a
    process of its own (started by :func:`idp_process`)."""
    parser = argparse.ArgumentParser(prog="python -m testkit.apiserver")
    parser.add_argument("--serve-idp", type=int, metavar="PORT", required=True)
    serve_idp(parser.parse_args(argv).serve_idp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
