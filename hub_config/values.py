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
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from courses.cluster import SCOPES as COURSE_STATUS_SCOPES
from hub_config import course_access, native_auth
from hub_config.scopes import CACHE_ACCESS, server_token_scopes, user_scopes
from hub_services.cache.config import service_config
from lakehub import contract as lc
from lakehub.files import atomic_write
from sitefile import (
    Image,
    Kubernetes,
    OidcAuth,
    Site,
    SiteError,
    memory_bytes,
    read,
)
from spawner_hooks.kube_volumes import cache_volume, cache_volume_mount
from spawner_hooks.profiles import kubespawner_profile
from spawner_hooks.session import DaskGateway, dask_gateway_env

HUB_CONFIG_D = "/usr/local/etc/jupyterhub/jupyterhub_config.d"  # z2jh's hub image
# The only Python in the values: the hub's config loader runs it after z2jh's own config.
HUB_LOADER = "from hub_config.kubernetes import configure\nconfigure(c)\n"
HUB_API_URL = "http://hub:8081/hub/api"  # z2jh's hub Service
SITE_CHECKSUM_ANNOTATION = "checksum/lakehub-site"
# The dask-gateway chart (dependency "dask-gateway"), with fixed object names
DASK_FULLNAME = lc.DASK_SERVICE  # the gateway's objects carry the hub service's name
DASK_TRAEFIK = f"traefik-{DASK_FULLNAME}"  # its proxy: API, dashboards, scheduler traffic
DASK_TRAEFIK_PORT = 8000  # the proxy pods' port (the Service listens on 80)
DASK_PREFIX = lc.service_prefix(lc.DASK_SERVICE)
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
    return f"http://{lc.ISSUER_SERVICE}:{lc.ISSUER_PORT}"


def cache_url() -> str:
    """How sessions and the hub reach the cache service (same namespace)."""
    return f"http://{lc.CACHE_SERVICE}:{lc.CACHE_PORT}"


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
    needed = [(k8s.rucio_admin_secret, [lc.RUCIO_ADMIN_KEY])]
    if isinstance(site.auth, OidcAuth):
        needed.append((site.auth.secret_name, [lc.OIDC_CLIENT_SECRET_KEY, lc.CRYPT_KEY_KEY]))
    else:
        needed.append((k8s.issuer_key_secret, [lc.ISSUER_KEY_KEY]))
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
            # GenericOAuthenticator that keeps hand-added course groups (course_access)
            "JupyterHub": {"authenticator_class": course_access.AUTHENTICATOR_CLASS},
            "Authenticator": {
                "admin_users": list(auth.admin_users),
                "allow_all": auth.allow_all,
                "enable_auth_state": True,
            },
            "GenericOAuthenticator": oauth,
        }
    return {
        "JupyterHub": {"authenticator_class": native_auth.CLASS_PATH},
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
    # read by hub_config.kubernetes
    env: dict = {
        lc.ENV_SITE: lc.SITE_MOUNT,
        lc.ENV_TOKEN_SOURCE: lc.TOKEN_EXCHANGE if oidc else lc.HUB_ISSUER,
        lc.ENV_CACHE_URL: cache_url(),
        lc.ENV_CACHE_MOUNT: lc.CACHE_MOUNT,
        lc.ENV_CACHE_PFN_PREFIX: lc.CACHE_MOUNT,  # the cache pod mounts it there too
        lc.ENV_TOKEN_URL: token_service_url(),
    }
    if site.dask.enabled:  # the hub stops a user's clusters with their server
        env[lc.ENV_DASK_API_URL] = f"http://{DASK_TRAEFIK}.{k8s.namespace}:80{DASK_PREFIX}"
    volumes: list[dict] = [{"name": lc.SITE_CONFIGMAP, "configMap": {"name": lc.SITE_CONFIGMAP}}]
    mounts: list[dict] = [
        {
            "name": lc.SITE_CONFIGMAP,
            "mountPath": lc.SITE_MOUNT,
            "subPath": lc.SITE_FILE,
            "readOnly": True,
        }
    ]
    hub: dict = {"image": image_values(k8s.images.hub)}
    if isinstance(site.auth, OidcAuth):
        # z2jh mounts this Secret beside its own and prefers its keys: the auth-state key
        # (hub.config.CryptKeeper.keys) comes from it; the client secret reaches
        # GenericOAuthenticator through OAUTH_CLIENT_SECRET, its documented variable.
        hub["existingSecret"] = site.auth.secret_name
        env[lc.ENV_OAUTH_CLIENT_SECRET] = {
            "valueFrom": {
                "secretKeyRef": {"name": site.auth.secret_name, "key": lc.OIDC_CLIENT_SECRET_KEY}
            }
        }
        env[lc.ENV_EXCHANGE_AUDIENCE] = site.auth.token_exchange_audience
        env[lc.ENV_EXCHANGE_TOKEN_URL] = site.auth.token_url
    else:
        # native logins: the hub signs Rucio tokens and creates the Rucio accounts itself
        assert k8s.token_issuer_url is not None
        env[lc.ENV_ISSUER_URL] = k8s.token_issuer_url
        env[lc.ENV_ISSUER_KEY_FILE] = f"{lc.ISSUER_KEY_DIR}/{lc.ISSUER_KEY_KEY}"
        env[lc.ENV_RUCIO_ADMIN_USERNAME] = k8s.rucio_admin_username
        env[lc.ENV_RUCIO_ADMIN_PASSWORD_FILE] = f"{lc.RUCIO_ADMIN_DIR}/{lc.RUCIO_ADMIN_KEY}"
        for name, secret, key, folder in (
            ("lakehub-issuer-key", k8s.issuer_key_secret, lc.ISSUER_KEY_KEY, lc.ISSUER_KEY_DIR),
            ("lakehub-rucio-admin", k8s.rucio_admin_secret, lc.RUCIO_ADMIN_KEY, lc.RUCIO_ADMIN_DIR),
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
                "Spawner": {"server_token_scopes": server_token_scopes(site)},
            },
            "services": {
                lc.CACHE_SERVICE: {"url": cache_url(), "display": False},
                lc.WARM_SERVICE: {"display": False},
                lc.COURSES_SERVICE: {"display": False},
                lc.ISSUER_SERVICE: {"url": token_service_url(), "display": False},
                **dask_hub_services(site),
            },
            "loadRoles": {
                "user": {
                    "description": "every user: their own things, the shared cache, their own"
                    " renewed Rucio token" + (" and the Dask Gateway" if site.dask.enabled else ""),
                    "scopes": user_scopes(site),
                },
                **token_service_role(site),
                lc.COURSES_SERVICE: {
                    "description": "make course-status: which revision each running server has",
                    "scopes": COURSE_STATUS_SCOPES,
                    "services": [lc.COURSES_SERVICE],
                },
                lc.CACHE_SERVICE: {
                    "description": "the shared cache: which students a course has (its"
                    " instructors read their bytes served)",
                    "scopes": ["read:groups"],
                    "services": [lc.CACHE_SERVICE],
                },
                lc.WARM_SERVICE: {
                    "description": "the cache warm-up job: fetch and pin a course's datasets",
                    "scopes": [CACHE_ACCESS, "admin:servers"],
                    "services": [lc.WARM_SERVICE],
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
        lc.ISSUER_SERVICE: {
            "description": "the token service: read users' auth state to renew Rucio tokens",
            "scopes": ["read:users:name", "admin:auth_state"],
            "services": [lc.ISSUER_SERVICE],
        }
    }


def token_service_values(site: Site) -> dict:
    """The chart's ``tokens.service``: hub_services.issuer's arguments and secrets."""
    k8s = site.kubernetes
    assert k8s is not None
    service: dict = {
        "enabled": True,
        "name": lc.ISSUER_SERVICE,
        "port": lc.ISSUER_PORT,
        "prefix": lc.service_prefix(lc.ISSUER_SERVICE) + "/",
        "hubTokenKey": lc.hub_service_token_key(lc.ISSUER_SERVICE),
        "image": image_values(k8s.images.hub),
        "renewSecrets": True,
        "signingKeySecret": None,
        "signingKeyMountPath": lc.ISSUER_KEY_DIR,
        "oauthClientSecret": None,
        "hubApiUrl": HUB_API_URL,
    }
    if isinstance(site.auth, OidcAuth):
        service["args"] = [
            f"--source={lc.TOKEN_EXCHANGE}",
            f"--exchange-token-url={site.auth.token_url}",
            f"--exchange-client-id={site.auth.client_id}",
            f"--exchange-audience={site.auth.token_exchange_audience}",
        ]
        service["oauthClientSecret"] = {
            "name": site.auth.secret_name,
            "key": lc.OIDC_CLIENT_SECRET_KEY,
            "env": lc.ENV_OAUTH_CLIENT_SECRET,
        }
    else:
        service["args"] = [
            f"--source={lc.HUB_ISSUER}",
            f"--issuer-url={k8s.token_issuer_url}",
            f"--key={lc.ISSUER_KEY_DIR}/{lc.ISSUER_KEY_KEY}",
            f"--lifetime={site.tokens.lifetime_seconds}",
        ]
        service["signingKeySecret"] = {"name": k8s.issuer_key_secret, "key": lc.ISSUER_KEY_KEY}
    return {"service": service}


def singleuser_values(site: Site) -> dict:
    k8s = site.kubernetes
    assert k8s is not None
    default = site.default_profile
    # KubeSpawner shows its spawn form for any profile list, even of one entry: students
    # would have to pick the only choice before every start.  One profile is therefore
    # just the servers' size (and image); the form appears from two profiles on.
    choices = (
        {"profileList": [kubespawner_profile(p, p is site.default_profile) for p in site.profiles]}
        if len(site.profiles) > 1
        else {}
    )
    image = k8s.images.singleuser if choices or default.image is None else default.image
    return {
        "image": image_values(image),
        "defaultUrl": "/lab",
        "cpu": {"limit": default.cpu, "guarantee": default.cpu_guarantee or default.cpu},
        "memory": {
            "limit": default.memory,
            "guarantee": default.memory_guarantee or default.memory,
        },
        **choices,
        "storage": {
            # the shared cache, read-only in every user pod (spawner_hooks.kube_volumes)
            "extraVolumes": [cache_volume(lc.CACHE_CLAIM)],
            "extraVolumeMounts": [cache_volume_mount(lc.CACHE_MOUNT)],
        },
        "extraEnv": {
            lc.ENV_CACHE_URL: cache_url(),
            **dask_session_env(site),
        },
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
    """Course material pulled by nbgitpuller when a user pod starts: the postStart hook
    runs the same code as the local stack's spawn (``lakehub.courses``) on the courses
    in ``$LAKEHUB_COURSES``, which the spawn hook sets per user: only their courses
    (``spawner_hooks.courses.user_courses``)."""
    if not site.courses:
        return {}
    command = ["python3", "-m", "lakehub.courses", "--pod"]
    return {"lifecycleHooks": {"postStart": {"exec": {"command": command}}}}


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


def dask_gateway_address(site: Site) -> DaskGateway:
    """In-cluster addresses: the API through z2jh's proxy (the hub service's route, as
    z2jh documents), scheduler traffic straight to the gateway's own proxy."""
    k8s = site.kubernetes
    assert k8s is not None
    return DaskGateway(
        address=f"http://proxy-public{DASK_PREFIX}",
        proxy_address=f"gateway://{DASK_TRAEFIK}.{k8s.namespace}:80",
    )


def dask_session_env(site: Site) -> dict[str, str]:
    if not site.dask.enabled:
        return {}
    env = dask_gateway_env(dask_gateway_address(site))
    if site.kubernetes is not None and site.kubernetes.public_url:
        # dashboard links open in the student's browser: the public address
        env["DASK_GATEWAY__PUBLIC_ADDRESS"] = f"{site.kubernetes.public_url}{DASK_PREFIX}"
    return env


def dask_hub_services(site: Site) -> dict:
    """The gateway as a hub service: z2jh keeps its API token in the hub Secret (where
    the dask-gateway chart reads it) and routes /services/dask-gateway/ to it."""
    if not site.dask.enabled:
        return {}
    assert site.kubernetes is not None
    url = f"http://{DASK_TRAEFIK}.{site.kubernetes.namespace}:80"
    return {lc.DASK_SERVICE: {"url": url, "display": False}}


def dask_gateway_env_list(site: Site) -> list[dict]:
    """``gateway.env``: what hub_services.dask_gateway.kube.configure reads."""
    settings = {
        lc.ENV_DASK_MAX_WORKERS: str(site.dask.max_workers_per_user),
        lc.ENV_DASK_IDLE_TIMEOUT: str(site.dask.idle_timeout_seconds),
        lc.ENV_DASK_CACHE_CLAIM: lc.CACHE_CLAIM,
        lc.ENV_DASK_CACHE_MOUNT: lc.CACHE_MOUNT,
        lc.ENV_DASK_TOKEN_DIR: lc.TOKEN_MOUNT,
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
            "prefix": DASK_PREFIX,
            # lakehub's hub image: dask-gateway-server plus lakehub's gateway rules
            "image": image_values(k8s.images.hub),
            "auth": {
                "type": "jupyterhub",
                # only tokens allowed to access this service; the token the gateway
                # itself uses comes from z2jh's hub Secret (the chart's default)
                "jupyterhub": {"apiUrl": HUB_API_URL, "jupyterhubServiceName": lc.DASK_SERVICE},
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
        port=lc.CACHE_PORT,
        address="0.0.0.0",  # noqa: S104  (a pod: reached through its Service)
        root=lc.CACHE_MOUNT,
        index=f"{lc.CACHE_STATE_DIR}/index.json",
        admin_username=k8s.rucio_admin_username,
        password_file=f"{lc.RUCIO_ADMIN_DIR}/{lc.RUCIO_ADMIN_KEY}",
    )
    config["rucio"]["ca_cert"] = None  # refused for clusters (render_values says why)
    return config


def lakehub_values(site: Site, site_data: Mapping) -> dict:
    k8s = site.kubernetes
    assert k8s is not None
    claim = k8s.cache_claim
    return {
        "site": {
            "configMapName": lc.SITE_CONFIGMAP,
            "key": lc.SITE_FILE,
            "mountPath": lc.SITE_MOUNT,
            "data": dict(site_data),
        },
        "hubSecretName": lc.HUB_SECRET,
        "cache": {
            "claim": {
                "name": lc.CACHE_CLAIM,
                "storageClassName": claim.storage_class,
                "size": claim.size,
                "nfs": {"server": claim.nfs.server, "path": claim.nfs.path} if claim.nfs else None,
            },
            "mountPath": lc.CACHE_MOUNT,
            "service": {
                "enabled": True,
                "name": lc.CACHE_SERVICE,
                "port": lc.CACHE_PORT,
                "prefix": lc.service_prefix(lc.CACHE_SERVICE) + "/",
                "hubTokenKey": lc.hub_service_token_key(lc.CACHE_SERVICE),
                "image": image_values(k8s.images.hub),
                "config": cache_service_config(site),
                "configMountPath": lc.CACHE_CONFIG_DIR,
                "stateDir": lc.CACHE_STATE_DIR,
                "rucioAdminSecret": {"name": k8s.rucio_admin_secret, "key": lc.RUCIO_ADMIN_KEY},
                "rucioAdminMountPath": lc.RUCIO_ADMIN_DIR,
                "hubApiUrl": HUB_API_URL,
            },
            "warm": {
                "enabled": False,
                "hubServiceName": lc.WARM_SERVICE,
                "hubTokenKey": lc.hub_service_token_key(lc.WARM_SERVICE),
                "courseMountPath": lc.COURSE_CONFIG_DIR,
                "env": [{"name": lc.ENV_CACHE_URL, "value": cache_url()}],
                "image": image_values(k8s.images.hub),
                "course": {"name": f"{site.name} warm-up", "datasets": [], "pin": True},
            },
        },
        "tokens": token_service_values(site),
        "networkPolicy": {
            "enabled": True,
            "singleuserEgress": egress_values(site) + dask_egress(site),
        },
        # the hub reads the pods' CPU time and memory from the kubelets (usage report)
        "usage": {
            "enabled": True,
            "clusterRole": lc.USAGE_CLUSTER_ROLE,
            "hubServiceAccount": lc.HUB_SERVICE_ACCOUNT,
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


def values_for_file(path: str | Path) -> dict:
    """Read, validate and render a site file; raises SiteError or ValuesError."""
    site, data = read(path)
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
        site, data = read(args.site)
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
    for warning in site.warnings:
        print(f"{args.site}: warning: {warning}", file=sys.stderr)
    text = dump(values, str(args.site))
    if args.output is None:
        sys.stdout.write(text)
    else:
        atomic_write(args.output, text, 0o644)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
