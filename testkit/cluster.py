"""A one-node lab for lakehub's whole release: what ``make cluster-up`` starts, and what
``tests/test_cluster.py`` and ``benchmarks/cluster.py`` deploy the chart onto.

:class:`Lab` starts, in order:

1. a real one-node Kubernetes cluster (:class:`testkit.node.Node`) with lakehub's three
   images imported from podman (``make images``);
2. a fresh Rucio server (:mod:`localstack.rucio_server`) listening on the node's address,
   so pods reach it, and trusting the issuer ``<public_url>/services/lakehub-issuer``:
   the chart's token service behind z2jh's proxy on the NodePort, which publishes the
   hub's public keys there;
3. the demo data (:mod:`localstack.bootstrap`) on its POSIX RSE, also readable over HTTP
   from a small read-only file server on the node's address (a host process): the cache
   service runs in a pod and cannot open the host's folder, so it falls back to the
   HTTP replica; and the cache RSE, whose prefix is the cache volume's path in the pods
   (``lakehub.contract.CACHE_MOUNT``); the same server publishes the demo course
   (``examples/courses/demo``) as a bare git repository (git's "dumb" HTTP protocol),
   the source of the site's course ``lab`` (no students in the site file: tests add
   them to its hub group);
4. the namespace and the Secrets the site names (Rucio admin password, issuer key);
5. the site file, a pure function of the node's address and the ports
   (:func:`lab_site`), written to ``<state>/site.yaml``.

The chart itself is not installed: that is ``make deploy SITE=<state>/site.yaml`` with
``KUBECONFIG`` set to the node's admin kubeconfig (:meth:`Lab.deploy_env`).

:meth:`Lab.stop` stops every process by PID (the file server, Rucio, then the node with
all its pods) and removes the state folder but its logs.

Command line (state folder: ``--state``, default ``$LAKEHUB_HOME/cluster``)::

    python -m testkit.cluster up [--token-lifetime SECONDS]
    python -m testkit.cluster status
    python -m testkit.cluster down
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from lakehub.contract import (
    CACHE_MOUNT,
    ISSUER_KEY_KEY,
    ISSUER_SERVICE,
    RUCIO_ADMIN_KEY,
    service_prefix,
)
from lakehub.files import atomic_write
from localstack import procs, rucio_server
from sitefile import DemoData, load_site
from sitefile.state import REPO, StackPaths, lakehub_home
from testkit import host, nodeconf
from testkit.node import Node, NodeError
from tokens.mint import create_signing_key

# what `make images` builds (scripts/build-images.sh); the tag of the proxy follows
# z2jh 4.4.0's configurable-http-proxy
IMAGES = {
    "singleuser": ("localhost/lakehub/singleuser", "0.1.0"),
    "hub": ("localhost/lakehub/hub", "0.1.0"),
    "proxy": ("localhost/lakehub/configurable-http-proxy", "5.2.0"),
}
DEMO_HTTP = "demo-http"  # the process name of the read-only file server
LAB_COURSE = "lab"  # the site's one course (every user takes it), from examples/courses/demo
COURSE_REPO = "courses/lab.git"  # the course's repository under the file server's root
ADMIN_USER = "admin"


class LabError(RuntimeError):
    """The lab cannot start; the message says why."""


@dataclass(frozen=True)
class LabPorts:
    """Ports on the node's address: Rucio and the demo files for pods, the hub for people."""

    rucio: int = 18110
    demo_http: int = 18111
    hub: int = 30080  # z2jh's proxy-public NodePort


def image_names() -> list[str]:
    return [f"{repository}:{tag}" for repository, tag in IMAGES.values()]


def public_url(node_ip: str, ports: LabPorts) -> str:
    return f"http://{node_ip}:{ports.hub}"


def issuer_url(node_ip: str, ports: LabPorts) -> str:
    """The issuer Rucio trusts: the token service through the proxy's NodePort."""
    return public_url(node_ip, ports) + service_prefix(ISSUER_SERVICE)


def rucio_url(node_ip: str, ports: LabPorts) -> str:
    return f"http://{node_ip}:{ports.rucio}"


def course_url(node_ip: str, ports: LabPorts) -> str:
    """The lab course's git remote: the file server on the node's address."""
    return f"http://{node_ip}:{ports.demo_http}/{COURSE_REPO}"


def demo_data(events: int = 30_000) -> DemoData:
    """The H->yy dataset only (two files of ``events`` each): what the try-it path, the
    tests and the benchmarks read."""
    return DemoData(layouts=["GamGam"], files=2, events=events)


def lab_site(
    node_ip: str,
    ports: LabPorts = LabPorts(),  # noqa: B008  (frozen, never mutated)
    *,
    name: str = "lakehub on one node",
    token_lifetime_seconds: int = 3600,
    namespace: str = "lakehub",
) -> dict:
    """The site file of the lab (pure).

    Native logins (NativeAuthenticator; the hub signs Rucio tokens), the proxy on a
    NodePort of the node's address, lakehub's own images used when present, and the
    z2jh parts switched off whose images cannot be built here: the image pullers
    (k8s-image-awaiter, pause), the user scheduler and placeholders (kube-scheduler,
    pause) and the cloud-metadata blocker (k8s-network-tools).  The shared cache claim
    uses the node's ReadWriteMany StorageClass.  Everything is plain http on the node's
    address (``insecure: true``: a closed lab).  The node's address is private, so an
    egress rule names it (the bridge network does not enforce policies, but the site
    says what a real cluster would need)."""

    def image(kind: str) -> dict:
        repository, tag = IMAGES[kind]
        return {"repository": repository, "tag": tag, "pull_policy": "IfNotPresent"}

    return {
        "name": name,
        # Rucio, the issuer and the hub are plain http on the node's address: a closed
        # lab on one machine (the site check warns about it)
        "insecure": True,
        "rucio": {
            "instances": [
                {
                    "name": "lab",
                    "display_name": "Rucio on this machine",
                    "rucio_host": rucio_url(node_ip, ports),
                    "vo": "def",
                    "admin_account": "root",
                }
            ]
        },
        "tokens": {"lifetime_seconds": token_lifetime_seconds},
        "cache": {"quota_gb": 4},  # within the lab's 5Gi cache volume
        "auth": {"type": "native", "admin_users": [ADMIN_USER]},
        # the demo course, taken by nobody until someone is added to its hub group (as
        # `make course-members` does): its members' pods pull it in their postStart hook
        "courses": [
            {
                "name": LAB_COURSE,
                "source": course_url(node_ip, ports),
                "target": "lab-course",
                "students": [],
            }
        ],
        # one small profile: a 2-core node must still fit the hub and the services
        "profiles": [
            {
                "name": "Lab",
                "description": "up to 2 CPU and 3G on this machine",
                "cpu": 2,
                "cpu_guarantee": 0.1,
                "memory": "3G",
                "memory_guarantee": "512M",
                "default": True,
            }
        ],
        "kubernetes": {
            "namespace": namespace,
            "public_url": public_url(node_ip, ports),
            "images": {kind: image(kind) for kind in IMAGES},
            "cache_claim": {"storage_class": nodeconf.SHARED_STORAGE_CLASS, "size": "5Gi"},
            "egress": [
                {
                    "description": "Rucio and the demo files on this machine",
                    "cidr": f"{node_ip}/32",
                    "ports": [ports.rucio, ports.demo_http],
                }
            ],
            "proxy_service": {"type": "NodePort", "node_port": ports.hub},
            "prepull": False,
            "user_scheduler": False,
            "block_cloud_metadata": False,
        },
    }


def secret_object(name: str, namespace: str, data: dict[str, str]) -> dict:
    """An Opaque Secret (created, never applied: `kubectl apply` would keep a copy of the
    content in an annotation)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": data,
    }


class Lab:
    """The node plus everything the chart expects around it; see the module docstring."""

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        ports: LabPorts = LabPorts(),  # noqa: B008
        token_lifetime_seconds: int = 3600,
        sync_frequency: str = nodeconf.DEFAULT_SYNC_FREQUENCY,
        demo_events: int = 30_000,
    ) -> None:
        self.state = Path(state_dir or default_state()).resolve()
        self.ports = ports
        self.token_lifetime_seconds = token_lifetime_seconds
        self.demo = demo_data(demo_events)
        self.node = Node(self.state / "node", sync_frequency=sync_frequency)
        self.paths = StackPaths(self.state / "stack")
        self.timings: dict[str, float] = {}

    # --- what callers use ---------------------------------------------------------------

    @property
    def node_ip(self) -> str:
        return self.node.node_ip

    @property
    def site_file(self) -> Path:
        return self.state / "site.yaml"

    @property
    def public_url(self) -> str:
        return public_url(self.node_ip, self.ports)

    @property
    def namespace(self) -> str:
        return load_site(self.site_file).kubernetes.namespace

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def site_data(self, ports: LabPorts | None = None, **changes) -> dict:
        """The lab's site (``changes`` as keyword arguments of :func:`lab_site`)."""
        options = {"token_lifetime_seconds": self.token_lifetime_seconds, **changes}
        return lab_site(self.node_ip, ports or self.ports, **options)

    def write_site(self, path: Path | None = None, **changes) -> Path:
        """Write the lab's site (or a variant: ``changes`` as for :meth:`site_data`) and
        make sure its namespace and Secrets exist."""
        path = path or self.site_file
        atomic_write(path, yaml.safe_dump(self.site_data(**changes), sort_keys=False))
        self._namespace_and_secrets(path)
        return path

    def deploy_env(self) -> dict[str, str]:
        """The environment `make deploy|undeploy` needs for this lab's node."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.node.kubeconfig)
        return env

    def rucio_admin(self):
        """A rucio Client as the lab's Rucio root account."""
        from localstack.bootstrap import admin_client

        return admin_client(load_site(self.site_file).rucio.default, self.paths)

    def demo_files(self) -> list[Path]:
        """The demo files of the H->yy dataset on the host (what the pods read through
        the cache)."""
        return sorted((self.paths.rse / "demo" / self.demo.scope).glob("*.root"))

    def secret_values(self) -> list[str]:
        """The secrets the lab put into the cluster (for leak checks)."""
        key = json.loads((self.paths.secrets / ISSUER_KEY_KEY).read_text())
        password = self.paths.rucio_root_password.read_text().strip()
        return [password, *(key[part] for part in ("d", "p", "q"))]

    def running(self) -> dict[str, int | None]:
        return {
            "rucio": procs.running(rucio_server.PROCESS, self.paths.run),
            DEMO_HTTP: procs.running(DEMO_HTTP, self.paths.run),
        }

    # --- start ----------------------------------------------------------------------------

    def start(self, *, images: list[str] | None = None) -> Lab:
        """Start everything (module docstring); on failure stop what had started and
        raise LabError or NodeError with the reason."""
        t0 = time.monotonic()
        self.state.mkdir(parents=True, exist_ok=True)
        if self.node.info and self.node.is_running():
            raise LabError(f"the lab is already running (state folder {self.state})")
        self._clean_stack()  # a fresh Rucio each time, like the fresh node
        try:
            self.node.start(images=image_names() if images is None else images)
            self.timings["node"] = time.monotonic() - t0
            self._check_ports()
            self._start_rucio()
            self.timings["rucio"] = time.monotonic() - t0
            self.write_site()
            self._load_data()
            self._start_demo_http()
            self.timings["data"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t0
        return self

    def _check_ports(self) -> None:
        for port, what in ((self.ports.rucio, "Rucio"), (self.ports.demo_http, "demo files")):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((self.node_ip, port))
                except OSError as e:
                    raise LabError(
                        f"port {self.node_ip}:{port} ({what}) is taken: {e.strerror}"
                    ) from None

    def _start_rucio(self) -> None:
        self.paths.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_signing_key(self.paths.secrets / ISSUER_KEY_KEY)
        rucio_server.configure(self.paths, issuer_url(self.node_ip, self.ports))
        rucio_server.init_database(self.paths)
        rucio_server.start(self.paths, self.ports.rucio, host=self.node_ip)

    def _load_data(self) -> None:
        from localstack.bootstrap import (
            ensure_demo_datasets,
            ensure_http_protocol,
            ensure_rse,
        )

        site = load_site(self.site_file)
        demo = self.demo
        ensure_demo_datasets(site.rucio.default, self.paths, demo, progress=False)
        client = self.rucio_admin()
        ensure_http_protocol(client, demo.rse, self.node_ip, self.ports.demo_http)
        # the cache service writes the files at this path inside its pod
        ensure_rse(client, site.cache.rse, Path(CACHE_MOUNT))

    def _publish_course(self) -> None:
        """The demo course as a bare repository in the file server's folder, readable
        with git's dumb HTTP protocol (``update-server-info`` writes its file lists)."""
        from courses.git import commit_folder, git

        repo = self.paths.rse / "demo" / COURSE_REPO
        commit_folder(REPO / "examples" / "courses" / "demo", repo, "main", "the lab's course")
        git("update-server-info", git_dir=repo)

    def _start_demo_http(self) -> None:
        """A read-only HTTP view of the demo RSE's folder on the node's address (Python's
        http.server answers GET and HEAD only)."""
        self._publish_course()
        folder = self.paths.rse / "demo"
        log = self.logs / f"{DEMO_HTTP}.log"
        procs.start(
            DEMO_HTTP,
            [
                sys.executable,
                "-m",
                "http.server",
                str(self.ports.demo_http),
                "--bind",
                self.node_ip,
                "--directory",
                str(folder),
            ],
            run_dir=self.paths.run,
            log_path=log,
        )
        procs.wait_until(
            procs.http_ok(f"http://{self.node_ip}:{self.ports.demo_http}/"),
            timeout=30,
            what="the demo file server",
            alive=lambda: procs.running(DEMO_HTTP, self.paths.run) is not None,
            log_path=log,
        )

    def _namespace_and_secrets(self, site_file: Path) -> None:
        """The site's namespace and the Secrets it names (created once)."""
        k8s = load_site(site_file).kubernetes
        assert k8s is not None
        namespace = k8s.namespace
        self.node.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        secrets = {
            k8s.rucio_admin_secret: {
                RUCIO_ADMIN_KEY: self.paths.rucio_root_password.read_text().strip()
            },
            k8s.issuer_key_secret: {
                ISSUER_KEY_KEY: (self.paths.secrets / ISSUER_KEY_KEY).read_text()
            },
        }
        for name, data in secrets.items():
            if self.node.get(f"/api/v1/namespaces/{namespace}/secrets/{name}") is None:
                body = json.dumps(secret_object(name, namespace, data))
                self.node.kubectl("create", "-f", "-", input=body)

    # --- stop -----------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop everything by PID; returns what could not be removed from the host."""
        procs.stop(DEMO_HTTP, self.paths.run)
        rucio_server.stop(self.paths)
        errors = self.node.stop()
        self._clean_stack()
        return errors

    def _clean_stack(self) -> None:
        """Remove the lab's Rucio and data (logs stay), and the generated site."""
        host.empty_but_logs(self.paths.state)
        self.site_file.unlink(missing_ok=True)

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def default_state() -> Path:
    return lakehub_home() / "cluster"


def make_command(target: str, site: Path, **variables: str) -> list[str]:
    """``make <target> SITE=<site> ...`` in the repository, as a person runs it."""
    extra = [f"{k}={v}" for k, v in variables.items()]
    return ["make", "--no-print-directory", "-C", str(REPO), target, f"SITE={site}", *extra]


def run_make(
    lab: Lab,
    target: str,
    site: Path | None = None,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    **variables: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``make deploy|undeploy|diff`` against the lab's node (``env`` on top of
    :meth:`Lab.deploy_env`); output captured."""
    return subprocess.run(
        make_command(target, site or lab.site_file, **variables),
        env={**lab.deploy_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- command line -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testkit.cluster",
        description="A one-node Kubernetes lab for lakehub's chart on this machine.",
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--state", type=Path, default=None, help="state folder (default $LAKEHUB_HOME/cluster)"
    )
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=3600,
        help="lifetime of the students' Rucio tokens in seconds (>= 60)",
    )
    args = parser.parse_args(argv)
    lab = Lab(args.state, token_lifetime_seconds=args.token_lifetime)
    try:
        if args.command == "up":
            return _up(lab)
        if args.command == "down":
            return _down(lab)
        return _status(lab)
    except (LabError, NodeError, procs.StartError) as e:
        print(f"testkit.cluster: {e}", file=sys.stderr)
        return 1


def _up(lab: Lab) -> int:
    if lab.node.info and lab.node.is_running():
        print(f"already running (state folder {lab.state})", file=sys.stderr)
        _usage(lab)
        return 0
    print(f"starting the one-node lab (state folder {lab.state}) ...", file=sys.stderr)
    lab.start()
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in lab.timings.items())
    print(f"lab up ({steps})", file=sys.stderr)
    _usage(lab)
    return 0


def _usage(lab: Lab) -> None:
    print(
        f"""
A one-node Kubernetes cluster at {lab.node_ip}, Rucio at {rucio_url(lab.node_ip, lab.ports)}
with the demo dataset opendata:demo.GamGam, the namespace and Secrets of the site file
{lab.site_file}.

Install lakehub on it:

  export KUBECONFIG={lab.node.kubeconfig}
  make deploy SITE={lab.site_file}

Then open {lab.public_url}/hub/signup, sign up as '{ADMIN_USER}' (an admin: authorized at
once), sign up a student and approve them at {lab.public_url}/hub/authorize.

Remove the release (its volumes stay; PURGE=1 removes them too), then stop the lab:

  make undeploy SITE={lab.site_file}
  make cluster-down

Logs: {lab.node.layout.logs} (the node), {lab.paths.logs} (Rucio), {lab.logs}."""
    )


def _down(lab: Lab) -> int:
    if not lab.node.info and not any(lab.running().values()):
        print(f"no lab in {lab.state}: nothing to stop", file=sys.stderr)
        return 0
    errors = lab.stop()
    if errors:
        print("stopped, but left behind:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 1
    print("stopped and cleaned up", file=sys.stderr)
    return 0


def _status(lab: Lab) -> int:
    if not lab.node.info:
        print(f"no lab in {lab.state}")
        return 3
    running = {**lab.node.running(), **lab.running()}
    for name, pid in running.items():
        print(f"{name:24} {'running, pid ' + str(pid) if pid else 'not running'}")
    if all(running.values()):
        print(f"KUBECONFIG={lab.node.kubeconfig}")
        print(f"SITE={lab.site_file}")
        return 0
    return 3


if __name__ == "__main__":
    sys.exit(main())
