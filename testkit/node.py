"""A real one-node Kubernetes cluster, started as host processes for tests and benchmarks.

:class:`Node` starts, in order: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, containerd (and imports the sandbox and helper images), the kubelet,
kube-proxy, CoreDNS and local-path-provisioner (with its ConfigMap and a default
StorageClass binding on first use), then waits until the node is Ready and the
``default`` ServiceAccount exists.  Pods really run (runc under containerd), reach each
other through ClusterIP Services by DNS name, get PersistentVolumes in a host folder,
and reach the host at :attr:`Node.node_ip` (the host's address on its default-route
interface).  Kubernetes v1.36, every binary built once by
``scripts/ensure-k8s-tools.sh`` and cached outside the repository.

:meth:`Node.stop` stops every process by PID (pid files carry the kernel start time, so
nothing else is ever signalled), tears the pods down through the CRI, and removes what
the run added to the host (see :mod:`testkit.host`): no process, bridge, iptables chain,
kubepods cgroup or mount is left.  The state folder keeps only ``logs/`` (a temporary
folder is removed entirely).

One node per machine: the ports, the bridge, the iptables chains and containerd's image
store (kept under the tools cache so images are imported once) are machine-wide.  A
second start while a node runs fails and names the running node's folder.

Command line (state folder: ``--state``, default ``$LAKEHUB_HOME/cluster``)::

    python -m testkit.node up [--sync-frequency 10s] [--image NAME ...]
    python -m testkit.node status
    python -m testkit.node down

Requires root, cgroup v1 hierarchies (or v2), runc and iptables (installed by the tools
script).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import yaml

from lakehub.files import atomic_write
from localstack import procs
from sitefile.state import lakehub_home
from testkit import host, nodeconf, pki
from testkit.nodeconf import COMPONENTS, NODE_NAME, PORTS, Layout

REPO = Path(__file__).resolve().parent.parent
TOOLS_SCRIPT = REPO / "scripts" / "ensure-k8s-tools.sh"
T = TypeVar("T")

# CRI container states / pod conditions that will not get better by waiting
_HOPELESS = {
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


class NodeError(RuntimeError):
    """The node cannot start or stop; the message says why (and where the logs are)."""


def tools(build: bool = True) -> dict[str, str]:
    """KEY -> path (or image name) from ``scripts/ensure-k8s-tools.sh``; builds first
    when ``build`` (a no-op once everything is cached)."""
    cmd = ["bash", str(TOOLS_SCRIPT)] + ([] if build else ["--check"])
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise NodeError(
            f"{TOOLS_SCRIPT.name} failed (exit {done.returncode}); see its messages above"
            + ("" if build else " (run: make k8s-tools)")
        )
    return dict(line.split("=", 1) for line in done.stdout.split() if "=" in line)


def default_route_address() -> str:
    """The host's IPv4 address on the interface of its default route."""
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "default"]).stdout or "[]")
    if not routes:
        raise NodeError("the host has no IPv4 default route: no address for the node")
    device = routes[0]["dev"]
    links = json.loads(_run(["ip", "-j", "-4", "addr", "show", "dev", device]).stdout or "[]")
    for link in links:
        for address in link.get("addr_info", []):
            if address.get("family") == "inet" and address.get("scope") == "global":
                return address["local"]
    raise NodeError(f"interface {device} (default route) has no global IPv4 address")


def default_state() -> Path:
    return lakehub_home() / "cluster"


class Node:
    """One node: control plane, container runtime, kubelet and add-ons on this host.

    ``state_dir``: the run's folder (``None``: a temporary folder, removed by
    :meth:`stop`).  ``sync_frequency``: the kubelet's ``syncFrequency``, which bounds
    how soon an updated Secret or ConfigMap reaches a running pod's files.
    """

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        sync_frequency: str = nodeconf.DEFAULT_SYNC_FREQUENCY,
        tool_paths: dict[str, str] | None = None,
    ) -> None:
        self._temporary = state_dir is None
        state = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="lakehub-node-"))
        self.state = state.resolve()
        self.sync_frequency = sync_frequency
        self._tools = tool_paths
        self._info: dict | None = None
        self.timings: dict[str, float] = {}

    # --- what callers use ---------------------------------------------------------------

    @property
    def tools(self) -> dict[str, str]:
        if self._tools is None:
            recorded = self.info.get("tools")
            self._tools = recorded or tools(build=True)
        return self._tools

    @property
    def layout(self) -> Layout:
        return Layout(self.state, Path(self.tools["NODE_CACHE"]) / "containerd")

    @property
    def info(self) -> dict:
        if self._info is None:
            try:
                self._info = json.loads(Layout(self.state, Path()).info.read_text())
            except (OSError, ValueError):
                self._info = {}
        return self._info

    @property
    def node_ip(self) -> str:
        """The node's address: pods reach the host here; Services' endpoints on the host."""
        return self.info.get("node_ip") or default_route_address()

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (cluster-admin through a client certificate)."""
        return self.layout.kubeconfig

    @property
    def server(self) -> str:
        return f"https://{self.node_ip}:{PORTS.apiserver}"

    def running(self) -> dict[str, int | None]:
        """Component -> PID if the process this node started still runs."""
        return {name: procs.running(name, self.layout.run) for name in COMPONENTS}

    def is_running(self) -> bool:
        return any(pid is not None for pid in self.running().values())

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the cluster admin; raises NodeError (with stderr) if ``check``."""
        done = subprocess.run(
            [self.tools["KUBECTL"], f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args)}: {done.stderr.strip() or done.stdout}")
        return done

    def apply(self, *objects: dict) -> None:
        """``kubectl apply`` of Kubernetes objects given as dicts."""
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))

    @contextlib.contextmanager
    def api(self) -> Iterator[httpx.Client]:
        """An httpx client for the apiserver, authenticated as the cluster admin."""
        context = ssl.create_default_context(cafile=str(self.layout.pki / "ca.crt"))
        context.load_cert_chain(self.layout.pki / "admin.crt", self.layout.pki / "admin.key")
        with httpx.Client(base_url=self.server, verify=context, timeout=30) as client:
            yield client

    def get(self, path: str) -> dict | None:
        """GET an API path as the admin; None if it does not exist (404)."""
        with self.api() as api:
            response = api.get(path)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def wait_until(
        self, check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.25
    ) -> T:
        """Poll ``check`` until it returns something truthy (returned); NodeError after
        ``timeout`` seconds or as soon as a component of the node has exited."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            self._check_alive(what)
            if time.monotonic() > deadline:
                raise NodeError(f"{what}: not within {timeout:.0f} s (logs: {self.layout.logs})")
            time.sleep(interval)

    def wait_for_pod(
        self,
        name: str,
        namespace: str = "default",
        *,
        condition: str = "Ready",
        timeout: float = 120,
    ) -> dict:
        """Wait until the pod is Ready (``condition="Ready"``) or has ended with phase
        Succeeded (``condition="Succeeded"``); returns the pod.  Fails early, with the
        reason, when the pod failed or a container cannot start."""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"

        def check() -> dict | None:
            pod = self.get(path)
            if pod is None:
                return None
            status = pod.get("status", {})
            phase = status.get("phase")
            problem = _pod_problem(status)
            if phase == "Failed" or problem:
                raise NodeError(f"pod {namespace}/{name} cannot become {condition}: {problem}")
            if condition == "Succeeded":
                return pod if phase == "Succeeded" else None
            if phase == "Succeeded":
                raise NodeError(f"pod {namespace}/{name} ended before it was {condition}")
            ready = [c for c in status.get("conditions", []) if c["type"] == condition]
            return pod if ready and ready[0]["status"] == "True" else None

        return self.wait_until(check, timeout=timeout, what=f"pod {namespace}/{name} {condition}")

    def load_images(self, names: Iterable[str]) -> dict[str, str]:
        """Make podman's images ``names`` available to the node's containerd.

        Each is streamed (``podman save --format docker-archive`` into ``ctr images
        import``), unless containerd already has an image of that name with the same ID.
        Returns name -> "present" or "imported".  Pods then use them with
        ``imagePullPolicy: Never`` or ``IfNotPresent``."""
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        wanted = self._podman_ids(names)
        have = self._cri_image_ids()
        result = {}
        for name in names:
            if have.get(name) == wanted[name]:
                result[name] = "present"
                continue
            t0 = time.monotonic()
            self._import(name)
            result[name] = "imported"
            self.timings[f"import {name}"] = time.monotonic() - t0
        have = self._cri_image_ids()
        wrong = [n for n in names if have.get(n) != wanted[n]]
        if wrong:
            raise NodeError(f"containerd does not show the imported image(s): {', '.join(wrong)}")
        return result

    # --- start ------------------------------------------------------------------------

    def start(self, *, images: Iterable[str] = (), timeout: float = 240) -> Node:
        """Start every component (see the module docstring); raises NodeError with the
        reason, after stopping what had started, if the node does not come up."""
        t_start = time.monotonic()
        self._tools = self._tools or tools(build=True)
        _preflight()
        with self._machine_lock():
            self._claim()
            try:
                self._start(images, timeout)
            except BaseException:
                self._stop_locked(keep_logs=True)
                raise
        self.timings["total"] = time.monotonic() - t_start
        self._save_info(timings=self.timings)
        return self

    def _start(self, images: Iterable[str], timeout: float) -> None:
        layout = self.layout
        node_ip = default_route_address()
        _check_ports(node_ip)
        for folder in (layout.run, layout.logs, layout.config, layout.containerd_root):
            folder.mkdir(parents=True, exist_ok=True)
        self._info = {
            "node_ip": node_ip,
            "tools": self.tools,
            "sync_frequency": self.sync_frequency,
            "before": host.snapshot(),
            "started": time.time(),
        }
        self._save_info()
        self._write_files(node_ip)
        argv = nodeconf.commands(layout, self.tools, node_ip=node_ip)

        def step(name: str) -> float:
            self.timings[name] = time.monotonic() - t0
            return self.timings[name]

        t0 = time.monotonic()
        self._spawn("etcd", argv)
        self.wait_until(
            procs.http_ok(f"http://127.0.0.1:{PORTS.etcd_client}/health"),
            timeout=60,
            what="etcd healthy",
        )
        step("etcd")
        self._spawn("kube-apiserver", argv)
        self.wait_until(self._apiserver_ready, timeout=120, what="kube-apiserver ready")
        step("kube-apiserver")
        self._spawn("kube-controller-manager", argv)
        self._spawn("kube-scheduler", argv)
        self._spawn("containerd", argv)
        self.wait_until(self._containerd_ready, timeout=60, what="containerd answering")
        self._crictl("rmp", "--all", "--force")  # pods left by a run that crashed
        step("containerd")
        self.load_images([self.tools["PAUSE_IMAGE"], self.tools["NODE_HELPER_IMAGE"], *images])
        step("images")
        self._spawn("kubelet", argv)
        self.wait_until(
            lambda: self.get(f"/api/v1/nodes/{NODE_NAME}"), timeout=60, what="node registered"
        )
        step("node registered")
        self._spawn("kube-proxy", argv)
        self._spawn("coredns", argv)
        self.wait_until(
            procs.http_ok(f"http://127.0.0.1:{PORTS.dns_ready}/ready", lambda r: r.is_success),
            timeout=60,
            what="CoreDNS ready",
        )
        step("coredns")
        self.apply(*nodeconf.local_path_objects())
        self._spawn("local-path-provisioner", argv)
        self.wait_until(self._node_ready, timeout=timeout, what="node Ready")
        step("node Ready")
        for namespace in ("default", "kube-system"):
            self.wait_until(
                lambda ns=namespace: self.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default"),
                timeout=60,
                what=f"ServiceAccount {namespace}/default",
            )
        self.wait_until(
            procs.http_ok(
                f"http://127.0.0.1:{PORTS.proxy_healthz}/healthz", lambda r: r.is_success
            ),
            timeout=60,
            what="kube-proxy synced",
        )
        step("ready")

    def _write_files(self, node_ip: str) -> None:
        layout = self.layout
        certs = pki.issue(
            layout.pki, node_name=NODE_NAME, node_ip=node_ip, service_ip=nodeconf.API_SERVICE_IP
        )
        server = f"https://{node_ip}:{PORTS.apiserver}"
        ca = certs.ca.read_bytes()

        def kubeconfig(path: Path, stem: str, user: str) -> None:
            doc = pki.kubeconfig(
                server, ca, certs.cert(stem).read_bytes(), certs.key(stem).read_bytes(), user
            )
            atomic_write(path, yaml.safe_dump(doc), mode=0o600)

        kubeconfig(layout.kubeconfig, "admin", "lakehub-admin")
        for stem in ("kubelet", "kube-proxy", "controller-manager", "scheduler"):
            kubeconfig(layout.component_kubeconfig(stem), stem, stem)
        # the add-ons act as the admin (a test cluster; they run on the host anyway)
        for stem in ("coredns", "local-path-provisioner"):
            kubeconfig(layout.component_kubeconfig(stem), "admin", "lakehub-admin")

        tools_ = self.tools
        files = {
            "containerd.toml": nodeconf.containerd_config(
                layout,
                runc=tools_["RUNC"],
                cni_bin_dir=tools_["CNI_BIN_DIR"],
                pause_image=tools_["PAUSE_IMAGE"],
            ),
            "kubelet.yaml": yaml.safe_dump(
                nodeconf.kubelet_config(layout, node_ip=node_ip, sync_frequency=self.sync_frequency)
            ),
            "kube-proxy.yaml": yaml.safe_dump(nodeconf.kube_proxy_config(layout)),
            "Corefile": nodeconf.corefile(layout, node_ip=node_ip),
            "local-path.json": json.dumps(nodeconf.local_path_config(layout), indent=2),
            "local-path-helper-pod.yaml": yaml.safe_dump(
                nodeconf.helper_pod(tools_["NODE_HELPER_IMAGE"])
            ),
        }
        for name, text in files.items():
            atomic_write(layout.config_file(name), text)
        atomic_write(
            layout.cni_conf_dir / "10-lakehub.conflist",
            json.dumps(nodeconf.cni_conflist(layout), indent=2),
        )
        for folder in (
            layout.etcd,
            layout.kubelet_root,
            layout.volumes,
            layout.shared_volumes,
            layout.pod_logs,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        layout.etcd.chmod(0o700)

    def _spawn(self, name: str, argv: dict[str, list[str]]) -> None:
        env = dict(os.environ)
        # the runc shim next to containerd; iptables, conntrack, mount from the system
        env["PATH"] = os.pathsep.join(
            [str(Path(self.tools["CONTAINERD"]).parent), "/usr/local/sbin", "/usr/sbin", "/sbin"]
            + env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        )
        env.pop("KUBECONFIG", None)
        procs.start(
            name,
            argv[name],
            run_dir=self.layout.run,
            log_path=self.layout.logs / f"{name}.log",
            env=env,
            cwd=self.state,
        )

    def _check_alive(self, what: str) -> None:
        started = [n for n in COMPONENTS if (self.layout.run / f"{n}.pid").exists()]
        for name in started:
            if procs.running(name, self.layout.run) is None:
                log = self.layout.logs / f"{name}.log"
                raise NodeError(f"{name} exited (waiting for {what}){_tail(log)}")

    def _apiserver_ready(self) -> bool:
        try:
            with self.api() as api:
                return api.get("/readyz", timeout=3).status_code == 200
        except (httpx.HTTPError, OSError):
            return False

    def _node_ready(self) -> bool:
        node = self.get(f"/api/v1/nodes/{NODE_NAME}") or {}
        conditions = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _containerd_ready(self) -> bool:
        if not self.layout.containerd_socket.exists():
            return False
        return self._crictl("version", check=False).returncode == 0  # the CRI answers

    # --- images -----------------------------------------------------------------------

    def _podman_ids(self, names: list[str]) -> dict[str, str]:
        ids = {}
        for name in names:
            done = _run(["podman", "image", "inspect", "--format", "{{.Id}}", name], check=False)
            if done.returncode != 0:
                raise NodeError(
                    f"image {name} is not in podman's storage: build it first"
                    " (make images, or scripts/ensure-k8s-tools.sh for the node's own)"
                )
            ids[name] = "sha256:" + done.stdout.strip()
        return ids

    def _cri_image_ids(self) -> dict[str, str]:
        """Image name -> image ID as the kubelet sees it (the config digest)."""
        done = self._crictl("images", "--output", "json")
        found = {}
        for image in json.loads(done.stdout or "{}").get("images", []):
            for tag in image.get("repoTags") or []:
                found[tag] = image["id"]
        return found

    def _import(self, name: str) -> None:
        """podman save | ctr import, streamed (images can be several GB)."""
        with open(self.layout.logs / "images.log", "ab") as log:
            save = subprocess.Popen(
                ["podman", "save", "--format", "docker-archive", name],
                stdout=subprocess.PIPE,
                stderr=log,
            )
            assert save.stdout is not None
            try:
                load = subprocess.run(
                    [*self._ctr_argv(), "images", "import", "--local", "-"],
                    stdin=save.stdout,
                    stdout=log,
                    stderr=log,
                    check=False,
                    timeout=3600,
                )
            finally:
                save.stdout.close()
                saved = save.wait(timeout=3600)
        if saved != 0 or load.returncode != 0:
            raise NodeError(
                f"importing {name} into containerd failed (podman save {saved}, ctr import"
                f" {load.returncode}){_tail(self.layout.logs / 'images.log')}"
            )

    def _ctr_argv(self) -> list[str]:
        return [self.tools["CTR"], f"--address={self.layout.containerd_socket}", "-n", "k8s.io"]

    def _crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        endpoint = f"unix://{self.layout.containerd_socket}"
        return _run(
            [
                self.tools["CRICTL"],
                "--config=/dev/null",
                f"--runtime-endpoint={endpoint}",
                f"--image-endpoint={endpoint}",
                "--timeout=60s",
                *args,
            ],
            check=check,
        )

    # --- stop -------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop everything this node started and undo its changes to the host; returns
        what could not be removed (empty when all is clean).  A no-op when nothing of a
        node is in the state folder."""
        if not self.info:
            if self._temporary:
                shutil.rmtree(self.state, ignore_errors=True)
            return []
        with self._machine_lock():
            return self._stop_locked()

    def _stop_locked(self, keep_logs: bool = False) -> list[str]:
        t0 = time.monotonic()
        layout = self.layout
        run = layout.run
        errors: list[str] = []
        for name in ("local-path-provisioner", "coredns", "kube-scheduler"):
            procs.stop(name, run)
        procs.stop("kube-controller-manager", run)
        procs.stop("kube-proxy", run)
        procs.stop("kubelet", run)
        if procs.running("containerd", run):
            # every pod: stop its containers, tear its network down, remove it
            done = self._crictl("rmp", "--all", "--force", check=False)
            if done.returncode != 0:
                errors.append(f"crictl rmp: {done.stderr.strip()}")
        procs.stop("containerd", run)
        shim = self.tools["CONTAINERD_SHIM"]
        host.kill(host.processes_of(str(layout.containerd_socket), {shim}))
        procs.stop("kube-apiserver", run)
        procs.stop("etcd", run)
        before = self.info.get("before")
        if before is not None:  # else stopped before anything started: nothing to undo
            errors += host.clean_cgroups()
            errors += host.unmount_under(self.state)
            errors += host.delete_link(nodeconf.BRIDGE)
            errors += host.clean_iptables(before.get("iptables", {}))
            host.clean_files(nodeconf.CNI_NETWORK, layout.pod_logs)
            host.restore_sysctls(before.get("sysctls", {}))
            host.remove_new_empty_dirs(before.get("host_dirs", []))
            errors += self.leftovers()
        self._release()
        if not host.mounts_under(self.state):
            self._remove_state(keep_logs)
        self._info = {}
        self.timings["stop"] = time.monotonic() - t0
        return errors

    def leftovers(self) -> list[str]:
        """What of this node is still on the host (see :func:`testkit.host.leftovers`)."""
        executables = {
            self.tools[k]
            for k in (
                "ETCD",
                "KUBE_APISERVER",
                "KUBE_CONTROLLER_MANAGER",
                "KUBE_SCHEDULER",
                "CONTAINERD",
                "CONTAINERD_SHIM",
                "KUBELET",
                "KUBE_PROXY",
                "COREDNS",
                "LOCAL_PATH_PROVISIONER",
            )
        }
        return host.leftovers(
            self.info.get("before", {}),
            state=self.state,
            bridge=nodeconf.BRIDGE,
            executables=executables,
        )

    def _remove_state(self, keep_logs: bool = False) -> None:
        """Remove the run's files; ``logs/`` stays unless the folder was a temporary one
        (then it stays only when ``keep_logs``, after a failed start)."""
        if self._temporary and not (keep_logs and self.layout.logs.is_dir()):
            shutil.rmtree(self.state, ignore_errors=True)
            return
        host.empty_but_logs(self.state)

    # --- one node per machine ---------------------------------------------------------

    @property
    def _registry(self) -> Path:
        return Path(self.tools["NODE_CACHE"]) / "active"

    @contextlib.contextmanager
    def _machine_lock(self) -> Iterator[None]:
        cache = Path(self.tools["NODE_CACHE"])
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _claim(self) -> None:
        """Register this state folder as the machine's node; refuse if another runs,
        clean up after one that died."""
        try:
            other = Path(self._registry.read_text().strip())
        except OSError:
            other = None
        if other is not None and other != self.state:
            previous = Node(other, tool_paths=self.tools)
            if previous.is_running():
                raise NodeError(
                    f"a lakehub node is already running on this machine (state folder {other});"
                    f" stop it first: python -m testkit.node down --state {other}"
                )
            previous._stop_locked()  # a run that died: undo what it left
            self.timings["previous run cleaned up"] = previous.timings["stop"]
        if self.info and self.is_running():
            raise NodeError(f"this node is already running (state folder {self.state})")
        if self.info:
            self._stop_locked()  # this folder's previous run died: undo what it left
            self.timings["previous run cleaned up"] = self.timings.pop("stop")
        self.state.mkdir(parents=True, exist_ok=True)
        atomic_write(self._registry, f"{self.state}\n")

    def _release(self) -> None:
        try:
            if Path(self._registry.read_text().strip()) == self.state:
                self._registry.unlink()
        except OSError:
            pass

    def _save_info(self, **extra) -> None:
        self._info = {**(self._info or {}), **extra}
        atomic_write(self.layout.info, json.dumps(self._info, indent=2))

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- helpers ----------------------------------------------------------------------------


def _run(argv: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if check and done.returncode != 0:
        raise NodeError(f"{' '.join(argv[:3])}...: {done.stderr.strip() or done.stdout.strip()}")
    return done


def _tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"; last lines of {log}:\n    " + "\n    ".join(text)


def _pod_problem(status: dict) -> str:
    """Why a pod's container cannot start (a reason that waiting will not fix), or ''."""
    for kind in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(kind) or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _HOPELESS:
                return f"{container['name']}: {waiting['reason']}: {waiting.get('message', '')}"
    if status.get("phase") == "Failed":
        return status.get("message") or status.get("reason") or "phase Failed"
    return ""


def _preflight() -> None:
    """What the node needs from the machine, checked before anything starts."""
    if os.geteuid() != 0:
        raise NodeError("the node needs root (mounts, cgroups, iptables, network namespaces)")
    hierarchies = (
        {p.name for p in host.CGROUP_ROOT.iterdir()} if host.CGROUP_ROOT.is_dir() else set()
    )
    v2 = (host.CGROUP_ROOT / "cgroup.controllers").exists()
    missing = {"cpu", "memory", "pids"} - hierarchies
    if not v2 and missing:
        raise NodeError(
            f"missing cgroup controllers {sorted(missing)} under {host.CGROUP_ROOT}"
            " (the kubelet needs cpu, memory and pids)"
        )
    for program in ("iptables", "iptables-restore", "ip", "mount", "umount", "podman"):
        if shutil.which(program) is None and not Path("/usr/sbin", program).exists():
            raise NodeError(f"{program} is not installed (scripts/ensure-k8s-tools.sh installs it)")
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        raise NodeError(
            "bridge netfilter is missing (modprobe br_netfilter): pods could not reach"
            " Services on the same bridge"
        )


def _check_ports(node_ip: str) -> None:
    import socket

    wanted = [
        ("127.0.0.1", PORTS.etcd_client, "etcd"),
        ("127.0.0.1", PORTS.etcd_peer, "etcd peer"),
        (node_ip, PORTS.apiserver, "kube-apiserver"),
        ("127.0.0.1", PORTS.controller_manager, "kube-controller-manager"),
        ("127.0.0.1", PORTS.scheduler, "kube-scheduler"),
        (node_ip, PORTS.kubelet, "kubelet"),
        ("127.0.0.1", PORTS.kubelet_healthz, "kubelet healthz"),
        ("127.0.0.1", PORTS.proxy_healthz, "kube-proxy healthz"),
        ("127.0.0.1", PORTS.proxy_metrics, "kube-proxy metrics"),
        (node_ip, PORTS.dns, "CoreDNS"),
        ("127.0.0.1", PORTS.dns_health, "CoreDNS health"),
        ("127.0.0.1", PORTS.dns_ready, "CoreDNS ready"),
    ]
    for address, port, what in wanted:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError as e:
                raise NodeError(f"port {address}:{port} ({what}) is taken: {e.strerror}") from None


# --- command line -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testkit.node",
        description="A real one-node Kubernetes cluster on this machine (host processes).",
    )
    parser.add_argument(
        "command", choices=["up", "down", "status"], help="start, stop, or show the node"
    )
    parser.add_argument(
        "--state", type=Path, default=None, help="state folder (default $LAKEHUB_HOME/cluster)"
    )
    parser.add_argument(
        "--sync-frequency",
        default=nodeconf.DEFAULT_SYNC_FREQUENCY,
        help="kubelet syncFrequency: how soon Secret updates reach pods (default 10s)",
    )
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="NAME",
        help="a podman image to import into the node (repeatable)",
    )
    args = parser.parse_args(argv)
    state = (args.state or default_state()).resolve()
    try:
        if args.command == "up":
            return _up(state, args.sync_frequency, args.image)
        if args.command == "down":
            return _down(state)
        return _status(state)
    except NodeError as e:
        print(f"testkit.node: {e}", file=sys.stderr)
        return 1


def _up(state: Path, sync_frequency: str, images: list[str]) -> int:
    node = Node(state, sync_frequency=sync_frequency)
    if node.info and node.is_running():
        if images:
            node.load_images(images)
        print(f"already running (state folder {state})", file=sys.stderr)
        _usage(node)
        return 0
    print(f"starting a one-node cluster (state folder {state}) ...", file=sys.stderr)
    node.start(images=images)
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in node.timings.items())
    print(f"up in {node.timings['total']:.1f} s ({steps})", file=sys.stderr)
    _usage(node)
    return 0


def _usage(node: Node) -> None:
    down = "python -m testkit.node down"
    if node.state != default_state().resolve():
        down += f" --state {node.state}"
    print(
        f"""
node {NODE_NAME} at {node.node_ip}; logs in {node.layout.logs}
  export KUBECONFIG={node.kubeconfig}
  {node.tools["KUBECTL"]} get pods -A
images: podman images load with `python -m testkit.node up --image NAME`;
pods use them with imagePullPolicy: Never (or IfNotPresent)
stop:   {down}""",
    )


def _down(state: Path) -> int:
    node = Node(state)
    if not node.info:
        print(f"no node in {state}: nothing to stop", file=sys.stderr)
        return 0
    errors = node.stop()
    if errors:
        print("stopped, but left behind:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 1
    print(f"stopped and cleaned up in {node.timings['stop']:.1f} s", file=sys.stderr)
    return 0


def _status(state: Path) -> int:
    node = Node(state)
    if not node.info:
        print(f"no node in {state}")
        return 3
    running = node.running()
    for name, pid in running.items():
        print(f"{name:24} {'running, pid ' + str(pid) if pid else 'not running'}")
    if all(running.values()):
        print(f"KUBECONFIG={node.kubeconfig}")
        return 0
    return 3


if __name__ == "__main__":
    sys.exit(main())
