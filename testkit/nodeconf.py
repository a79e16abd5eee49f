"""What the one-node test cluster runs: addresses, ports, folders, configuration files
and command lines, as pure functions of a :class:`Layout` (no I/O here).

The choices follow a trial that worked on these machines (cgroup v1, no
CAP_SYS_RESOURCE, nothing pullable): kubelet ``failCgroupV1: false``; containerd's
``restrict_oom_score_adj = true`` and a pinned local sandbox image; image garbage
collection kept away from the imported images; a bridge network with host-local
addresses; kube-proxy in iptables mode leaving the host's conntrack settings alone;
CoreDNS on the node's address; local-path-provisioner whose helper pods use a local
image.  Every port is a non-default one so that nothing collides with other tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "lakehub-node"
BRIDGE = "lh0"
CNI_NETWORK = "lakehub"
CLUSTER_CIDR = "10.244.0.0/16"
# the controller-manager gives the first (only) node the first /24 of the cluster CIDR
POD_SUBNET = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
CLUSTER_DOMAIN = "cluster.local"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
PROVISIONER = "rancher.io/local-path"
STORAGE_CLASS = "local-path"  # the default: one folder per claim, this node only
# ReadWriteMany claims (the shared dataset cache): local-path-provisioner's shared-file-
# system mode, in which every claim's folder is valid on every node (here: the one node)
SHARED_STORAGE_CLASS = "local-path-shared"
DEFAULT_SYNC_FREQUENCY = "10s"


@dataclass(frozen=True)
class Ports:
    etcd_client: int = 23790
    etcd_peer: int = 23800
    apiserver: int = 16443
    controller_manager: int = 20257
    scheduler: int = 20259
    kubelet: int = 20250
    kubelet_healthz: int = 20248
    proxy_healthz: int = 20256
    proxy_metrics: int = 20249
    dns: int = 53
    dns_health: int = 18080
    dns_ready: int = 18181


PORTS = Ports()


@dataclass(frozen=True)
class Layout:
    """Where one node keeps its files.

    ``state``: everything of one run (pid files, logs, certificates, etcd, the kubelet's
    root, containerd's state and socket, volumes); ``containerd_root``: containerd's
    content store and snapshots, kept across runs under the tools cache so that an image
    is imported once.
    """

    state: Path
    containerd_root: Path

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def etcd(self) -> Path:
        return self.state / "etcd"

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.state / "pod-logs"

    @property
    def containerd_state(self) -> Path:
        return self.state / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_state / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.state / "cni" / "ipam"

    @property
    def volumes(self) -> Path:
        """Where local-path-provisioner makes the PersistentVolumes' folders."""
        return self.state / "volumes"

    @property
    def shared_volumes(self) -> Path:
        """The folders of ReadWriteMany claims (the shared StorageClass)."""
        return self.state / "shared-volumes"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (cluster-admin, client certificate)."""
        return self.state / "kubeconfig"

    @property
    def info(self) -> Path:
        """What ``down`` needs to undo a run: node address, tools, the host before."""
        return self.state / "node.json"

    def component_kubeconfig(self, stem: str) -> Path:
        return self.pki / f"{stem}.kubeconfig"

    def config_file(self, name: str) -> Path:
        return self.config / name


# --- configuration files --------------------------------------------------------------


def containerd_config(layout: Layout, *, runc: str, cni_bin_dir: str, pause_image: str) -> str:
    """containerd's config (version 3): own root, state, socket; CRI for the kubelet."""
    root, state = layout.containerd_root, layout.containerd_state
    # version 3: containerd 2.4 reads it (and logs that it migrated it to 4, where [grpc]
    # and [ttrpc] would become server plugins)
    return f"""# written by testkit/node.py
version = 3
root = {_toml(root)}
state = {_toml(state)}
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.tracing.processor.v1.otlp']

[grpc]
  address = {_toml(layout.containerd_socket)}

[ttrpc]
  address = {_toml(str(layout.containerd_socket) + ".ttrpc")}

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = {_toml(root / "opt")}

  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = {_toml(pause_image)}

  [plugins.'io.containerd.cri.v1.runtime']
    # required here: the machine lacks CAP_SYS_RESOURCE, so runc cannot give the sandbox
    # the negative oom_score_adj the kubelet asks for; clamp to containerd's own score
    restrict_oom_score_adj = true
    # network namespaces under the state folder, not /var/run/netns
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = {_toml(runc)}
          Root = {_toml(state / "runc")}
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [{_toml(cni_bin_dir)}]
      conf_dir = {_toml(layout.cni_conf_dir)}
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
"""


def _toml(value) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these values)."""
    return json.dumps(str(value))


def cni_conflist(layout: Layout) -> dict:
    """The pods' network: a bridge on the host, addresses from the node's /24."""
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cni_ipam),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(layout: Layout, *, node_ip: str, sync_frequency: str) -> dict:
    """The kubelet's KubeletConfiguration (see the module docstring for the choices)."""
    socket = f"unix://{layout.containerd_socket}"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": PORTS.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": PORTS.kubelet_healthz,
        "cgroupDriver": "cgroupfs",
        # these machines have cgroup v1; without this the kubelet refuses to start
        "failCgroupV1": False,
        "containerRuntimeEndpoint": socket,
        "imageServiceEndpoint": socket,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(layout.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(layout.pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(layout.pki / "kubelet-serving.key"),
        "clusterDomain": CLUSTER_DOMAIN,
        # CoreDNS runs on the host, bound to the node's address
        "clusterDNS": [node_ip],
        "resolvConf": "/etc/resolv.conf",
        "failSwapOn": False,
        "podLogsDir": str(layout.pod_logs),
        "volumePluginDir": str(layout.kubelet_root / "volume-plugins"),
        "serializeImagePulls": False,
        # imported images cannot be pulled again: never collect them
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # a small shared machine: evict only when really short
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
        },
        # how often mounted Secrets and ConfigMaps are refreshed (default 1m upstream)
        "syncFrequency": sync_frequency,
    }


def kube_proxy_config(layout: Layout) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.component_kubeconfig("kube-proxy"))},
        "mode": "iptables",
        "clusterCIDR": CLUSTER_CIDR,
        "hostnameOverride": NODE_NAME,
        "healthzBindAddress": f"127.0.0.1:{PORTS.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{PORTS.proxy_metrics}",
        # zeros: leave the host's conntrack sysctls as they are
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        # true would set net.ipv4.conf.all.route_localnet on the host
        "iptables": {"localhostNodePorts": False},
        # NodePorts on the node's address only
        "nodePortAddresses": ["primary"],
    }


def corefile(layout: Layout, *, node_ip: str) -> str:
    """CoreDNS as a host process on the node's address: Services by name, else the host's
    resolver."""
    return f""".:{PORTS.dns} {{
    bind {node_ip}
    errors
    health 127.0.0.1:{PORTS.dns_health}
    ready 127.0.0.1:{PORTS.dns_ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {layout.component_kubeconfig("coredns")}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . /etc/resolv.conf
    cache 30
    loop
    loadbalance
}}
"""


def local_path_config(layout: Layout) -> dict:
    """local-path-provisioner's config.json: one configuration per StorageClass.

    ``local-path`` (the default class) keeps each volume on this node (ReadWriteOnce);
    ``local-path-shared`` uses the provisioner's ``sharedFileSystemPath`` mode, which
    accepts ReadWriteMany claims because the folder is meant to be a file system every
    node mounts.  With one node, a host folder is exactly that; on several nodes it would
    have to be NFS or similar."""
    return {
        "storageClassConfigs": {
            STORAGE_CLASS: {
                "nodePathMap": [
                    {"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(layout.volumes)]}
                ]
            },
            SHARED_STORAGE_CLASS: {"sharedFileSystemPath": str(layout.shared_volumes)},
        },
        "cmdTimeoutSeconds": 60,
    }


def helper_pod(image: str) -> dict:
    """local-path-provisioner's helper pod template (v0.0.30 takes the image only from
    here, not from --helper-image); the provisioner adds command, volumes and node."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "priorityClassName": "system-node-critical",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "helper-pod", "image": image, "imagePullPolicy": "Never"}],
        },
    }


def local_path_objects() -> list[dict]:
    """The provisioner's scripts (mounted into helper pods), the default StorageClass and
    the shared one for ReadWriteMany claims."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "local-path-config", "namespace": "kube-system"},
            "data": {
                "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
            },
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": SHARED_STORAGE_CLASS},
            "provisioner": PROVISIONER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        },
    ]


# --- command lines --------------------------------------------------------------------


def commands(layout: Layout, tools: dict[str, str], *, node_ip: str) -> dict[str, list[str]]:
    """Each component's argv, in start order."""
    pki = layout.pki
    etcd_url = f"http://127.0.0.1:{PORTS.etcd_client}"
    peer_url = f"http://127.0.0.1:{PORTS.etcd_peer}"

    def kubeconfigs(stem: str) -> list[str]:
        path = layout.component_kubeconfig(stem)
        return [
            f"--kubeconfig={path}",
            f"--authentication-kubeconfig={path}",
            f"--authorization-kubeconfig={path}",
        ]

    return {
        "etcd": [
            tools["ETCD"],
            f"--name={NODE_NAME}",
            f"--data-dir={layout.etcd}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster={NODE_NAME}={peer_url}",
            "--unsafe-no-fsync",  # a test cluster: speed over durability
            "--log-level=warn",
        ],
        "kube-apiserver": [
            tools["KUBE_APISERVER"],
            f"--etcd-servers={etcd_url}",
            # pods reach it through the `kubernetes` Service at the node's address
            f"--bind-address={node_ip}",
            f"--advertise-address={node_ip}",
            f"--secure-port={PORTS.apiserver}",
            f"--cert-dir={layout.state / 'apiserver'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--profiling=false",
        ],
        "kube-controller-manager": [
            tools["KUBE_CONTROLLER_MANAGER"],
            *kubeconfigs("controller-manager"),
            "--bind-address=127.0.0.1",
            f"--secure-port={PORTS.controller_manager}",
            f"--cert-dir={layout.state / 'controller-manager'}",
            f"--flex-volume-plugin-dir={layout.state / 'controller-manager' / 'volume-plugins'}",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--allocate-node-cidrs=true",
            f"--cluster-cidr={CLUSTER_CIDR}",
            "--node-cidr-mask-size=24",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
        ],
        "kube-scheduler": [
            tools["KUBE_SCHEDULER"],
            *kubeconfigs("scheduler"),
            "--bind-address=127.0.0.1",
            f"--secure-port={PORTS.scheduler}",
            f"--cert-dir={layout.state / 'scheduler'}",
            "--leader-elect=false",
            "--profiling=false",
        ],
        "containerd": [
            tools["CONTAINERD"],
            f"--config={layout.config_file('containerd.toml')}",
        ],
        "kubelet": [
            tools["KUBELET"],
            f"--config={layout.config_file('kubelet.yaml')}",
            f"--kubeconfig={layout.component_kubeconfig('kubelet')}",
            f"--root-dir={layout.kubelet_root}",
            f"--cert-dir={layout.kubelet_root / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={node_ip}",
        ],
        "kube-proxy": [
            tools["KUBE_PROXY"],
            f"--config={layout.config_file('kube-proxy.yaml')}",
        ],
        "coredns": [
            tools["COREDNS"],
            "-conf",
            str(layout.config_file("Corefile")),
        ],
        "local-path-provisioner": [
            tools["LOCAL_PATH_PROVISIONER"],
            "start",
            f"--kubeconfig={layout.component_kubeconfig('local-path-provisioner')}",
            f"--config={layout.config_file('local-path.json')}",
            f"--helper-pod-file={layout.config_file('local-path-helper-pod.yaml')}",
            "--configmap-name=local-path-config",
            "--namespace=kube-system",
            "--service-account-name=default",
            f"--provisioner-name={PROVISIONER}",
            # required by v0.0.30 but unused: the helper pod template names the image
            f"--helper-image={tools['NODE_HELPER_IMAGE']}",
        ],
    }


COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
    "coredns",
    "local-path-provisioner",
)
