"""Render the Helm values of lakehub's chart (``helm/lakehub``) from the site model.

The chart is an umbrella: zero-to-jupyterhub 4.4.0 as the dependency ``jupyterhub``
(its values live under the ``jupyterhub:`` key) plus lakehub's own templates (site
ConfigMap, shared cache volume and service, network policy, jobs), configured by the
other top-level keys.  Everything here is a pure function of the validated site;
:func:`main` is the thin command line behind ``make template`` and ``make deploy``:

    python -m hub_config.values SITE.yaml               # YAML on stdout
    python -m hub_config.values SITE.yaml -o FILE.yaml  # written atomically

No secret ever appears in the values: the hub and the cache service read secrets from
existing Kubernetes Secrets the site file names (``hub.existingSecret`` and
``secretKeyRef``), and z2jh generates its own (proxy token, cookie secret, service
tokens) inside the cluster.  Sysadmins layer their own values files on top as usual
(``helm upgrade -f generated.yaml -f mine.yaml``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from hub_config.kube import (
    DEFAULT_CACHE_CLAIM,
    DEFAULT_CACHE_MOUNT,
    cache_volume,
    cache_volume_mount,
    course_pull_script,
)
from hub_config.site import (
    Image,
    Kubernetes,
    OidcAuth,
    Profile,
    Site,
    SiteError,
    memory_bytes,
    parse_site,
    resolve_paths,
)
from hub_services.cache.config import service_config
from hub_services.courses import SCOPES as COURSE_STATUS_SCOPES
from hub_services.dask_gateway import config as dask_config
from hub_services.dask_gateway import kube as dask_kube
from spawner_hooks.session import DaskGateway, dask_gateway_env

# --- names shared with the chart templates and with hub_config.kubernetes ---------------
SITE_CONFIGMAP = "lakehub-site"
SITE_KEY = "site.yaml"
SITE_MOUNT = f"/etc/lakehub/{SITE_KEY}"
HUB_CONFIG_D = "/usr/local/etc/jupyterhub/jupyterhub_config.d"
# The only Python in the values: the hub's config loader runs it after z2jh's own config.
HUB_LOADER = "from hub_config.kubernetes import configure\nconfigure(c)\n"
CACHE_SERVICE = "lakehub-cache"
CACHE_PORT = 8012
CACHE_CONFIG_MOUNT = "/etc/lakehub/cache"
CACHE_STATE_DIR = "/var/lib/lakehub-cache"
WARM_SERVICE = "lakehub-warm"
# instructors' `make course-status` on a cluster (hub_services.courses): its token is
# z2jh's hub.services.lakehub-courses.apiToken in the Secret "hub"
COURSES_SERVICE = "lakehub-courses"
CACHE_ACCESS = f"access:services!service={CACHE_SERVICE}"
ISSUER_SERVICE = "lakehub-issuer"  # the token service (hub_services.issuer)
TOKEN_PORT = 8009
TOKEN_ACCESS = f"access:services!service={ISSUER_SERVICE}"
# JupyterHub's defaults for a server's own token, plus the cache and token services
SERVER_TOKEN_SCOPES = [
    "users:activity!user",
    "access:servers!server",
    CACHE_ACCESS,
    TOKEN_ACCESS,
]
SECRETS_DIR = "/etc/lakehub/secrets"
RUCIO_ADMIN_DIR = f"{SECRETS_DIR}/rucio-admin"
RUCIO_ADMIN_KEY = "password"
ISSUER_KEY_DIR = f"{SECRETS_DIR}/issuer"
ISSUER_KEY_KEY = "issuer-key.json"
OIDC_CLIENT_SECRET_KEY = "client-secret"  # noqa: S105  (a key name)
OIDC_CRYPT_KEY_KEY = "hub.config.CryptKeeper.keys"  # the key z2jh reads from existingSecret
# z2jh's chart-managed Secret ("hub" with the chart's default fullnameOverride: "") holds
# one API token per hub.services entry under hub.services.<name>.apiToken.
HUB_SECRET = "hub"  # noqa: S105  (a Secret name)
HUB_API_URL = "http://hub:8081/hub/api"
SITE_CHECKSUM_ANNOTATION = "checksum/lakehub-site"
# The dask-gateway chart (dependency "dask-gateway"), with fixed object names
DASK_FULLNAME = "dask-gateway"
DASK_TRAEFIK = f"traefik-{DASK_FULLNAME}"  # its proxy: API, dashboards, scheduler traffic
DASK_TRAEFIK_PORT = 8000  # the proxy pods' port (the Service listens on 80)
DASK_ACCESS = dask_config.ACCESS
# The only Python in the gateway's values: the chart runs it after its own config.
GATEWAY_LOADER = "from hub_services.dask_gateway.kube import configure\nconfigure(c)\n"

HEADER = """\
# Helm values for helm/lakehub, rendered from {source} by `python -m hub_config.values`.
# Do not edit: change the site file, or layer your own values file on top of this one.
"""


class ValuesError(SiteError):
    """A valid site that cannot be deployed on Kubernetes as it is; names the field."""

    where = "for a Kubernetes deployment"


# --------------------------------------------------------------------------- small pieces


def image_values(image: Image) -> dict:
    """An image in z2jh's shape (``name``/``tag``/``pullPolicy``)."""
    out = {"name": image.repository, "tag": image.tag}
    if image.pull_policy:
        out["pullPolicy"] = image.pull_policy
    return out


def token_service_url() -> str:
    """The token service inside the namespace (sessions renew their token there)."""
    return f"http://{ISSUER_SERVICE}:{TOKEN_PORT}"


def cache_url() -> str:
    """How sessions and the hub reach the cache service (same namespace)."""
    return f"http://{CACHE_SERVICE}:{CACHE_PORT}"


def site_checksum(site_data: Mapping) -> str:
    text = json.dumps(site_data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def rucio_ports(site: Site) -> list[int]:
    """The ports of every Rucio URL (server and auth) of the site, sorted."""
    ports = set()
    for instance in site.rucio.instances:
        ports.add(_url_port(instance.rucio_host))
        ports.add(_url_port(instance.auth_url))
    return sorted(ports)


def profile_values(profile: Profile, k8s: Kubernetes) -> dict:
    """One KubeSpawner profile: a size and, when it says so, another image."""
    override: dict = {
        "cpu_limit": profile.cpu,
        "cpu_guarantee": profile.cpu_guarantee or profile.cpu,
        "mem_limit": profile.memory,
        "mem_guarantee": profile.memory_guarantee or profile.memory,
    }
    if profile.image is not None:
        override["image"] = profile.image.reference
        if profile.image.pull_policy:
            override["image_pull_policy"] = profile.image.pull_policy
    entry = {
        "display_name": profile.name,
        "slug": profile.slug,
        "description": profile.description or f"{profile.cpu:g} CPU, {profile.memory} memory",
        "kubespawner_override": override,
    }
    if profile is k8s.default_profile:
        entry["default"] = True
    return entry


def egress_values(site: Site) -> list[dict]:
    """NetworkPolicy egress rules (Kubernetes' own shape) for the site's destinations."""
    assert site.kubernetes is not None
    default_ports = rucio_ports(site)
    rules = []
    for rule in site.kubernetes.egress:
        if rule.cidr is not None:
            peer: dict = {"ipBlock": {"cidr": rule.cidr}}
        else:
            peer = {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": rule.namespace}
                }
            }
            if rule.pod_labels:
                peer["podSelector"] = {"matchLabels": dict(rule.pod_labels)}
        ports = rule.ports or default_ports
        rules.append({"to": [peer], "ports": [{"protocol": "TCP", "port": p} for p in ports]})
    return rules


def required_secrets(site: Site) -> list[tuple[str, list[str]]]:
    """The Secrets the sysadmin creates before deploying: (name, keys) each."""
    k8s = site.kubernetes
    assert k8s is not None
    needed = [(k8s.rucio_admin_secret, [RUCIO_ADMIN_KEY])]
    if isinstance(site.auth, OidcAuth):
        needed.append((site.auth.secret_name, [OIDC_CLIENT_SECRET_KEY, OIDC_CRYPT_KEY_KEY]))
    else:
        needed.append((k8s.issuer_key_secret, [ISSUER_KEY_KEY]))
    return needed


# --------------------------------------------------------------------------- z2jh values


def authenticator_config(site: Site) -> dict:
    """``hub.config`` for the login: GenericOAuthenticator (OIDC) or NativeAuthenticator."""
    auth = site.auth
    k8s = site.kubernetes
    assert k8s is not None
    if isinstance(auth, OidcAuth):
        oauth: dict = {
            "client_id": auth.client_id,
            "login_service": site.name,
            "authorize_url": auth.authorize_url,
            "token_url": auth.token_url,
            "userdata_url": auth.userinfo_url,
            "username_claim": auth.username_claim,
            "scope": list(auth.scopes),
            "refresh_pre_spawn": True,
            # checked at most once a minute per user; lakehub's refresh_user_hook renews
            # the login when its access token has less than two minutes left, so that
            # Rucio tokens exchanged from it do not expire early (spawner_hooks.oidc_refresh)
            "auth_refresh_age": 60,
        }
        if k8s.public_url:
            oauth["oauth_callback_url"] = f"{k8s.public_url}/hub/oauth_callback"
        if auth.allowed_groups:
            # groups come from the provider's userinfo, kept in auth_state["oauth_user"]
            oauth["manage_groups"] = True
            oauth["auth_state_groups_key"] = f"oauth_user.{auth.groups_claim}"
            oauth["allowed_groups"] = list(auth.allowed_groups)
        return {
            "JupyterHub": {"authenticator_class": "generic-oauth"},
            "Authenticator": {
                "admin_users": list(auth.admin_users),
                "allow_all": auth.allow_all,
                "enable_auth_state": True,
            },
            "GenericOAuthenticator": oauth,
        }
    return {
        "JupyterHub": {"authenticator_class": "nativeauthenticator.NativeAuthenticator"},
        "Authenticator": {"admin_users": list(auth.admin_users), "allow_all": True},
        "NativeAuthenticator": {
            "open_signup": False,
            "check_common_password": True,
            "minimum_password_length": auth.minimum_password_length,
            "allowed_failed_logins": 5,
            "seconds_before_next_try": 60,
        },
    }


def hub_values(site: Site, site_data: Mapping) -> dict:
    """The hub: lakehub's loader in jupyterhub_config.d, the site file, secrets as files
    or Secret references, the login, and the hub services lakehub adds."""
    k8s = site.kubernetes
    assert k8s is not None
    oidc = isinstance(site.auth, OidcAuth)
    # read by hub_config.kubernetes (the names are its ENV_* constants)
    env: dict = {
        "LAKEHUB_SITE": SITE_MOUNT,
        "LAKEHUB_TOKEN_SOURCE": "token_exchange" if oidc else "hub_issuer",
        "LAKEHUB_CACHE_URL": cache_url(),
        "LAKEHUB_CACHE_MOUNT": DEFAULT_CACHE_MOUNT,
        "LAKEHUB_CACHE_PFN_PREFIX": DEFAULT_CACHE_MOUNT,  # the cache pod mounts it there too
        "LAKEHUB_TOKEN_URL": token_service_url(),
    }
    if site.dask.enabled:  # the hub stops a user's clusters with their server
        env["LAKEHUB_DASK_API_URL"] = (
            f"http://{DASK_TRAEFIK}.{k8s.namespace}:80{dask_config.PREFIX}"
        )
    volumes: list[dict] = [{"name": "lakehub-site", "configMap": {"name": SITE_CONFIGMAP}}]
    mounts: list[dict] = [
        {"name": "lakehub-site", "mountPath": SITE_MOUNT, "subPath": SITE_KEY, "readOnly": True}
    ]
    hub: dict = {"image": image_values(k8s.images.hub)}
    if isinstance(site.auth, OidcAuth):
        # z2jh mounts this Secret beside its own and prefers its keys: the auth-state key
        # (hub.config.CryptKeeper.keys) comes from it; the client secret reaches
        # GenericOAuthenticator through OAUTH_CLIENT_SECRET, its documented variable.
        hub["existingSecret"] = site.auth.secret_name
        env["OAUTH_CLIENT_SECRET"] = {
            "valueFrom": {
                "secretKeyRef": {"name": site.auth.secret_name, "key": OIDC_CLIENT_SECRET_KEY}
            }
        }
        env["LAKEHUB_EXCHANGE_AUDIENCE"] = site.auth.token_exchange_audience
        env["LAKEHUB_EXCHANGE_TOKEN_URL"] = site.auth.token_url
    else:
        # native logins: the hub signs Rucio tokens and creates the Rucio accounts itself
        assert k8s.token_issuer_url is not None
        env["LAKEHUB_ISSUER_URL"] = k8s.token_issuer_url
        env["LAKEHUB_ISSUER_KEY_FILE"] = f"{ISSUER_KEY_DIR}/{ISSUER_KEY_KEY}"
        env["LAKEHUB_RUCIO_ADMIN_USERNAME"] = k8s.rucio_admin_username
        env["LAKEHUB_RUCIO_ADMIN_PASSWORD_FILE"] = f"{RUCIO_ADMIN_DIR}/{RUCIO_ADMIN_KEY}"
        for name, secret, key, folder in (
            ("lakehub-issuer-key", k8s.issuer_key_secret, ISSUER_KEY_KEY, ISSUER_KEY_DIR),
            ("lakehub-rucio-admin", k8s.rucio_admin_secret, RUCIO_ADMIN_KEY, RUCIO_ADMIN_DIR),
        ):
            volumes.append(
                {
                    "name": name,
                    "secret": {
                        "secretName": secret,
                        "items": [{"key": key, "path": key, "mode": 0o440}],
                    },
                }
            )
            mounts.append({"name": name, "mountPath": folder, "readOnly": True})
    hub.update(
        {
            "extraFiles": {
                "lakehub-config": {
                    "mountPath": f"{HUB_CONFIG_D}/lakehub.py",
                    "stringData": HUB_LOADER,
                }
            },
            "extraEnv": env,
            "extraVolumes": volumes,
            "extraVolumeMounts": mounts,
            # a changed site file restarts the hub (z2jh only watches its own values)
            "annotations": {SITE_CHECKSUM_ANNOTATION: site_checksum(site_data)},
            "config": {
                **authenticator_config(site),
                # a session's own API token may call the cache service (lakehub.fetch),
                # and the Dask Gateway when the site has one
                "Spawner": {"server_token_scopes": SERVER_TOKEN_SCOPES + dask_scopes(site)},
            },
            "services": {
                CACHE_SERVICE: {"url": cache_url(), "display": False},
                WARM_SERVICE: {"display": False},
                COURSES_SERVICE: {"display": False},
                ISSUER_SERVICE: {"url": token_service_url(), "display": False},
                **dask_hub_services(site),
            },
            "loadRoles": {
                "user": {
                    "description": "every user: their own things, the shared cache, their own"
                    " renewed Rucio token" + (" and the Dask Gateway" if site.dask.enabled else ""),
                    "scopes": ["self", CACHE_ACCESS, TOKEN_ACCESS, *dask_scopes(site)],
                },
                **token_service_role(site),
                COURSES_SERVICE: {
                    "description": "make course-status: which revision each running server has",
                    "scopes": COURSE_STATUS_SCOPES,
                    "services": [COURSES_SERVICE],
                },
                WARM_SERVICE: {
                    "description": "the cache warm-up job: fetch and pin a course's datasets",
                    "scopes": [CACHE_ACCESS, "admin:servers"],
                    "services": [WARM_SERVICE],
                },
            },
        }
    )
    return hub


def token_service_role(site: Site) -> dict:
    """OIDC sites: the token service reads users' access tokens from the hub (auth
    state) to exchange them; native sites' token service needs no hub scope."""
    if not isinstance(site.auth, OidcAuth):
        return {}
    return {
        ISSUER_SERVICE: {
            "description": "the token service: read users' auth state to renew Rucio tokens",
            "scopes": ["read:users:name", "admin:auth_state"],
            "services": [ISSUER_SERVICE],
        }
    }


def token_service_values(site: Site) -> dict:
    """The chart's ``tokens.service``: hub_services.issuer's arguments and secrets."""
    k8s = site.kubernetes
    assert k8s is not None
    service: dict = {
        "enabled": True,
        "name": ISSUER_SERVICE,
        "port": TOKEN_PORT,
        "image": image_values(k8s.images.hub),
        "renewSecrets": True,
        "signingKeySecret": None,
        "signingKeyMountPath": ISSUER_KEY_DIR,
        "oauthClientSecret": None,
        "hubApiUrl": HUB_API_URL,
    }
    if isinstance(site.auth, OidcAuth):
        service["args"] = [
            "--source=token_exchange",
            f"--exchange-token-url={site.auth.token_url}",
            f"--exchange-client-id={site.auth.client_id}",
            f"--exchange-audience={site.auth.token_exchange_audience}",
        ]
        service["oauthClientSecret"] = {
            "name": site.auth.secret_name,
            "key": OIDC_CLIENT_SECRET_KEY,
        }
    else:
        service["args"] = [
            "--source=hub_issuer",
            f"--issuer-url={k8s.token_issuer_url}",
            f"--key={ISSUER_KEY_DIR}/{ISSUER_KEY_KEY}",
            f"--lifetime={site.tokens.lifetime_seconds}",
        ]
        service["signingKeySecret"] = {"name": k8s.issuer_key_secret, "key": ISSUER_KEY_KEY}
    return {"service": service}


def singleuser_values(site: Site) -> dict:
    k8s = site.kubernetes
    assert k8s is not None
    default = k8s.default_profile
    return {
        "image": image_values(k8s.images.singleuser),
        "defaultUrl": "/lab",
        "cpu": {"limit": default.cpu, "guarantee": default.cpu_guarantee or default.cpu},
        "memory": {
            "limit": default.memory,
            "guarantee": default.memory_guarantee or default.memory,
        },
        "profileList": [profile_values(p, k8s) for p in k8s.profiles],
        "storage": {
            # the shared cache, read-only in every user pod (hub_config.kube)
            "extraVolumes": [cache_volume(DEFAULT_CACHE_CLAIM)],
            "extraVolumeMounts": [cache_volume_mount(DEFAULT_CACHE_MOUNT)],
        },
        "extraEnv": {"LAKEHUB_CACHE_URL": cache_url(), **dask_session_env(site)},
        **course_values(site),
        "cloudMetadata": {"blockWithIptables": k8s.block_cloud_metadata},
        # z2jh's policy stays on and keeps privateIPs closed; lakehub's chart adds a policy
        # that opens exactly the site's Rucio/storage destinations and the cache service.
        "networkPolicy": {
            "enabled": True,
            "egressAllowRules": {"privateIPs": False, "nonPrivateIPs": True},
        },
    }


def course_values(site: Site) -> dict:
    """Course material pulled by nbgitpuller when a user pod starts (postStart hook)."""
    if not site.courses:
        return {}
    script = course_pull_script([(c.source, c.branch, c.target) for c in site.courses])
    return {"lifecycleHooks": {"postStart": {"exec": {"command": ["sh", "-c", script]}}}}


def jupyterhub_values(site: Site, site_data: Mapping) -> dict:
    k8s = site.kubernetes
    assert k8s is not None
    return {
        "hub": {
            **hub_values(site, site_data),
            # the hub's database (users, approvals, auth state) outlives `make undeploy`
            "db": {"pvc": {"annotations": {"helm.sh/resource-policy": "keep"}}},
        },
        "singleuser": singleuser_values(site),
        "proxy": proxy_values(k8s),
        "scheduling": {
            "userScheduler": {"enabled": k8s.user_scheduler},
            "userPlaceholder": {"enabled": k8s.user_scheduler},
        },
        "cull": {
            "enabled": k8s.culling.enabled,
            "timeout": k8s.culling.timeout_seconds,
            "every": k8s.culling.every_seconds,
        },
        # the analysis images are large: pull them on every node before users need them
        # (the singleuser image and every profile's own image)
        "prePuller": {
            "hook": {"enabled": k8s.prepull},
            "continuous": {"enabled": k8s.prepull},
            "pullProfileListImages": k8s.prepull,
        },
    }


def proxy_values(k8s: Kubernetes) -> dict:
    """z2jh's proxy: its Service (how students reach the hub) and, if given, the image."""
    service: dict = {"type": k8s.proxy_service.type}
    if k8s.proxy_service.node_port is not None:
        service["nodePorts"] = {"http": k8s.proxy_service.node_port}
    proxy: dict = {"service": service}
    if k8s.images.proxy is not None:
        proxy["chp"] = {"image": image_values(k8s.images.proxy)}
    return proxy


# --------------------------------------------------------------------------- Dask Gateway


def dask_scopes(site: Site) -> list[str]:
    """What users (and their servers' tokens) need to use the gateway: access to it."""
    return [DASK_ACCESS] if site.dask.enabled else []


def dask_gateway_address(site: Site) -> DaskGateway:
    """In-cluster addresses: the API through z2jh's proxy (the hub service's route, as
    z2jh documents), scheduler traffic straight to the gateway's own proxy."""
    k8s = site.kubernetes
    assert k8s is not None
    return DaskGateway(
        address=f"http://proxy-public{dask_config.PREFIX}",
        proxy_address=f"gateway://{DASK_TRAEFIK}.{k8s.namespace}:80",
    )


def dask_session_env(site: Site) -> dict[str, str]:
    if not site.dask.enabled:
        return {}
    env = dask_gateway_env(dask_gateway_address(site))
    if site.kubernetes is not None and site.kubernetes.public_url:
        # dashboard links open in the student's browser: the public address
        env["DASK_GATEWAY__PUBLIC_ADDRESS"] = f"{site.kubernetes.public_url}{dask_config.PREFIX}"
    return env


def dask_hub_services(site: Site) -> dict:
    """The gateway as a hub service: z2jh keeps its API token in the hub Secret (where
    the dask-gateway chart reads it) and routes /services/dask-gateway/ to it."""
    if not site.dask.enabled:
        return {}
    assert site.kubernetes is not None
    url = f"http://{DASK_TRAEFIK}.{site.kubernetes.namespace}:80"
    return {dask_config.SERVICE: {"url": url, "display": False}}


def dask_gateway_env_list(site: Site) -> list[dict]:
    """``gateway.env``: what hub_services.dask_gateway.kube.configure reads."""
    settings = {
        dask_kube.ENV_MAX_WORKERS: str(site.dask.max_workers_per_user),
        dask_kube.ENV_IDLE_TIMEOUT: str(site.dask.idle_timeout_seconds),
        dask_kube.ENV_CACHE_CLAIM: DEFAULT_CACHE_CLAIM,
        dask_kube.ENV_CACHE_MOUNT: DEFAULT_CACHE_MOUNT,
        dask_kube.ENV_TOKEN_DIR: dask_kube.DEFAULT_TOKEN_DIR,
    }
    return [{"name": k, "value": v} for k, v in settings.items()]


def dask_gateway_values(site: Site) -> dict:
    """Values of the dask-gateway chart (the dependency ``dask-gateway``)."""
    if not site.dask.enabled:
        return {"enabled": False}
    k8s = site.kubernetes
    assert k8s is not None
    dask = site.dask
    memory = int(memory_bytes(dask.worker_memory))
    return {
        "enabled": True,
        "fullnameOverride": DASK_FULLNAME,
        "gateway": {
            "prefix": dask_config.PREFIX,
            # lakehub's hub image: dask-gateway-server plus lakehub's gateway rules
            "image": image_values(k8s.images.hub),
            "auth": {
                "type": "jupyterhub",
                # only tokens allowed to access this service; the token the gateway
                # itself uses comes from z2jh's hub Secret (the chart's default)
                "jupyterhub": {"apiUrl": HUB_API_URL, "jupyterhubServiceName": dask_config.SERVICE},
            },
            "env": dask_gateway_env_list(site),
            "extraConfig": {"lakehub": GATEWAY_LOADER},
            "backend": {
                # schedulers and workers run the analysis image: the session's versions
                "image": image_values(k8s.images.singleuser),
                "worker": {
                    "cores": {"request": dask.worker_cores, "limit": dask.worker_cores},
                    "memory": {"request": memory, "limit": memory},
                    "threads": dask.worker_cores,
                },
            },
        },
        # reached in the cluster (user pods, z2jh's proxy); z2jh's proxy is the way in
        "traefik": {"service": {"type": "ClusterIP"}},
    }


def dask_egress(site: Site) -> list[dict]:
    """User pods may reach the gateway's proxy pods (z2jh keeps private IPs closed)."""
    if not site.dask.enabled:
        return []
    peer = {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "dask-gateway",
                "app.kubernetes.io/component": "traefik",
            }
        }
    }
    return [{"to": [peer], "ports": [{"protocol": "TCP", "port": DASK_TRAEFIK_PORT}]}]


# --------------------------------------------------------------------------- lakehub values


def cache_service_config(site: Site) -> dict:
    """What ``hub_services.cache.app`` reads at start (the ConfigMap's config.json).

    Only paths of secrets appear here; the password file is mounted from a Secret.
    """
    k8s = site.kubernetes
    assert k8s is not None
    config = service_config(
        site,
        port=CACHE_PORT,
        address="0.0.0.0",  # noqa: S104  (a pod: reached through its Service)
        root=DEFAULT_CACHE_MOUNT,
        index=f"{CACHE_STATE_DIR}/index.json",
        admin_username=k8s.rucio_admin_username,
        password_file=f"{RUCIO_ADMIN_DIR}/{RUCIO_ADMIN_KEY}",
    )
    config["rucio"]["ca_cert"] = None  # refused for clusters (render_values says why)
    return config


def lakehub_values(site: Site, site_data: Mapping) -> dict:
    k8s = site.kubernetes
    assert k8s is not None
    claim = k8s.cache_claim
    return {
        "site": {"configMapName": SITE_CONFIGMAP, "key": SITE_KEY, "data": dict(site_data)},
        "hubSecretName": HUB_SECRET,
        "cache": {
            "claim": {
                "name": DEFAULT_CACHE_CLAIM,
                "storageClassName": claim.storage_class,
                "size": claim.size,
                "nfs": {"server": claim.nfs.server, "path": claim.nfs.path} if claim.nfs else None,
            },
            "mountPath": DEFAULT_CACHE_MOUNT,
            "service": {
                "enabled": True,
                "name": CACHE_SERVICE,
                "port": CACHE_PORT,
                "image": image_values(k8s.images.hub),
                "config": cache_service_config(site),
                "configMountPath": CACHE_CONFIG_MOUNT,
                "stateDir": CACHE_STATE_DIR,
                "rucioAdminSecret": {"name": k8s.rucio_admin_secret, "key": RUCIO_ADMIN_KEY},
                "rucioAdminMountPath": RUCIO_ADMIN_DIR,
                "hubApiUrl": HUB_API_URL,
            },
            "warm": {
                "enabled": False,
                "hubServiceName": WARM_SERVICE,
                "image": image_values(k8s.images.hub),
                "course": {"name": f"{site.name} warm-up", "datasets": [], "pin": True},
            },
        },
        "tokens": token_service_values(site),
        "networkPolicy": {
            "enabled": True,
            "singleuserEgress": egress_values(site) + dask_egress(site),
        },
        "notebooksJob": {"enabled": False, "image": image_values(k8s.images.singleuser)},
        "publicUrl": k8s.public_url,
    }


def render_values(site: Site, site_data: Mapping, source: str = "site file") -> dict:
    """The umbrella chart's values for ``site``; ``site_data`` is the file as parsed YAML
    (it goes into the site ConfigMap, so the hub reads exactly what the sysadmin wrote)."""
    problems = []
    if site.kubernetes is None:  # not a cluster site at all: the other checks would be noise
        raise ValuesError(
            source,
            [
                "kubernetes: required for a cluster deployment; add the section"
                " (see examples/site.cluster.yaml and docs/deploy.md)"
            ],
        )
    for n, instance in enumerate(site.rucio.instances):
        if instance.ca_cert is not None:
            problems.append(
                f"rucio.instances[{n}].ca_cert: not supported on Kubernetes yet; add the CA"
                " to the images' trust store and remove ca_cert"
            )
    for n, course in enumerate(site.courses):
        if not course.is_git_url:
            problems.append(
                f"courses[{n}].source: pods cannot read a folder on this machine; push the"
                " course to a git remote the cluster reaches and put its URL here"
            )
    if problems:
        raise ValuesError(source, problems)
    values = {"jupyterhub": jupyterhub_values(site, site_data)}
    values["dask-gateway"] = dask_gateway_values(site)
    values.update(lakehub_values(site, site_data))
    return copy.deepcopy(values)


def load(path: str | os.PathLike[str]) -> tuple[Site, dict]:
    """The validated site and the file as parsed YAML; raises SiteError."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SiteError(str(path), ["the file does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteError(str(path), [f"cannot read the file: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SiteError(str(path), [f"{where}not valid YAML ({problem})"]) from None
    site = resolve_paths(parse_site(data, str(path)), path.parent.resolve())
    return site, data


def values_for_file(path: str | os.PathLike[str]) -> dict:
    """Read, validate and render a site file; raises SiteError or ValuesError."""
    site, data = load(path)
    return render_values(site, data, str(path))


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so the hub's loader file reads as written."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(values: Mapping, source: str = "the site file") -> str:
    body = yaml.dump(
        dict(values), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100
    )
    return HEADER.format(source=source) + body


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hub_config.values",
        description="render helm/lakehub values from a lakehub site file",
    )
    parser.add_argument("site", type=Path, help="the site file (YAML)")
    parser.add_argument("-o", "--output", type=Path, help="write here (atomically), not stdout")
    parser.add_argument(
        "--print",
        dest="field",
        choices=["namespace", "public-url", "secrets"],
        help="print one setting of the site's kubernetes section and exit",
    )
    args = parser.parse_args(argv)
    try:
        site, data = load(args.site)
        values = render_values(site, data, str(args.site))
    except SiteError as exc:  # ValuesError included
        print(exc, file=sys.stderr)
        return 1
    assert site.kubernetes is not None
    if args.field == "namespace":
        print(site.kubernetes.namespace)
        return 0
    if args.field == "public-url":
        print(site.kubernetes.public_url or "")
        return 0
    if args.field == "secrets":
        for name, keys in required_secrets(site):
            print(name, ",".join(keys))
        return 0
    text = dump(values, str(args.site))
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomically(args.output, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
