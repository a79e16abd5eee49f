"""lakehub's chart (helm/lakehub) through the real helm CLI, and what it puts on a cluster.

helm is built once from its Go module by scripts/ensure-helm.sh and cached outside the
repository.  The whole release is rendered: lakehub's templates with its real
dependencies, the published zero-to-jupyterhub 4.4.0 and dask-gateway charts, which
``helm/deploy.sh dependencies`` puts into the git-ignored ``helm/lakehub/charts/`` (from
the archives in $LAKEHUB_CHARTS where the chart repositories cannot be reached, as in
CI).  helm checks the values against each chart's own schema.  Every rendered object,
and the user pod and home PVC KubeSpawner builds from the values with lakehub's hooks
applied, must be valid Kubernetes 1.36 (the version of the test node) and 1.30 (the
oldest lakehub supports), in strict mode (unknown fields are errors); the dask-gateway
chart's custom resources are checked against the CustomResourceDefinitions it ships.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from hub_config import values as hv
from hub_config.scopes import TOKEN_ACCESS
from lakehub.contract import SITE_MOUNT
from sitefile import load_site, memory_bytes

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART = REPO_ROOT / "helm" / "lakehub"
EXAMPLES = REPO_ROOT / "examples"
CLUSTER_EXAMPLE = EXAMPLES / "site.cluster.yaml"
RELEASE = "lakehub"
RELEASE_NAMESPACE = "lakehub"
K8S_VERSIONS = ["1.30", "1.36"]

pytestmark = pytest.mark.chart


def cluster_sites() -> list[Path]:
    found = []
    for path in sorted(EXAMPLES.glob("site*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "kubernetes" in data:
            found.append(path)
    return found


CLUSTER_SITES = cluster_sites()


# --------------------------------------------------------------------------- fixtures


def run_helm(
    helm, *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*helm, *args], capture_output=True, text=True, timeout=120, check=False, input=input
    )
    if check:
        assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def write_values(folder: Path, values: dict, name: str = "values.yaml") -> Path:
    path = folder / name
    path.write_text(hv.dump(values), encoding="utf-8")
    return path


def render(helm, chart: Path, values_file: Path, *extra: str) -> list[dict]:
    done = run_helm(
        helm,
        "template",
        RELEASE,
        str(chart),
        "--namespace",
        RELEASE_NAMESPACE,
        "-f",
        str(values_file),
        *extra,
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def custom_resource_schemas(helm, chart: Path) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the OpenAPI schema of every CustomResourceDefinition the
    chart's dependencies ship in their crds/ folders."""
    values = hv.values_for_file(CLUSTER_EXAMPLE)  # dask on: its CRDs are included
    with_crds = run_helm(
        helm, "template", RELEASE, str(chart), "--include-crds", "-f", "-", input=hv.dump(values)
    )
    schemas = {}
    for crd in yaml.safe_load_all(with_crds.stdout):
        if not crd or crd["kind"] != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


@pytest.fixture(scope="session")
def crd_schemas(helm, chart) -> dict[tuple[str, str], dict]:
    return custom_resource_schemas(helm, chart)


def assert_valid(objects: list[dict], crd_schemas: dict | None = None) -> None:
    assert objects
    for obj in objects:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        schema = (crd_schemas or {}).get((obj["apiVersion"], obj["kind"]))
        if schema is not None:
            errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(obj)]
            assert not errors, f"{where} does not match its CustomResourceDefinition: {errors}"
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where} is not valid Kubernetes {version}: {exc.message}")


def by_kind(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


@pytest.fixture(scope="module", params=CLUSTER_SITES, ids=lambda p: p.name)
def site_values(request, tmp_path_factory) -> tuple[Path, dict, Path]:
    values = hv.values_for_file(request.param)
    folder = tmp_path_factory.mktemp("values")
    return request.param, values, write_values(folder, values)


@pytest.fixture(scope="module")
def rendered(helm, chart, site_values) -> list[dict]:
    _, _, values_file = site_values
    return render(helm, chart, values_file)


# --------------------------------------------------------------------------- lint, render


def test_helm_is_the_pinned_release(helm):
    done = run_helm(helm, "version", "--template", "{{.Version}}")
    pinned = next(
        line.split("LAKEHUB_HELM_VERSION:-")[1].split("}")[0]
        for line in (REPO_ROOT / "scripts" / "ensure-helm.sh").read_text().splitlines()
        if line.startswith("HELM_VERSION=")
    )
    assert done.stdout.strip() == pinned


def test_lint_strict(helm, chart, site_values):
    _, _, values_file = site_values
    done = run_helm(helm, "lint", "--strict", str(chart), "-f", str(values_file))
    assert "0 chart(s) failed" in done.stdout
    for level in ("[INFO]", "[WARNING]", "[ERROR]"):
        assert level not in done.stdout, done.stdout


def named(objects: list[dict]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def test_the_whole_release_renders_and_every_object_is_valid_kubernetes(
    rendered, site_values, crd_schemas
):
    """z2jh's objects with lakehub's values and lakehub's own, all valid."""
    path, values, _ = site_values
    assert_valid(rendered, crd_schemas)
    objects = named(rendered)
    # zero-to-jupyterhub: the hub, its database, the proxy and how students reach it
    assert {
        ("Deployment", "hub"),
        ("Deployment", "proxy"),
        ("Service", "hub"),
        ("Service", "proxy-public"),
        ("Service", "proxy-api"),
        ("PersistentVolumeClaim", "hub-db-dir"),
        ("Secret", "hub"),
        ("Role", "hub"),
        ("NetworkPolicy", "singleuser"),
    } <= objects
    # lakehub's own
    assert {
        ("ConfigMap", values["site"]["configMapName"]),
        ("ConfigMap", f"{values['cache']['service']['name']}-config"),
        ("Deployment", values["cache"]["service"]["name"]),
        ("Deployment", values["tokens"]["service"]["name"]),
        ("Role", values["tokens"]["service"]["name"]),
        ("NetworkPolicy", "lakehub-singleuser-egress"),
        ("PersistentVolumeClaim", values["cache"]["claim"]["name"]),
    } <= objects
    # the dask-gateway chart exactly when the site switches it on
    assert (("Deployment", "api-dask-gateway") in objects) == load_site(path).dask.enabled
    # no Secret but z2jh's own: the site's secrets are created beforehand
    assert [o["metadata"]["name"] for o in rendered if o["kind"] == "Secret"] == ["hub"]


def test_the_hub_runs_lakehubs_image_and_loads_its_configuration(rendered, site_values):
    _, values, _ = site_values
    (hub,) = by_kind(rendered, "Deployment", "hub")
    pod = hub["spec"]["template"]
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "hub"]
    assert container["image"] == "{name}:{tag}".format(**values["jupyterhub"]["hub"]["image"])
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert f"{hv.HUB_CONFIG_D}/lakehub.py" in mounts  # the loader (hub.extraFiles)
    assert SITE_MOUNT in mounts
    # a changed site file restarts the hub
    assert pod["metadata"]["annotations"][hv.SITE_CHECKSUM_ANNOTATION]
    env = {e["name"]: e for e in container["env"]}
    assert env["LAKEHUB_SITE"]["value"] == SITE_MOUNT
    assert not [e for e in container["env"] if "value" in e and "SECRET" in e["name"]]


def test_the_site_configmap_holds_the_site_file(rendered, site_values):
    path, values, _ = site_values
    (cm,) = by_kind(rendered, "ConfigMap", values["site"]["configMapName"])
    text = cm["data"][values["site"]["key"]]
    assert yaml.safe_load(text) == yaml.safe_load(path.read_text(encoding="utf-8"))
    hub = values["jupyterhub"]["hub"]
    assert {"name": "lakehub-site", "configMap": {"name": cm["metadata"]["name"]}} in hub[
        "extraVolumes"
    ]


def test_the_cache_claim_is_shared_and_survives_uninstall(rendered, site_values):
    path, values, _ = site_values
    claim = load_site(path).kubernetes.cache_claim
    (pvc,) = by_kind(rendered, "PersistentVolumeClaim", values["cache"]["claim"]["name"])
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == claim.size
    assert pvc["spec"].get("storageClassName") == claim.storage_class
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_the_cache_service_is_wired_to_the_hub(rendered, site_values):
    _, values, _ = site_values
    service = values["cache"]["service"]
    (deployment,) = by_kind(rendered, "Deployment", service["name"])
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # one writer, always
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "{name}:{tag}".format(**values["jupyterhub"]["hub"]["image"])
    assert container["command"][:3] == ["python3", "-m", "hub_services.cache.app"]
    env = {e["name"]: e for e in container["env"]}
    token = env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    # z2jh keeps one token per hub service, under the service's key in its "hub" Secret
    assert service["name"] in values["jupyterhub"]["hub"]["services"]
    assert token == {
        "name": values["hubSecretName"],
        "key": f"hub.services.{service['name']}.apiToken",
    }
    assert env["JUPYTERHUB_SERVICE_PREFIX"]["value"] == f"/services/{service['name']}/"
    assert all("value" not in e or "TOKEN" not in e["name"] for e in container["env"])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["cache"]["mountPath"] == values["cache"]["mountPath"]
    assert not mounts["cache"].get("readOnly")  # the only writer
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert (
        volumes["cache"]["persistentVolumeClaim"]["claimName"] == (values["cache"]["claim"]["name"])
    )
    assert volumes["rucio-admin"]["secret"]["secretName"] == (service["rucioAdminSecret"]["name"])
    (config_map,) = by_kind(rendered, "ConfigMap", f"{service['name']}-config")
    assert json.loads(config_map["data"]["config.json"]) == service["config"]
    (svc,) = by_kind(rendered, "Service", service["name"])
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert hv.cache_url() == f"http://{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}"


def test_network_policies_add_to_z2jh_for_user_pods_and_guard_the_cache(rendered, site_values):
    _, values, _ = site_values
    (egress,) = by_kind(rendered, "NetworkPolicy", "lakehub-singleuser-egress")
    assert egress["spec"]["podSelector"]["matchLabels"] == {
        "app": "jupyterhub",
        "release": RELEASE,
        "component": "singleuser-server",
    }
    assert egress["spec"]["policyTypes"] == ["Egress"]
    rules = egress["spec"]["egress"]
    assert rules[2:] == values["networkPolicy"]["singleuserEgress"]
    cache_rule, token_rule = rules[:2]
    assert cache_rule["ports"] == [{"protocol": "TCP", "port": values["cache"]["service"]["port"]}]
    assert token_rule["ports"] == [{"protocol": "TCP", "port": values["tokens"]["service"]["port"]}]
    assert token_rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "tokens"
    )
    (guard,) = by_kind(rendered, "NetworkPolicy", values["cache"]["service"]["name"])
    assert guard["spec"]["policyTypes"] == ["Ingress"]
    sources = [p["podSelector"]["matchLabels"] for p in guard["spec"]["ingress"][0]["from"]]
    components = {s.get("component") or s.get("app.kubernetes.io/component") for s in sources}
    assert components == {"hub", "proxy", "singleuser-server", "cache-warm"}


def test_the_token_service_is_wired_to_the_hub_and_may_only_rewrite_secrets(rendered, site_values):
    path, values, _ = site_values
    site = load_site(path)
    service = values["tokens"]["service"]
    hub = values["jupyterhub"]["hub"]
    (deployment,) = by_kind(rendered, "Deployment", service["name"])
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    assert pod["spec"]["serviceAccountName"] == service["name"]
    (container,) = pod["spec"]["containers"]
    assert container["command"][:3] == ["python3", "-m", "hub_services.issuer"]
    assert container["command"][-2:] == ["--renew-secrets-in", RELEASE_NAMESPACE]
    env = {e["name"]: e for e in container["env"]}
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": values["hubSecretName"],
        "key": f"hub.services.{service['name']}.apiToken",
    }
    # secrets only by reference or as mounted files, never as plain values
    assert all("value" not in e or "SECRET" not in e["name"] for e in container["env"])
    if site.auth.type == "oidc":
        assert "--source=token_exchange" in container["command"]
        assert env["OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == (
            site.auth.secret_name
        )
        role = hub["loadRoles"][service["name"]]
        assert set(role["scopes"]) == {"read:users:name", "admin:auth_state"}
    else:
        assert "--source=hub_issuer" in container["command"]
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["signing-key"]["secret"]["secretName"] == site.kubernetes.issuer_key_secret
        assert f"--issuer-url={site.kubernetes.token_issuer_url}" in container["command"]
    # its own Role: find a user's Secrets and replace the token in them, nothing else
    (role,) = by_kind(rendered, "Role", service["name"])
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "update"]}
    ]
    (binding,) = by_kind(rendered, "RoleBinding", service["name"])
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": service["name"], "namespace": RELEASE_NAMESPACE}
    ]
    # the hub knows it as a service; sessions may call it and are told where it is
    (svc,) = by_kind(rendered, "Service", service["name"])
    url = f"http://{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}"
    assert hub["services"][service["name"]]["url"] == url
    assert hub["extraEnv"]["LAKEHUB_TOKEN_URL"] == url
    assert TOKEN_ACCESS in hub["loadRoles"]["user"]["scopes"]
    assert TOKEN_ACCESS in hub["config"]["Spawner"]["server_token_scopes"]
    (guard,) = by_kind(rendered, "NetworkPolicy", service["name"])
    sources = guard["spec"]["ingress"][0]["from"]
    assert sorted(p["podSelector"]["matchLabels"]["component"] for p in sources) == [
        "hub",
        "proxy",
        "singleuser-server",
    ]


def test_the_hub_may_read_the_kubelets_stats_and_nothing_more_of_the_nodes(rendered):
    """The usage collector's rights: nodes/stats (get) and nodes (get, list), bound to
    z2jh's own hub ServiceAccount; never nodes/proxy (its GET reaches the kubelet's exec)."""
    assert len(by_kind(rendered, "ServiceAccount", "hub")) == 1  # z2jh's, the hub's
    name = f"{RELEASE_NAMESPACE}-lakehub-usage"
    (role,) = by_kind(rendered, "ClusterRole", name)
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes/stats"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
    ]
    (binding,) = by_kind(rendered, "ClusterRoleBinding", name)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hub", "namespace": RELEASE_NAMESPACE}
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": name,
    }
    (hub,) = by_kind(rendered, "Deployment", "hub")
    assert hub["spec"]["template"]["spec"]["serviceAccountName"] == "hub"
    granted = [r for obj in rendered if obj["kind"].endswith("Role") for r in obj["rules"]]
    assert not any("nodes/proxy" in r.get("resources", []) for r in granted)


def pod_templates(objects: list[dict]) -> list[tuple[str, dict]]:
    """(kind/name, pod spec) of every workload's pod template."""
    found = []
    for obj in objects:
        template = obj.get("spec", {}).get("template")
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job") and template:
            found.append((f"{obj['kind']}/{obj['metadata']['name']}", template["spec"]))
    return found


def test_private_secret_files_are_readable_by_the_pods_own_user(rendered):
    """Found on a real node: the token service could not read its signing key (mode
    0440, owned by root) because its pod set no fsGroup and it runs as uid 1000.  A
    Secret file that others may not read must belong to a group the reading container
    runs with: the pod's fsGroup, equal to the container's runAsGroup."""
    checked = 0
    for where, spec in pod_templates(rendered):
        pod_context = spec.get("securityContext") or {}
        for volume in spec.get("volumes") or []:
            secret = volume.get("secret")
            if secret is None:
                continue
            default = secret.get("defaultMode", 0o644)
            modes = [i.get("mode", default) for i in secret.get("items") or []] or [default]
            if all(mode & 0o004 for mode in modes):
                continue  # world-readable: nothing to check
            assert all(mode & 0o040 for mode in modes), f"{where}: {volume['name']} {modes}"
            for container in spec.get("initContainers", []) + spec["containers"]:
                mounts = {m["name"] for m in container.get("volumeMounts") or []}
                if volume["name"] not in mounts:
                    continue
                context = {**pod_context, **(container.get("securityContext") or {})}
                if context.get("runAsUser") == 0:
                    continue
                checked += 1
                assert pod_context.get("fsGroup") is not None, f"{where}: no fsGroup"
                assert (
                    context.get("runAsGroup", pod_context["fsGroup"]) == (pod_context["fsGroup"])
                ), f"{where}/{container['name']} cannot read {volume['name']}"
    assert checked  # the cache service's admin password at least


def test_optional_objects_are_valid_too(helm, chart, tmp_path, crd_schemas):
    """NFS volume, warm-up job and notebooks job: off by default, valid when on."""
    data = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    data["kubernetes"]["cache_claim"] = {
        "nfs": {"server": "10.40.0.9", "path": "/exports/lakehub-cache"},
        "size": "1Ti",
    }
    data["kubernetes"]["public_url"] = None
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    values = hv.values_for_file(site_file)
    values["cache"]["warm"]["enabled"] = True
    values["cache"]["warm"]["course"]["datasets"] = ["opendata:demo.GamGam"]
    values["notebooksJob"] = {**values["notebooksJob"], "enabled": True, "command": ["true"]}
    objects = render(helm, chart, write_values(tmp_path, values))
    assert_valid(objects, crd_schemas)
    (pv,) = by_kind(objects, "PersistentVolume")
    (pvc,) = by_kind(objects, "PersistentVolumeClaim", values["cache"]["claim"]["name"])
    assert pv["spec"]["nfs"] == {"server": "10.40.0.9", "path": "/exports/lakehub-cache"}
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    assert pvc["spec"]["storageClassName"] == pv["spec"]["storageClassName"] == ""
    jobs = {
        j["metadata"]["name"]: j
        for j in by_kind(objects, "Job")
        if j["metadata"]["name"].startswith("lakehub-")  # z2jh has its image-awaiter job
    }
    assert set(jobs) == {"lakehub-cache-warm", "lakehub-course-notebooks"}
    for job in jobs.values():
        assert "post-upgrade" in job["metadata"]["annotations"]["helm.sh/hook"]
    warm = jobs["lakehub-cache-warm"]["spec"]["template"]["spec"]["containers"][0]
    assert warm["command"][:3] == ["python3", "-m", "hub_services.cache.warm"]
    (course,) = by_kind(objects, "ConfigMap", "lakehub-cache-warm-course")
    assert yaml.safe_load(course["data"]["course.yaml"])["datasets"] == ["opendata:demo.GamGam"]


def test_enabled_jobs_without_their_input_fail_with_a_clear_message(helm, chart, tmp_path):
    values = hv.values_for_file(CLUSTER_EXAMPLE)
    values["cache"]["warm"]["enabled"] = True
    done = run_helm(
        helm,
        "template",
        RELEASE,
        str(chart),
        "-f",
        str(write_values(tmp_path, values)),
        check=False,
    )
    assert done.returncode != 0
    assert "cache.warm.course.datasets" in done.stderr


def test_the_chart_schema_rejects_bad_lakehub_values(helm, chart, tmp_path):
    values = hv.values_for_file(CLUSTER_EXAMPLE)
    values["cache"]["claim"]["size"] = "a lot"
    done = run_helm(
        helm,
        "lint",
        "--strict",
        str(chart),
        "-f",
        str(write_values(tmp_path, values)),
        check=False,
    )
    assert done.returncode != 0
    assert "size" in done.stdout + done.stderr


def test_make_template_prints_the_whole_release(chart, crd_schemas, deploy_script):
    done = deploy_script("template", SITE=str(CLUSTER_EXAMPLE))
    assert done.returncode == 0, done.stderr
    objects = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert_valid(objects, crd_schemas)
    assert {("Deployment", "hub"), ("Deployment", "lakehub-cache")} <= named(objects)


def test_without_the_dependencies_the_scripts_say_where_to_get_them(helm, tmp_path, deploy_script):
    done = deploy_script("dependencies", LAKEHUB_CHARTS=str(tmp_path))
    assert done.returncode == 1
    assert f"{tmp_path}/jupyterhub-4.4.0.tgz is missing" in done.stderr
    assert "Traceback" not in done.stderr


def test_deploy_script_refuses_a_site_without_a_kubernetes_section(helm, deploy_script):
    done = deploy_script("template", SITE=str(EXAMPLES / "site.local.yaml"))
    assert done.returncode == 1
    assert "kubernetes: required" in done.stderr
    assert done.stdout == ""


# --------------------------------------------------------------------------- user pods


def kubespawner_config(values: dict, profile: dict):
    """KubeSpawner traits from the singleuser values the way the z2jh hub maps them
    (image, resources, home PVC, extra volumes and environment), one profile applied."""
    from traitlets.config import Config

    su = values["jupyterhub"]["singleuser"]
    c = Config()
    ks = c.KubeSpawner
    ks.image = "{name}:{tag}".format(**su["image"])
    ks.uid = 1000
    ks.fs_gid = 100
    ks.default_url = su["defaultUrl"]
    ks.environment = dict(su["extraEnv"])
    ks.storage_pvc_ensure = True
    ks.pvc_name_template = "claim-{user_server}"
    ks.storage_capacity = "10Gi"
    ks.storage_access_modes = ["ReadWriteOnce"]
    ks.volumes = [
        {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
        *su["storage"]["extraVolumes"],
    ]
    ks.volume_mounts = [
        {"name": "home", "mountPath": "/home/jovyan"},
        *su["storage"]["extraVolumeMounts"],
    ]
    for trait, value in profile["kubespawner_override"].items():
        setattr(ks, trait, value)
    return c


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch):
    """A kubeconfig pointing nowhere: KubeSpawner needs one, nothing connects."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "none", "user": {"token": "unused"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))


async def test_user_pods_and_home_claims_are_valid_with_lakehub_hooks(kubeconfig):
    """Every profile of the cluster example: KubeSpawner's pod with lakehub's
    modify_pod_hook applied (hub_config.kubernetes, configured from the hub's
    environment in the values) and its home PVC."""
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner

    from hub_config.kubernetes import configure

    values = hv.values_for_file(CLUSTER_EXAMPLE)
    site = load_site(CLUSTER_EXAMPLE)
    hub_env = {
        k: v for k, v in values["jupyterhub"]["hub"]["extraEnv"].items() if isinstance(v, str)
    }
    for profile in values["jupyterhub"]["singleuser"]["profileList"]:
        c = kubespawner_config(values, profile)
        configure(c, site=site, environ=hub_env)
        spawner = KubeSpawner(config=copy.deepcopy(c), _mock=True)
        pod = await spawner.get_pod_manifest()
        pod = await spawner.modify_pod_hook(spawner, pod)
        pvc = spawner.get_pvc_manifest()
        async with ApiClient() as api:
            manifests = [api.sanitize_for_serialization(o) for o in (pod, pvc)]
        for m, kind in zip(manifests, ("Pod", "PersistentVolumeClaim"), strict=True):
            m.setdefault("apiVersion", "v1")
            m.setdefault("kind", kind)
        assert_valid(manifests)
        pod_manifest = manifests[0]
        (container,) = pod_manifest["spec"]["containers"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["lakehub-cache"]["readOnly"] is True
        volumes = {v["name"]: v for v in pod_manifest["spec"]["volumes"]}
        assert volumes["lakehub-cache"]["persistentVolumeClaim"]["readOnly"] is True
        limits = container["resources"]["limits"]
        assert int(limits["memory"]) == memory_bytes(profile["kubespawner_override"]["mem_limit"])
        # the Rucio token is a mounted file, never a value in the pod spec (the hub API
        # token joins the Secret when it is created: tests/test_k8s.py)
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert "BEARER_TOKEN" not in env
        assert not any(str(v).startswith("eyJ") for v in env.values())
