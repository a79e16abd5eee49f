"""The Dask Gateway pieces that need no running hub: the site switch, the session
environment, the gateway's settings and traitlets configuration, lakehub's backend rules,
the Kubernetes values and per-user pod pieces, and the pinned versions.  The classes
configured here are dask-gateway-server's own; nothing is simulated but ``os.chown``
(recorded instead of done) and the account lookup in the chown test."""

from __future__ import annotations

import os
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from traitlets.config import Config

from hub_config import values as hv
from hub_config.scopes import DASK_ACCESS as ACCESS
from hub_services.dask_gateway import backend, kube
from hub_services.dask_gateway.config import cluster_env, configure, gateway_settings
from lakehub.contract import TOKEN_MOUNT
from sitefile import SiteError, load_site, parse_site
from spawner_hooks.session import DaskGateway, SessionPaths, session_env

REPO = Path(__file__).resolve().parent.parent
LOCAL = REPO / "examples" / "site.local.yaml"
CLUSTER = REPO / "examples" / "site.cluster.yaml"


def local_site(**dask):
    data = yaml.safe_load(LOCAL.read_text())
    data["dask"] = {"enabled": True, **dask}
    return parse_site(data)


def test_dask_is_off_unless_the_site_says_so():
    data = yaml.safe_load(LOCAL.read_text())
    del data["dask"]
    assert parse_site(data).dask.enabled is False


@pytest.mark.parametrize(
    ("dask", "expected"),
    [
        ({"max_workers_per_user": 0}, "dask.max_workers_per_user"),
        ({"worker_memory": "2 GB"}, "dask.worker_memory: expected a size"),
        ({"idle_timeout_seconds": 5}, "dask.idle_timeout_seconds"),
        ({"worker_cores": "many"}, "dask.worker_cores"),
        ({"max_clusters": 2}, "dask.max_clusters: unknown field"),
    ],
)
def test_bad_dask_settings_name_the_field(dask, expected):
    with pytest.raises(SiteError) as caught:
        local_site(**dask)
    assert expected in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_the_gateway_port_must_not_clash(tmp_path):
    data = yaml.safe_load(LOCAL.read_text())
    data["local"]["dask_gateway_port"] = data["local"]["hub_port"]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SiteError, match="dask_gateway_port must differ"):
        load_site(path)


def test_sessions_get_the_gateway_from_their_environment_and_no_secret():
    paths = SessionPaths(Path("/home/u/.lakehub"))
    assert not any(k.startswith("DASK") for k in session_env(paths))
    gateway = DaskGateway("http://hub/services/dask-gateway", "gateway://gw:8786")
    env = session_env(paths, dask=gateway)
    assert env["DASK_GATEWAY__ADDRESS"] == "http://hub/services/dask-gateway"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://gw:8786"
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    assert env["DASK_LABEXTENSION__FACTORY__MODULE"] == "dask_gateway"
    assert not any(re.search("TOKEN|SECRET|PASSWORD", k) for k in env if k.startswith("DASK"))


def gateway_config(tmp_path, isolated=True) -> tuple[dict, Config]:
    site = local_site(max_workers_per_user=3, worker_cores=2, worker_memory="1G")
    settings = gateway_settings(
        site,
        port=8013,
        clusters_directory=str(tmp_path / "clusters"),
        home_template="/homes/{username}",
        bin_dir="/envs/analysis/bin",
        isolated=isolated,
    )
    c = Config()
    configure(c, settings)
    return settings, c


def test_the_gateway_configuration_reaches_dask_gateway_servers_own_classes(tmp_path):
    from dask_gateway_server.auth import JupyterHubAuthenticator
    from dask_gateway_server.backends.local import LocalClusterConfig

    settings, c = gateway_config(tmp_path)
    assert settings["address"] == "127.0.0.1:8013"
    be = backend.LakehubLocalBackend(config=c)
    assert be.clusters_directory == str(tmp_path / "clusters")
    assert be.home_template == "/homes/{username}"
    assert be.inherited_environment == ["LANG", "LC_ALL"]
    cluster = LocalClusterConfig(config=c)
    assert cluster.cluster_max_workers == 3
    assert cluster.worker_cores == 2
    assert cluster.worker_memory == 1024**3
    assert cluster.idle_timeout == 1800
    assert cluster.worker_cmd == ["/envs/analysis/bin/dask-worker"]
    auth = JupyterHubAuthenticator(config=c)
    assert auth.jupyterhub_service_name == "dask-gateway"
    assert auth.use_service_access_scopes is True  # only tokens allowed for this service
    assert ACCESS == "access:services!service=dask-gateway"
    assert c.DaskGateway.backend_class.endswith("LakehubLocalBackend")
    _, shared = gateway_config(tmp_path, isolated=False)
    assert shared.DaskGateway.backend_class.endswith("SharedAccountBackend")


def test_a_clusters_environment_comes_from_the_authenticated_name_only():
    env = cluster_env("/homes/{username}", "/envs/analysis/bin", "alice")
    assert env["BEARER_TOKEN_FILE"] == "/homes/alice/.lakehub/rucio-token"
    assert env["RUCIO_CONFIG"] == "/homes/alice/.lakehub/rucio.cfg"
    assert env["HOME"] == "/homes/alice"
    assert env["PATH"].split(os.pathsep)[0] == "/envs/analysis/bin"


def test_only_the_working_folder_changes_owner(tmp_path, monkeypatch):
    """dask-gateway-server 2026.3.0 hands its chown step the certificate paths one
    character at a time ('/', 't', 'm', ...): lakehub's backend must never chown '/'."""
    clusters = tmp_path / "clusters"
    workdir = clusters / "abc"
    (workdir / ".certs").mkdir(parents=True)
    (workdir / "logs").mkdir()
    for name in ("dask.crt", "dask.pem"):
        (workdir / ".certs" / name).write_bytes(b"x")
    upstream_list = [str(workdir), str(workdir / ".certs"), str(workdir / "logs")]
    upstream_list.extend(str(workdir / ".certs" / "dask.crt"))  # as upstream does
    chowned = []
    monkeypatch.setattr(backend.os, "chown", lambda p, *a, **k: chowned.append(p))
    monkeypatch.setattr(backend, "getpwnam", lambda name: type("E", (), {"pw_uid": 1, "pw_gid": 1}))
    be = backend.LakehubLocalBackend(clusters_directory=str(clusters))
    be.set_file_permissions(upstream_list, "alice")
    assert "/" not in chowned
    assert sorted(chowned) == sorted(str(p) for p in [workdir, *workdir.rglob("*")])
    with pytest.raises(Exception, match="unexpected cluster working folder"):
        backend.owned_paths("/", str(clusters))


# --------------------------------------------------------------------------- Kubernetes


def test_each_users_pods_mount_the_cache_read_only_and_only_their_own_token():
    alice = kube.user_pod_overrides("alice", cache_claim="lakehub-cache", cache_mount="/srv/c")
    bob = kube.user_pod_overrides("bob", cache_claim="lakehub-cache", cache_mount="/srv/c")
    secret = {v["name"]: v for v in alice["worker_extra_pod_config"]["volumes"]}
    assert secret[kube.TOKEN_VOLUME]["secret"]["secretName"] == kube.token_secret_name("alice")
    assert kube.token_secret_name("alice") != kube.token_secret_name("bob")
    assert alice != bob
    assert alice["environment"] == {"BEARER_TOKEN_FILE": f"{TOKEN_MOUNT}/rucio-token"}
    for role in ("scheduler", "worker"):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"dask-{role}"},
            "spec": {
                **alice[f"{role}_extra_pod_config"],
                "containers": [
                    {"name": role, "image": "lakehub/singleuser:0.1.0"}
                    | alice[f"{role}_extra_container_config"]
                ],
            },
        }
        kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)
        mounts = pod["spec"]["containers"][0]["volumeMounts"]
        assert all(m["readOnly"] for m in mounts)


def test_the_gateway_on_kubernetes_gets_the_sites_limits():
    values = hv.values_for_file(CLUSTER)
    env = {e["name"]: e["value"] for e in values["dask-gateway"]["gateway"]["env"]}
    c = Config()
    kube.configure(c, env)
    site = load_site(CLUSTER)
    assert c.KubeClusterConfig.cluster_max_workers == site.dask.max_workers_per_user
    assert c.KubeClusterConfig.idle_timeout == site.dask.idle_timeout_seconds
    assert c.DaskGateway.backend_class == "hub_services.dask_gateway.kube.LakehubKubeBackend"
    assert issubclass(kube.LakehubKubeBackend, backend.OneClusterPerUser)

    class User:
        name = "alice"

    overrides = c.KubeBackend.cluster_options.handler({}, User())
    assert overrides["environment"]["BEARER_TOKEN_FILE"].endswith("/rucio-token")


def test_the_chart_values_make_the_gateway_a_hub_service_for_users():
    values = hv.values_for_file(CLUSTER)
    site = load_site(CLUSTER)
    dg = values["dask-gateway"]
    jh = values["jupyterhub"]
    assert dg["enabled"] is True
    auth = dg["gateway"]["auth"]
    assert auth["type"] == "jupyterhub"
    assert auth["jupyterhub"]["jupyterhubServiceName"] == "dask-gateway"
    assert "apiToken" not in auth["jupyterhub"]  # read from z2jh's hub Secret
    assert "dask-gateway" in jh["hub"]["services"]
    assert ACCESS in jh["hub"]["loadRoles"]["user"]["scopes"]
    assert ACCESS in jh["hub"]["config"]["Spawner"]["server_token_scopes"]
    assert jh["singleuser"]["extraEnv"]["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    assert dg["gateway"]["prefix"] == "/services/dask-gateway"
    worker = dg["gateway"]["backend"]["worker"]
    assert worker["cores"]["limit"] == site.dask.worker_cores
    assert worker["memory"]["limit"] == 4 * 1024**3
    assert dg["gateway"]["backend"]["image"]["name"] == site.kubernetes.images.singleuser.repository


def test_without_the_switch_there_is_no_gateway(tmp_path):
    data = yaml.safe_load(CLUSTER.read_text())
    data["dask"] = {"enabled": False}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    values = hv.values_for_file(path)
    assert values["dask-gateway"] == {"enabled": False}
    assert "dask-gateway" not in values["jupyterhub"]["hub"]["services"]
    assert not any(k.startswith("DASK") for k in values["jupyterhub"]["singleuser"]["extraEnv"])
    assert ACCESS not in values["jupyterhub"]["hub"]["loadRoles"]["user"]["scopes"]


def _pinned(lock: str, package: str) -> str:
    text = (REPO / "requirements" / lock).read_text()
    return re.search(rf"^{re.escape(package)}==(\S+)$", text, re.MULTILINE).group(1)


def test_client_server_workers_and_chart_versions_agree():
    server = _pinned("hub.txt", "dask-gateway-server")
    assert _pinned("dev.txt", "dask-gateway-server") == server
    assert _pinned("analysis.txt", "dask-gateway") == server  # sessions and workers
    chart = yaml.safe_load((REPO / "helm" / "lakehub" / "Chart.yaml").read_text())
    (dep,) = [d for d in chart["dependencies"] if d["name"] == "dask-gateway"]
    assert dep["version"] == server
    assert dep["condition"] == "dask-gateway.enabled"
