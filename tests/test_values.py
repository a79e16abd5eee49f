"""The Helm values rendered from site files (hub_config.values).

The values under ``jupyterhub:`` must be valid zero-to-jupyterhub 4.4.0 values: they are
merged with the chart's defaults and checked against the chart's own schema, both read
from the published chart archive that ``helm/deploy.sh dependencies`` puts into
``helm/lakehub/charts/`` (helm itself ignores the YAML schema z2jh ships).  lakehub's
own keys are checked against ``helm/lakehub/values.schema.json`` the same way.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from hub_config import values as hv
from hub_config.course_access import AUTHENTICATOR_CLASS
from sitefile import SiteError, load_site, parse_site
from spawner_hooks.kube_volumes import cache_volume, cache_volume_mount

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
CHART = REPO_ROOT / "helm" / "lakehub"
CLUSTER_EXAMPLE = EXAMPLES / "site.cluster.yaml"


def cluster_sites() -> list[Path]:
    """Every example site file that describes a cluster deployment."""
    found = []
    for path in sorted(EXAMPLES.glob("site*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "kubernetes" in data:
            found.append(path)
    return found


CLUSTER_SITES = cluster_sites()


def test_there_is_a_cluster_example():
    assert CLUSTER_EXAMPLE in CLUSTER_SITES


def z2jh_file(chart: Path, name: str) -> dict:
    """A YAML file of the z2jh 4.4.0 archive in helm/lakehub/charts/ (the published chart
    carries its schema as YAML, which helm itself does not read)."""
    with tarfile.open(chart / "charts" / "jupyterhub-4.4.0.tgz") as archive:
        member = archive.extractfile(f"jupyterhub/{name}")
        assert member is not None, f"jupyterhub/{name} is not in the z2jh archive"
        return yaml.safe_load(member.read())


@pytest.fixture(scope="session")
def z2jh_schema(chart) -> dict:
    return z2jh_file(chart, "values.schema.yaml")


@pytest.fixture(scope="session")
def z2jh_defaults(chart) -> dict:
    return z2jh_file(chart, "values.yaml")


def merge(base: dict, override: dict) -> dict:
    """Helm's merge of a values file over defaults: maps merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def schema_errors(schema: dict, instance: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ]


def walk(node, path=()):
    """Every (path, value) of a nested structure, leaves and inner nodes."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, (*path, k))
    elif isinstance(node, list):
        for n, v in enumerate(node):
            yield from walk(v, (*path, n))


@pytest.fixture(scope="module", params=CLUSTER_SITES, ids=lambda p: p.name)
def rendered(request) -> tuple[Path, dict]:
    return request.param, hv.values_for_file(request.param)


def _native_variant(tmp_path: Path) -> Path:
    """The cluster example with native (hub-kept) logins instead of OIDC."""
    data = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    data["auth"] = {"type": "native", "admin_users": ["teacher"]}
    data["kubernetes"]["issuer_url"] = "https://hub.phys101.example.org/services/lakehub-issuer"
    path = tmp_path / "site.native.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- schemas


def test_values_validate_against_the_z2jh_schema_merged_with_its_defaults(
    rendered, z2jh_schema, z2jh_defaults
):
    _, values = rendered
    merged = merge(z2jh_defaults, values["jupyterhub"])
    assert schema_errors(z2jh_schema, merged) == []


def test_native_site_values_validate_against_the_z2jh_schema(tmp_path, z2jh_schema, z2jh_defaults):
    values = hv.values_for_file(_native_variant(tmp_path))
    assert schema_errors(z2jh_schema, merge(z2jh_defaults, values["jupyterhub"])) == []


def test_the_z2jh_check_catches_a_misspelt_key(z2jh_schema, z2jh_defaults):
    # the check above must be able to fail: z2jh's schema forbids unknown keys
    values = hv.values_for_file(CLUSTER_EXAMPLE)
    values["jupyterhub"]["singleuser"]["storgae"] = {}
    errors = schema_errors(z2jh_schema, merge(z2jh_defaults, values["jupyterhub"]))
    assert any("storgae" in e for e in errors), errors


def test_lakehub_values_validate_against_the_chart_schema(rendered):
    _, values = rendered
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    # the defaults alone lack only what the renderer fills in (the shared names)
    assert all("is a required property" in e for e in schema_errors(schema, defaults))
    assert schema_errors(schema, merge(defaults, values)) == []


# --------------------------------------------------------------------------- secrets

SECRETISH = re.compile(r"(secret|password|passwd|token|crypt|private|key)", re.IGNORECASE)
# environment variables that would carry a secret's content
SECRET_ENV = re.compile(r"(SECRET|PASSWORD|PASSWD|CRYPT|PRIVATE|_TOKEN$|_KEY$)")
# keys whose values are names or paths of secrets, never their content
REFERENCE_KEYS = {
    "existingSecret",
    "secretName",
    "hubSecretName",
    "rucioAdminSecret",
    "hubTokenKey",
}
# z2jh keys that would carry secret material if set
Z2JH_SECRET_PATHS = [
    ("hub", "cookieSecret"),
    ("proxy", "secretToken"),
    ("hub", "db", "password"),
    ("hub", "config", "JupyterHub", "cookie_secret"),
    ("hub", "config", "CryptKeeper", "keys"),
    ("hub", "config", "ConfigurableHTTPProxy", "auth_token"),
]


def _get(node, path):
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def secret_problems(values: dict) -> list[str]:
    """Where the values carry something that looks like secret material."""
    problems = []
    jh = values["jupyterhub"]
    for path in Z2JH_SECRET_PATHS:
        if _get(jh, path) is not None:
            problems.append(f"jupyterhub.{'.'.join(path)} is set")
    for name, section in jh["hub"].get("config", {}).items():
        if "client_secret" in section:
            problems.append(f"hub.config.{name}.client_secret is set")
    for name, service in jh["hub"].get("services", {}).items():
        if {"api_token", "apiToken"} & set(service):
            problems.append(f"hub.services.{name} carries its token")
    for where in (jh["hub"].get("extraEnv", {}), jh["singleuser"].get("extraEnv", {})):
        for name, value in where.items():
            if SECRET_ENV.search(name) and not name.endswith("_FILE"):
                # a secret reaches a process only through a reference to a Secret
                ok = isinstance(value, dict) and "secretKeyRef" in value.get("valueFrom", {})
                if not ok:
                    problems.append(f"environment variable {name} is a plain value")
    for path, value in walk(values):
        key = str(path[-1]) if path else ""
        if not isinstance(value, str) or key in REFERENCE_KEYS or key.startswith("checksum/"):
            continue
        is_path_or_url = value.startswith("/") or "://" in value
        if not is_path_or_url and re.fullmatch(r"[A-Za-z0-9+/=_-]{32,}", value):
            problems.append(f"{'.'.join(map(str, path))} looks like a key or token")
        elif SECRETISH.search(key) and not is_path_or_url and len(value) >= 32:
            problems.append(f"{'.'.join(map(str, path))} looks like secret material")
    return problems


def test_no_secret_material_in_the_values(rendered):
    _, values = rendered
    assert secret_problems(values) == []


@pytest.mark.parametrize(
    "plant",
    [
        lambda v: v["jupyterhub"]["hub"].update(cookieSecret="0" * 64),
        lambda v: v["jupyterhub"]["hub"]["extraEnv"].update(OAUTH_CLIENT_SECRET="hunter2"),
        lambda v: v["jupyterhub"]["hub"]["services"]["lakehub-cache"].update(apiToken="x"),
        lambda v: v["cache"]["service"]["config"].update(extra="a3F9" * 10),
    ],
    ids=["cookie-secret", "plain-env", "service-token", "random-string"],
)
def test_the_secret_check_finds_planted_secrets(plant):
    values = hv.values_for_file(CLUSTER_EXAMPLE)
    plant(values)
    assert secret_problems(values) != []


def test_oidc_secrets_come_from_the_named_secret(rendered):
    path, values = rendered
    site = load_site(path)
    hub = values["jupyterhub"]["hub"]
    if site.auth.type != "oidc":
        assert "existingSecret" not in hub
        return
    assert hub["existingSecret"] == site.auth.secret_name
    ref = hub["extraEnv"]["OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": site.auth.secret_name, "key": "client-secret"}


def _secret_mount(hub: dict, volume_name: str) -> tuple[dict, dict]:
    volume = next(v for v in hub["extraVolumes"] if v["name"] == volume_name)
    mount = next(m for m in hub["extraVolumeMounts"] if m["name"] == volume_name)
    assert mount["readOnly"] is True
    return volume, mount


def test_cache_service_reads_the_rucio_admin_password_from_a_secret(rendered):
    path, values = rendered
    site = load_site(path)
    service = values["cache"]["service"]
    assert service["rucioAdminSecret"] == {
        "name": site.kubernetes.rucio_admin_secret,
        "key": "password",
    }
    password_file = service["config"]["rucio"]["password_file"]
    assert password_file == f"{service['rucioAdminMountPath']}/password"


def test_native_hub_reads_its_secrets_from_mounted_files(tmp_path):
    path = _native_variant(tmp_path)
    site = load_site(path)
    hub = hv.values_for_file(path)["jupyterhub"]["hub"]
    env = hub["extraEnv"]
    for volume_name, secret, variable in (
        (
            "lakehub-rucio-admin",
            site.kubernetes.rucio_admin_secret,
            "LAKEHUB_RUCIO_ADMIN_PASSWORD_FILE",
        ),
        ("lakehub-issuer-key", site.kubernetes.issuer_key_secret, "LAKEHUB_ISSUER_KEY_FILE"),
    ):
        volume, mount = _secret_mount(hub, volume_name)
        assert volume["secret"]["secretName"] == secret
        # group-readable: the hub runs as uid 1000 with fsGroup 1000, the file is root's
        assert volume["secret"]["items"][0]["mode"] == 0o440
        assert env[variable].startswith(mount["mountPath"] + "/")
    assert env["LAKEHUB_TOKEN_SOURCE"] == "hub_issuer"
    assert env["LAKEHUB_ISSUER_URL"] == site.kubernetes.issuer_url
    assert env["LAKEHUB_RUCIO_ADMIN_USERNAME"] == site.kubernetes.rucio_admin_username


OIDC_SITES = [p for p in CLUSTER_SITES if load_site(p).auth.type == "oidc"]


@pytest.fixture(scope="module", params=OIDC_SITES, ids=lambda p: p.name)
def oidc_rendered(request) -> tuple[Path, dict]:
    return request.param, hv.values_for_file(request.param)


def test_oidc_hub_holds_no_rucio_or_signing_secret(oidc_rendered):
    _, values = oidc_rendered
    hub = values["jupyterhub"]["hub"]
    assert [v["name"] for v in hub["extraVolumes"]] == ["lakehub-site"]
    assert hub["extraEnv"]["LAKEHUB_TOKEN_SOURCE"] == "token_exchange"
    assert not any(k.startswith(("LAKEHUB_ISSUER", "LAKEHUB_RUCIO_ADMIN")) for k in hub["extraEnv"])


# --------------------------------------------------------------------------- the pieces


def test_hub_loads_lakehub_from_jupyterhub_config_d(rendered):
    _, values = rendered
    hub = values["jupyterhub"]["hub"]
    (entry,) = hub["extraFiles"].values()
    assert entry["mountPath"] == ("/usr/local/etc/jupyterhub/jupyterhub_config.d/lakehub.py")
    lines = entry["stringData"].strip().splitlines()
    assert lines == ["from hub_config.kubernetes import configure", "configure(c)"]
    assert "extraConfig" not in hub
    # that loader and the Dask Gateway's (the chart has only extraConfig for it) are the
    # only Python in the values
    gateway_loader = ("dask-gateway", "gateway", "extraConfig", "lakehub")
    if values["dask-gateway"]["enabled"]:
        assert _get(values, gateway_loader).strip().splitlines() == [
            "from hub_services.dask_gateway.kube import configure",
            "configure(c)",
        ]
    for path, value in walk(values):
        if isinstance(value, str) and path[-1] != "stringData" and path != gateway_loader:
            assert "import " not in value and "configure(c)" not in value, path


def test_site_file_is_mounted_from_the_site_configmap(rendered):
    path, values = rendered
    hub = values["jupyterhub"]["hub"]
    assert hub["extraEnv"]["LAKEHUB_SITE"] == "/etc/lakehub/site.yaml"
    volume = next(v for v in hub["extraVolumes"] if v.get("configMap"))
    assert volume["configMap"]["name"] == values["site"]["configMapName"] == "lakehub-site"
    mount = next(m for m in hub["extraVolumeMounts"] if m["name"] == volume["name"])
    assert mount == {
        "name": volume["name"],
        "mountPath": "/etc/lakehub/site.yaml",
        "subPath": values["site"]["key"],
        "readOnly": True,
    }
    # what the hub reads is exactly what the sysadmin wrote, and it validates the same
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert values["site"]["data"] == raw
    assert parse_site(values["site"]["data"]) == parse_site(raw)
    annotations = hub["annotations"]
    assert annotations["checksum/lakehub-site"] == hv.site_checksum(raw)


def test_images_come_from_the_site(rendered):
    path, values = rendered
    k8s = load_site(path).kubernetes
    jh = values["jupyterhub"]
    assert jh["hub"]["image"] == {"name": k8s.images.hub.repository, "tag": k8s.images.hub.tag}
    assert jh["singleuser"]["image"]["name"] == k8s.images.singleuser.repository
    assert values["cache"]["service"]["image"] == jh["hub"]["image"]
    assert jh["prePuller"]["hook"]["enabled"] and jh["prePuller"]["continuous"]["enabled"]


def test_z2jh_parts_needing_their_own_images_can_be_switched_off(tmp_path):
    data = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    data["kubernetes"].update(
        prepull=False,
        user_scheduler=False,
        block_cloud_metadata=False,
        proxy_service={"type": "NodePort", "node_port": 30080},
        images={
            **data["kubernetes"]["images"],
            "proxy": {"repository": "localhost/lakehub/configurable-http-proxy", "tag": "5.2.0"},
        },
    )
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data))
    jh = hv.values_for_file(site)["jupyterhub"]
    assert not jh["prePuller"]["hook"]["enabled"] and not jh["prePuller"]["continuous"]["enabled"]
    assert not jh["scheduling"]["userScheduler"]["enabled"]
    assert not jh["scheduling"]["userPlaceholder"]["enabled"]
    assert jh["singleuser"]["cloudMetadata"] == {"blockWithIptables": False}
    assert jh["proxy"]["service"] == {"type": "NodePort", "nodePorts": {"http": 30080}}
    assert jh["proxy"]["chp"]["image"] == {
        "name": "localhost/lakehub/configurable-http-proxy",
        "tag": "5.2.0",
    }


@pytest.mark.parametrize(
    "proxy_service, message",
    [
        ({"type": "LoadBalancer", "node_port": 30080}, "only for type NodePort"),
        ({"type": "NodePort", "node_port": 8080}, "between 30000 and 32767"),
        ({"type": "Ingress"}, "kubernetes.proxy_service.type"),
    ],
)
def test_a_bad_proxy_service_names_the_field(tmp_path, proxy_service, message):
    data = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    data["kubernetes"]["proxy_service"] = proxy_service
    with pytest.raises(SiteError) as caught:
        parse_site(data)
    assert message in str(caught.value)


def test_cache_is_mounted_read_only_in_user_pods(rendered):
    _, values = rendered
    storage = values["jupyterhub"]["singleuser"]["storage"]
    assert storage["extraVolumes"] == [cache_volume()]
    assert storage["extraVolumeMounts"] == [cache_volume_mount()]
    (volume,) = storage["extraVolumes"]
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    assert volume["persistentVolumeClaim"]["claimName"] == values["cache"]["claim"]["name"]
    (mount,) = storage["extraVolumeMounts"]
    assert mount["readOnly"] is True
    assert mount["mountPath"] == values["cache"]["mountPath"]


def test_network_policies_stay_on_and_open_only_the_site_destinations(rendered):
    path, values = rendered
    site = load_site(path)
    jh = values["jupyterhub"]
    policy = jh["singleuser"]["networkPolicy"]
    assert policy["enabled"] is True
    assert policy["egressAllowRules"]["privateIPs"] is False
    for component in ("hub", "proxy"):
        assert _get(jh, (component, "networkPolicy", "enabled")) is not False
    assert values["networkPolicy"]["enabled"] is True
    rules = values["networkPolicy"]["singleuserEgress"]
    # the site's destinations, then the Dask Gateway's proxy when the site has one
    assert rules[len(site.kubernetes.egress) :] == hv.dask_egress(site)
    rules = rules[: len(site.kubernetes.egress)]
    assert len(rules) == len(site.kubernetes.egress) >= 1
    for rule, wanted in zip(rules, site.kubernetes.egress, strict=True):
        ports = [p["port"] for p in rule["ports"]]
        assert ports == (wanted.ports or hv.rucio_ports(site))
        assert all(p["protocol"] == "TCP" for p in rule["ports"])
        if wanted.cidr:
            assert rule["to"] == [{"ipBlock": {"cidr": wanted.cidr}}]


def test_namespace_egress_rules_default_to_the_rucio_ports(tmp_path):
    data = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    data["rucio"]["instances"][0]["rucio_host"] = "http://rucio.rucio.svc:8080"
    data["insecure"] = True  # plain http inside the cluster
    data["kubernetes"]["egress"] = [{"namespace": "rucio", "pod_labels": {"app": "rucio"}}]
    site = parse_site(data)
    (rule,) = hv.egress_values(site)
    assert rule["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "rucio"}},
            "podSelector": {"matchLabels": {"app": "rucio"}},
        }
    ]
    assert [p["port"] for p in rule["ports"]] == [443, 8080]  # auth host (https) and server


def test_profiles_are_rendered(rendered):
    path, values = rendered
    site = load_site(path)
    if len(site.profiles) == 1:  # test_one_profile_means_no_spawn_form
        return
    profiles = values["jupyterhub"]["singleuser"]["profileList"]
    assert [p["display_name"] for p in profiles] == [p.name for p in site.profiles]
    assert len({p["slug"] for p in profiles}) == len(profiles)
    assert [p for p in profiles if p.get("default")] == [
        profiles[site.profiles.index(site.default_profile)]
    ]
    for entry, profile in zip(profiles, site.profiles, strict=True):
        override = entry["kubespawner_override"]
        assert override["cpu_limit"] == profile.cpu
        assert override["mem_limit"] == profile.memory
        assert override["cpu_guarantee"] <= override["cpu_limit"]
    default = site.default_profile
    assert values["jupyterhub"]["singleuser"]["memory"]["limit"] == default.memory


def test_one_profile_means_no_spawn_form():
    """Found on a real node: KubeSpawner renders its spawn form for a profile list of one
    entry, so after logging in a student stood on /hub/spawn with a single choice
    instead of getting a server.  One profile is the servers' size and image instead."""
    data = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    data["profiles"] = [
        {
            "name": "Only",
            "cpu": 3,
            "cpu_guarantee": 0.5,
            "memory": "6G",
            "image": {"repository": "registry.example.org/lakehub/other", "tag": "2.0"},
        }
    ]
    singleuser = hv.render_values(parse_site(data), data)["jupyterhub"]["singleuser"]
    assert "profileList" not in singleuser
    assert singleuser["cpu"] == {"limit": 3, "guarantee": 0.5}
    assert singleuser["memory"] == {"limit": "6G", "guarantee": "6G"}
    assert singleuser["image"] == {"name": "registry.example.org/lakehub/other", "tag": "2.0"}
    # the sites without profiles get the default one, and no form either
    del data["profiles"]
    singleuser = hv.render_values(parse_site(data), data)["jupyterhub"]["singleuser"]
    assert "profileList" not in singleuser
    assert singleuser["image"]["name"] == "localhost/lakehub/singleuser"


def test_a_profile_may_choose_another_image(tmp_path):
    data = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    data["profiles"][1]["image"] = {
        "repository": "registry.example.org/lakehub/singleuser-gpu",
        "tag": "0.1.0",
    }
    site = parse_site(data)
    values = hv.render_values(site, data)
    large = values["jupyterhub"]["singleuser"]["profileList"][1]
    assert large["kubespawner_override"]["image"] == (
        "registry.example.org/lakehub/singleuser-gpu:0.1.0"
    )
    assert values["jupyterhub"]["prePuller"]["pullProfileListImages"] is True  # pre-pulled


def test_culling_follows_the_site(rendered):
    path, values = rendered
    culling = load_site(path).kubernetes.culling
    cull = values["jupyterhub"]["cull"]
    assert cull == {
        "enabled": culling.enabled,
        "timeout": culling.timeout_seconds,
        "every": culling.every_seconds,
    }


def test_cache_service_is_a_hub_service_with_its_config(rendered):
    path, values = rendered
    site = load_site(path)
    hub = values["jupyterhub"]["hub"]
    service = values["cache"]["service"]
    assert hub["services"][service["name"]]["url"] == hv.cache_url()
    assert "command" not in hub["services"][service["name"]]  # runs in its own pod
    config = service["config"]
    assert config["port"] == service["port"]
    assert config["root"] == values["cache"]["mountPath"]
    assert config["quota_bytes"] == int(site.cache.quota_gb * 1e9)
    assert config["rucio"]["cache_rse"] == site.cache.rse
    assert config["rucio"]["rucio_host"] == site.rucio.default.rucio_host
    # the warm-up job's hub identity may reach the cache and nothing it does not need
    role = hub["loadRoles"]["lakehub-warm"]
    assert role["services"] == ["lakehub-warm"]
    assert "admin:users" not in role["scopes"]


def test_oidc_login_configures_generic_oauthenticator(oidc_rendered):
    path, values = oidc_rendered
    site = load_site(path)
    config = values["jupyterhub"]["hub"]["config"]
    # GenericOAuthenticator keeping hand-added course groups (hub_config.course_access)
    assert config["JupyterHub"]["authenticator_class"] == AUTHENTICATOR_CLASS
    assert config["Authenticator"]["enable_auth_state"] is True
    assert config["Authenticator"]["admin_users"] == site.auth.admin_users
    oauth = config["GenericOAuthenticator"]
    assert oauth["client_id"] == site.auth.client_id
    assert oauth["username_claim"] == site.auth.username_claim
    assert oauth["scope"] == site.auth.scopes
    assert oauth["oauth_callback_url"] == f"{site.kubernetes.public_url}/hub/oauth_callback"
    assert oauth["allowed_groups"] == site.auth.allowed_groups
    env = values["jupyterhub"]["hub"]["extraEnv"]
    assert env["LAKEHUB_EXCHANGE_AUDIENCE"] == site.auth.token_exchange_audience
    assert env["LAKEHUB_EXCHANGE_TOKEN_URL"] == site.auth.token_url


def _check_traits(config: dict) -> None:
    """Every hub.config section names a real class and only its configurable traits,
    and the authenticator accepts the values (built offline, nothing connects)."""
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator
    from jupyterhub.spawner import Spawner
    from traitlets.config import Config

    classes = {"JupyterHub": JupyterHub, "Authenticator": Authenticator, "Spawner": Spawner}
    authenticator_class = config["JupyterHub"]["authenticator_class"]
    if authenticator_class == AUTHENTICATOR_CLASS:
        from spawner_hooks.course_login import LakehubOAuthenticator as auth_cls

        section_name = "GenericOAuthenticator"  # its base class's section applies to it
    else:
        from hub_config.native_auth import CLASS_PATH
        from hub_config.native_auth import LakehubNativeAuthenticator as auth_cls

        assert authenticator_class == CLASS_PATH
        section_name = "NativeAuthenticator"  # its config section is its parent's
    classes[section_name] = auth_cls
    for section, traits in config.items():
        cls = classes[section]
        unknown = set(traits) - set(cls.class_trait_names(config=True))
        assert not unknown, f"{section} has no configurable {sorted(unknown)}"
    if auth_cls.__name__ == "LakehubNativeAuthenticator":
        return  # it opens the hub's database when built; the trait names are checked
    authenticator = auth_cls(config=Config(copy.deepcopy(config)))
    for trait, value in config[section_name].items():
        got = getattr(authenticator, trait)
        assert (set(got) if isinstance(got, set) else got) == (
            set(value) if isinstance(got, set) else value
        ), trait


def test_hub_config_traits_exist_and_load(rendered):
    _, values = rendered
    _check_traits(values["jupyterhub"]["hub"]["config"])


def test_native_cluster_site_uses_native_authenticator_and_the_issuer_key(tmp_path):
    values = hv.values_for_file(_native_variant(tmp_path))
    hub = values["jupyterhub"]["hub"]
    assert hub["config"]["JupyterHub"]["authenticator_class"] == (
        "hub_config.native_auth.LakehubNativeAuthenticator"
    )
    assert "existingSecret" not in hub
    assert "OAUTH_CLIENT_SECRET" not in hub["extraEnv"]
    _check_traits(hub["config"])


# --------------------------------------------------------------------------- errors, CLI


def test_a_site_without_a_kubernetes_section_is_a_clear_error():
    with pytest.raises(hv.ValuesError) as info:
        hv.values_for_file(EXAMPLES / "site.local.yaml")
    (problem,) = info.value.problems
    assert problem.startswith("kubernetes: ")
    assert "site.cluster.yaml" in problem


def test_a_ca_cert_path_is_refused_for_a_cluster(tmp_path):
    data = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    data["rucio"]["instances"][0]["ca_cert"] = "ca.pem"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(hv.ValuesError) as info:
        hv.values_for_file(path)
    assert info.value.problems[0].startswith("rucio.instances[0].ca_cert: ")


def test_an_invalid_site_is_a_site_error(tmp_path):
    data = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    data["profiles"][0]["memory"] = "lots"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(SiteError, match=r"profiles\[0\]\.memory"):
        hv.values_for_file(path)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub_config.values", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )


def test_cli_prints_yaml_and_writes_a_file(tmp_path):
    printed = _cli(str(CLUSTER_EXAMPLE))
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("# Helm values for helm/lakehub")
    assert yaml.safe_load(printed.stdout) == hv.values_for_file(CLUSTER_EXAMPLE)
    out = tmp_path / "deep" / "values.yaml"
    written = _cli(str(CLUSTER_EXAMPLE), "-o", str(out))
    assert written.returncode == 0, written.stderr
    assert written.stdout == ""
    assert out.read_text(encoding="utf-8") == printed.stdout
    assert [p.name for p in out.parent.iterdir()] == ["values.yaml"]  # no temp file left


def test_rendering_twice_gives_the_same_text():
    once = hv.dump(hv.values_for_file(CLUSTER_EXAMPLE))
    assert hv.dump(hv.values_for_file(CLUSTER_EXAMPLE)) == once


def test_cli_bad_sites_fail_without_a_traceback(tmp_path):
    for args, fragment in [
        ((str(EXAMPLES / "site.local.yaml"),), "kubernetes: required"),
        ((str(tmp_path / "missing.yaml"),), "does not exist"),
    ]:
        done = _cli(*args)
        assert done.returncode == 1
        assert fragment in done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""


def test_cli_prints_the_namespace():
    done = _cli(str(CLUSTER_EXAMPLE), "--print", "namespace")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == load_site(CLUSTER_EXAMPLE).kubernetes.namespace


# --------------------------------------------------------------------------- courses


def test_courses_are_pulled_by_nbgitpuller_when_a_pod_starts(tmp_path):
    """The postStart hook runs for real here, as the pod runs it: lakehub's course pull
    (the same code the local stack runs at spawn) with nbgitpuller's own ``gitpuller``,
    on the courses of ``$LAKEHUB_COURSES`` as the spawn hook sets it for one user and
    KubeSpawner hands it to the pod (no longer a value for every pod in the chart)."""
    import subprocess
    from pathlib import PurePosixPath

    from sitefile.state import venv_bin
    from spawner_hooks.courses import course_entries, user_courses
    from spawner_hooks.kube_delivery import KubeSecretDelivery
    from spawner_hooks.session import SessionPaths, session_env

    course = tmp_path / "course.git"
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(course)], check=True)
    subprocess.run(["git", "clone", "-q", str(course), str(work)], check=True)
    (work / "lesson.ipynb").write_text("{}")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@x"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "r1"], check=True)
    subprocess.run([*git, "push", "-q", "origin", "main"], check=True)
    data = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    data["courses"] = [{"name": "phys101", "source": course.as_uri(), "target": "phys101"}]
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(data))
    singleuser = hv.values_for_file(site_file)["jupyterhub"]["singleuser"]
    hook = singleuser["lifecycleHooks"]["postStart"]["exec"]["command"]
    home = tmp_path / "home"
    home.mkdir()
    assert "LAKEHUB_COURSES" not in singleuser["extraEnv"]  # each user's own, at spawn
    site = load_site(site_file)
    mine = user_courses(site.courses, site.courses, [])  # students: everyone
    bundle_env = session_env(SessionPaths(PurePosixPath("/s")), courses=course_entries(mine))
    # KubeSpawner formats the values of the environment (doubled braces become single)
    courses = KubeSecretDelivery.environment(bundle_env)["LAKEHUB_COURSES"].format()
    env = {
        "HOME": str(home),
        "PATH": f"{venv_bin('analysis', 'python').parent}:/usr/bin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "LAKEHUB_COURSES": courses,
    }
    subprocess.run(hook, env=env, check=True, capture_output=True)
    assert (home / "phys101" / "lesson.ipynb").read_text() == "{}"
    assert not (home / "LAKEHUB-COURSES.md").exists()
    # an unreachable course: the pod still starts, the student reads why
    env["LAKEHUB_COURSES"] = courses.replace(course.as_uri(), (tmp_path / "gone.git").as_uri())
    result = subprocess.run(hook, env=env, capture_output=True)
    assert result.returncode == 0
    note = (home / "LAKEHUB-COURSES.md").read_text()
    assert "gone.git" in note


def test_a_course_in_a_local_folder_is_refused_for_a_cluster(tmp_path):
    data = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    data["courses"] = [{"name": "local", "source": "../courses/demo", "target": "course"}]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(hv.ValuesError, match=r"courses\[0\]\.source: pods cannot read a folder"):
        hv.values_for_file(path)
