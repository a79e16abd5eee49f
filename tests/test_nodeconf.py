"""The one-node cluster's pure parts: configuration builders, certificates, and the
iptables clean-up script (no process is started; tests/test_node.py runs the node)."""

from __future__ import annotations

import ipaddress
import stat
import tomllib
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testkit import host, nodeconf, pki
from testkit.nodeconf import PORTS, Layout

NODE_IP = "192.0.2.2"
TOOLS = {
    key: f"/cache/{key.lower()}"
    for key in (
        "ETCD",
        "KUBE_APISERVER",
        "KUBE_CONTROLLER_MANAGER",
        "KUBE_SCHEDULER",
        "CONTAINERD",
        "KUBELET",
        "KUBE_PROXY",
        "COREDNS",
        "LOCAL_PATH_PROVISIONER",
    )
} | {"NODE_HELPER_IMAGE": "localhost/lakehub/node-helper:abc"}


def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "state", tmp_path / "cache" / "containerd")


def test_containerd_config_keeps_everything_of_a_run_in_its_folders(tmp_path):
    lay = layout(tmp_path)
    config = tomllib.loads(
        nodeconf.containerd_config(
            lay, runc="/usr/sbin/runc", cni_bin_dir="/cache/cni", pause_image="localhost/p:1"
        )
    )
    assert config["version"] == 3  # [grpc] is where version 3 has it
    assert config["root"] == str(lay.containerd_root)
    assert config["state"] == str(lay.containerd_state)
    assert config["grpc"]["address"] == str(lay.containerd_socket)
    plugins = config["plugins"]
    runtime = plugins["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE here
    assert runtime["netns_mounts_under_state_dir"] is True
    assert runtime["cni"] == {
        "bin_dirs": ["/cache/cni"],
        "conf_dir": str(lay.cni_conf_dir),
        "max_conf_num": 1,
    }
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc["BinaryName"] == "/usr/sbin/runc"
    assert runc["Root"].startswith(str(lay.state))
    assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == "localhost/p:1"
    assert plugins["io.containerd.internal.v1.opt"]["path"].startswith(str(lay.containerd_root))
    assert "io.containerd.nri.v1.nri" in config["disabled_plugins"]


def test_kubelet_config_has_what_these_machines_need(tmp_path):
    config = nodeconf.kubelet_config(layout(tmp_path), node_ip=NODE_IP, sync_frequency="7s")
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["syncFrequency"] == "7s"
    assert config["clusterDNS"] == [NODE_IP]
    assert config["imageGCHighThresholdPercent"] == 100
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["readOnlyPort"] == 0
    for key in ("podLogsDir", "volumePluginDir", "tlsCertFile"):
        assert config[key].startswith(str(tmp_path)), key


def test_pod_network_and_proxy_agree_on_the_addresses(tmp_path):
    lay = layout(tmp_path)
    cni = nodeconf.cni_conflist(lay)
    bridge = cni["plugins"][0]
    (pod_range,) = bridge["ipam"]["ranges"][0]
    assert bridge["bridge"] == nodeconf.BRIDGE
    assert pod_range["subnet"] == nodeconf.POD_SUBNET
    assert bridge["ipam"]["dataDir"].startswith(str(lay.state))
    proxy = nodeconf.kube_proxy_config(lay)
    cluster = ipaddress.ip_network(proxy["clusterCIDR"])
    assert ipaddress.ip_network(nodeconf.POD_SUBNET).subnet_of(cluster)
    assert proxy["iptables"]["localhostNodePorts"] is False
    assert proxy["conntrack"]["maxPerCore"] == 0


def test_commands_use_the_node_address_and_the_non_default_ports(tmp_path):
    argv = nodeconf.commands(layout(tmp_path), TOOLS, node_ip=NODE_IP)
    assert list(argv) == list(nodeconf.COMPONENTS)
    api = argv["kube-apiserver"]
    assert f"--secure-port={PORTS.apiserver}" in api
    assert f"--advertise-address={NODE_IP}" in api
    assert "--authorization-mode=Node,RBAC" in api
    assert f"--node-ip={NODE_IP}" in argv["kubelet"]
    assert f"--listen-client-urls=http://127.0.0.1:{PORTS.etcd_client}" in argv["etcd"]
    assert "--allocate-node-cidrs=true" in argv["kube-controller-manager"]
    for name, args in argv.items():
        assert args[0] == TOOLS[name.upper().replace("-", "_")], name


def test_corefile_binds_the_node_address(tmp_path):
    text = nodeconf.corefile(layout(tmp_path), node_ip=NODE_IP)
    assert f"bind {NODE_IP}" in text
    assert "kubernetes cluster.local" in text
    assert "forward . /etc/resolv.conf" in text


def test_local_path_storage_class_is_the_default_and_binds_on_first_use():
    config_map, storage_class, shared = nodeconf.local_path_objects()
    assert set(config_map["data"]) == {"setup", "teardown"}
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    annotations = storage_class["metadata"]["annotations"]
    assert annotations["storageclass.kubernetes.io/is-default-class"] == "true"
    # the second class is for ReadWriteMany claims and never the default
    assert shared["metadata"]["name"] == nodeconf.SHARED_STORAGE_CLASS
    assert "annotations" not in shared["metadata"]
    assert shared["provisioner"] == storage_class["provisioner"]
    helper = nodeconf.helper_pod("localhost/lakehub/node-helper:abc")["spec"]["containers"][0]
    assert helper["image"] == "localhost/lakehub/node-helper:abc"
    assert helper["imagePullPolicy"] == "Never"


def test_each_storage_class_has_its_own_provisioner_configuration(tmp_path):
    """local-path-provisioner v0.0.30 refuses ReadWriteMany claims in its per-node mode
    and serves them in its shared-file-system mode; with per-class configurations a
    class it does not know is an error, so both must be listed."""
    config = nodeconf.local_path_config(layout(tmp_path))
    classes = config["storageClassConfigs"]
    assert set(classes) == {nodeconf.STORAGE_CLASS, nodeconf.SHARED_STORAGE_CLASS}
    (per_node,) = classes[nodeconf.STORAGE_CLASS]["nodePathMap"]
    assert per_node["paths"] == [str(layout(tmp_path).volumes)]
    # one mode per class: the provisioner rejects a class that sets both
    assert classes[nodeconf.SHARED_STORAGE_CLASS] == {
        "sharedFileSystemPath": str(layout(tmp_path).shared_volumes)
    }
    assert "nodePathMap" not in config and "sharedFileSystemPath" not in config


def test_certificates_are_signed_by_one_ca_and_private(tmp_path):
    certs = pki.issue(
        tmp_path / "pki", node_name="n1", node_ip=NODE_IP, service_ip=nodeconf.API_SERVICE_IP
    )
    ca = x509.load_pem_x509_certificate(certs.ca.read_bytes())

    def load(stem: str) -> x509.Certificate:
        cert = x509.load_pem_x509_certificate(certs.cert(stem).read_bytes())
        cert.verify_directly_issued_by(ca)
        return cert

    api = load("apiserver")
    sans = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert {NODE_IP, "127.0.0.1", nodeconf.API_SERVICE_IP} <= ips
    assert "kubernetes.default.svc.cluster.local" in sans.get_values_for_type(x509.DNSName)
    kubelet = load("kubelet")
    assert kubelet.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "system:node:n1"
    )
    assert kubelet.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:nodes"
    )
    admin = load("admin")
    usage = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for path in (tmp_path / "pki").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_kubeconfig_embeds_the_client_certificate():
    doc = pki.kubeconfig("https://192.0.2.2:16443", b"CA", b"CERT", b"KEY", "me")
    text = yaml.safe_dump(doc)
    assert yaml.safe_load(text)["users"][0]["user"]["client-certificate-data"] == "Q0VSVA=="
    assert doc["clusters"][0]["cluster"]["server"] == "https://192.0.2.2:16443"


SAVED = """\
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-X - [0:0]
:PODMAN-OWN - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j CNI-HOSTPORT-DNAT
-A OUTPUT -j PODMAN-OWN
-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-X
COMMIT
*filter
:INPUT ACCEPT [0:0]
COMMIT
"""


def test_removal_script_takes_only_our_chains_and_the_jumps_to_them():
    saved = host.parse_save(SAVED)
    script = host.removal_script(saved, before={"nat": ["CNI-HOSTPORT-DNAT"]})
    assert script.splitlines() == [
        "*nat",
        '-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-F KUBE-SERVICES",
        "-F KUBE-SVC-X",
        "-X KUBE-SERVICES",
        "-X KUBE-SVC-X",
        "COMMIT",
    ]
    # a portmap chain the run added is ours too
    assert "-X CNI-HOSTPORT-DNAT" in host.removal_script(saved, before={"nat": []})
    assert host.removal_script(host.parse_save("*filter\n:INPUT ACCEPT\nCOMMIT\n"), {}) == ""
