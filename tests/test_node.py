"""A real one-node Kubernetes cluster (testkit.node): pods really run.

What is real: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd
with runc, the kubelet, kube-proxy (iptables), CoreDNS and local-path-provisioner of the
versions pinned in ``scripts/ensure-k8s-tools.sh``, started as host processes by
:class:`testkit.node.Node` on this machine; the pods run lakehub's helper image (Debian's
busybox-static) and its own sandbox image.  Nothing is simulated.

If the node cannot start (no root, missing cgroups, a port taken, a component exiting)
the tests fail with the reason.  The last test stops the node and looks at the host
itself (processes, interfaces, iptables, cgroups, mounts, folders) for anything left.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra

from testkit import nodeconf
from testkit.host import HOST_DIRS
from testkit.node import Node, NodeError

pytestmark = pytest.mark.cluster

HELPER = "NODE_HELPER_IMAGE"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One node for the module, stopped by the last test (and here, in case)."""
    node = Node(tmp_path_factory.mktemp("node") / "state", sync_frequency="10s")
    try:
        node.start()
    except NodeError as e:
        pytest.fail(f"the one-node cluster did not start: {e}")
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in node.timings.items())
    print(f"\nnode up: {steps}")
    yield node
    node.stop()


def pod(name: str, image: str, command: list[str], **spec) -> dict:
    """A pod of one container that runs ``command`` (restartPolicy Never)."""
    container = {"name": "main", "image": image, "imagePullPolicy": "Never", "command": command}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
            **spec,
        },
    }


def logs(node: Node, name: str) -> str:
    return node.kubectl("logs", name).stdout


def test_a_pod_runs_a_command_and_its_log_shows_the_output(node):
    node.apply(
        pod(
            "hello",
            node.tools[HELPER],
            ["sh", "-c", 'echo "hello from $(hostname), uid $(id -u)"'],
        )
    )
    done = node.wait_for_pod("hello", condition="Succeeded", timeout=90)
    assert logs(node, "hello").strip() == "hello from hello, uid 0"
    # the pod had its own address on the node's pod network
    assert ipaddress.ip_address(done["status"]["podIP"]) in ipaddress.ip_network(
        nodeconf.POD_SUBNET
    )
    assert done["status"]["hostIP"] == node.node_ip


def test_a_pod_reaches_another_through_a_service_by_dns_name(node):
    image = node.tools[HELPER]
    serve = (
        'mkdir -p /www && echo "served by $(hostname)" > /www/index.html'
        " && exec httpd -f -p 8080 -h /www"
    )
    web = pod(
        "web",
        image,
        ["sh", "-c", serve],
        container={"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}},
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    node.apply(web, service)
    node.wait_for_pod("web")
    cluster_ip = node.get("/api/v1/namespaces/default/services/web")["spec"]["clusterIP"]
    # busybox wget's own -T crashes; `timeout` bounds each fetch instead.  nslookup exits
    # 1 even when it resolved (other search domains fail), so its output is printed.
    client = (
        "nslookup web.default.svc.cluster.local; "
        "timeout 10 wget -q -O - http://web/ && "
        "timeout 10 wget -q -O - http://web.default.svc.cluster.local/"
    )
    node.apply(pod("client", image, ["sh", "-c", client]))
    node.wait_for_pod("client", condition="Succeeded", timeout=90)
    output = logs(node, "client")
    assert f"Address: {cluster_ip}" in output  # CoreDNS answered with the Service's address
    assert output.count("served by web") == 2  # short name and full name both reached it


def test_a_claim_from_the_default_storage_class_keeps_data_for_the_next_pod(node):
    image = node.tools[HELPER]
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    volume = {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}
    mount = {"container": {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}}
    node.apply(claim)
    # WaitForFirstConsumer: no volume until a pod uses the claim
    assert (
        node.get("/api/v1/namespaces/default/persistentvolumeclaims/data")["status"]["phase"]
        == "Pending"
    )
    node.apply(
        pod(
            "writer",
            image,
            ["sh", "-c", "echo kept-for-the-next-pod > /data/note"],
            **volume,
            **mount,
        )
    )
    node.wait_for_pod("writer", condition="Succeeded", timeout=120)
    bound = node.get("/api/v1/namespaces/default/persistentvolumeclaims/data")
    assert bound["status"]["phase"] == "Bound"
    assert bound["spec"]["storageClassName"] == nodeconf.STORAGE_CLASS
    node.kubectl("delete", "pod", "writer", "--wait=true")

    node.apply(pod("reader", image, ["cat", "/data/note"], **volume, **mount))
    node.wait_for_pod("reader", condition="Succeeded", timeout=90)
    assert logs(node, "reader").strip() == "kept-for-the-next-pod"
    # and the data is in the provisioner's host folder
    pv = node.get(f"/api/v1/persistentvolumes/{bound['spec']['volumeName']}")
    folder = Path(pv["spec"]["hostPath"]["path"])
    assert folder.parent == node.layout.volumes
    assert (folder / "note").read_text().strip() == "kept-for-the-next-pod"


def test_a_shared_claim_is_mounted_by_two_pods_at_once(node):
    """ReadWriteMany through the node's second StorageClass (local-path-provisioner's
    shared-file-system mode; its per-node mode refuses ReadWriteMany): what lakehub's
    cache claim needs, one writer pod and readers."""
    image = node.tools[HELPER]
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "shared"},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": nodeconf.SHARED_STORAGE_CLASS,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    volume = {"volumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}]}
    mount = {"container": {"volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}}
    node.apply(claim)
    node.apply(
        pod(
            "shared-writer",
            image,
            ["sh", "-c", "echo from-the-writer > /shared/note && sleep 3600"],
            **volume,
            **mount,
        )
    )
    node.wait_for_pod("shared-writer", timeout=120)
    node.apply(pod("shared-reader", image, ["cat", "/shared/note"], **volume, **mount))
    node.wait_for_pod("shared-reader", condition="Succeeded", timeout=90)
    assert logs(node, "shared-reader").strip() == "from-the-writer"
    # both pods used it at the same time: the writer still runs
    assert node.get("/api/v1/namespaces/default/pods/shared-writer")["status"]["phase"] == (
        "Running"
    )
    bound = node.get("/api/v1/namespaces/default/persistentvolumeclaims/shared")
    assert bound["spec"]["accessModes"] == ["ReadWriteMany"]
    pv = node.get(f"/api/v1/persistentvolumes/{bound['spec']['volumeName']}")
    assert Path(pv["spec"]["hostPath"]["path"]).parent == node.layout.shared_volumes
    node.kubectl("delete", "pod", "shared-writer", "shared-reader", "--wait=true")


def test_a_secret_update_reaches_the_running_pod(node):
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "token"},
        "stringData": {"value": "first"},
    }
    node.apply(secret)
    node.apply(
        pod(
            "holder",
            node.tools[HELPER],
            ["sleep", "3600"],
            volumes=[{"name": "token", "secret": {"secretName": "token"}}],
            container={"volumeMounts": [{"name": "token", "mountPath": "/token"}]},
        )
    )
    node.wait_for_pod("holder")

    def seen() -> str:
        return node.kubectl("exec", "holder", "--", "cat", "/token/value").stdout

    assert seen() == "first"
    node.apply({**secret, "stringData": {"value": "second"}})
    changed = time.monotonic()
    node.wait_until(lambda: seen() == "second", timeout=90, what="the new Secret in the pod")
    delay = time.monotonic() - changed
    print(f"\nSecret update reached the pod's file after {delay:.1f} s (syncFrequency 10s)")
    # the upstream default (1 m) gives up to ~77 s here; 10 s gives ~10 s
    assert delay < 30


def test_a_second_node_on_the_same_machine_is_refused(node, tmp_path):
    with pytest.raises(NodeError, match="already running") as refused:
        Node(tmp_path / "other", tool_paths=node.tools).start()
    assert str(node.state) in str(refused.value)
    assert all(node.running().values())  # the running node was not touched


def test_the_command_line_reports_the_running_node(node):
    done = subprocess.run(
        [sys.executable, "-m", "testkit.node", "status", "--state", str(node.state)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"KUBECONFIG={node.kubeconfig}" in done.stdout
    assert done.stdout.count("running, pid") == len(nodeconf.COMPONENTS)


# --- stop: must run last in this module ----------------------------------------------------


# A table's built-in chains appear with the table the first time anything uses it (on a
# fresh machine: the node) and cannot be deleted; only chains someone created count.
BUILTIN_CHAINS = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}


def _chains(save: str) -> set[str]:
    names = {line[1:].split()[0] for line in save.splitlines() if line.startswith(":")}
    return names - BUILTIN_CHAINS


def _iptables_chains() -> set[str]:
    found = set()
    for family in ("iptables-save", "ip6tables-save"):
        found |= _chains(subprocess.run([family], capture_output=True, text=True).stdout)
    return found


def _mounts_under(folder: Path) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [ln.split()[4] for ln in lines if ln.split()[4].startswith(str(folder))]


def _kubepods() -> list[Path]:
    return list(Path("/sys/fs/cgroup").glob("*/kubepods"))


def _our_processes(node: Node) -> list[str]:
    binaries = {node.tools[k] for k in node.tools if Path(node.tools[k]).is_file()}
    found = []
    for proc in Path("/proc").iterdir():
        try:
            exe = os.readlink(proc / "exe")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if exe in binaries and str(node.state) in cmdline:
            found.append(f"{proc.name} {cmdline[:100]}")
    return found


def test_stop_leaves_nothing_behind(node):
    host = testinfra.get_host("local://")
    before_run = node.info["before"]
    chains_before_run = {
        c for tables in before_run["iptables"].values() for t in tables.values() for c in t
    }
    # what a running node has, so that the checks below can fail
    pids = {name: pid for name, pid in node.running().items()}
    assert all(pids.values()), pids
    pod_pids = [
        int(p)
        for cg in _kubepods()
        for f in cg.rglob("cgroup.procs")
        for p in f.read_text().split()
    ]
    assert pod_pids, "no pod process in the kubepods cgroups"
    assert host.interface(nodeconf.BRIDGE).exists
    assert any(c.startswith("KUBE-") for c in _iptables_chains())
    assert _mounts_under(node.state), "a running node has mounts (pods' network, volumes)"
    assert _our_processes(node)

    node.stop()
    stop_s = node.timings["stop"]
    print(f"\nnode stopped and cleaned up in {stop_s:.1f} s")

    alive = [f"{n} {p}" for n, p in pids.items() if Path(f"/proc/{p}").exists()]
    alive += [f"pod process {p}" for p in pod_pids if Path(f"/proc/{p}").exists()]
    assert alive == []
    assert _our_processes(node) == []
    assert not host.interface(nodeconf.BRIDGE).exists
    new_chains = sorted(_iptables_chains() - chains_before_run)
    assert new_chains == []
    assert [c for c in _iptables_chains() if c.startswith("KUBE-")] == []
    assert _kubepods() == []
    assert _mounts_under(node.state) == []
    new_dirs = [d for d in HOST_DIRS if os.path.lexists(d) and d not in before_run["host_dirs"]]
    assert new_dirs == []
    # the sysctls the kubelet and the bridge plugin change are back
    for name, value in before_run["sysctls"].items():
        assert Path("/proc/sys", name.replace(".", "/")).read_text().strip() == value, name
    assert not (node.state / "node.json").exists()
    assert node.stop() == []  # a second stop is a no-op
