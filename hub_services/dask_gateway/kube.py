"""The dask-gateway chart's gateway with lakehub's rules (Kubernetes).

The chart loads ``gateway.extraConfig`` after its own configuration; lakehub's values put
only a two-line loader there (``from hub_services.dask_gateway.kube import configure``),
and the gateway runs from lakehub's hub image, which carries this package.  Settings come
from ``gateway.env`` (the ``ENV_*`` names), rendered from the site file by
hub_config.values.

What it adds to the chart: one cluster per user, the site's worker limit and idle
timeout, and per-user pod pieces computed from the *authenticated* user name: the shared
cache read-only, and the user's own Rucio token Secret mounted read-only with
``BEARER_TOKEN_FILE`` pointing at it.  The hub creates that Secret at spawn and deletes
it with the user's last server (``spawner_hooks.kube_delivery.KubeSecretDelivery``), and the token
service rewrites its token after each renewal (``tokens.secret_renewal``); the
kubelet refreshes a mounted Secret in place when its content changes (it is not
immutable, and it is mounted without subPath).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

from lakehub.contract import (
    BEARER_TOKEN_FILE,
    ENV_DASK_CACHE_CLAIM,
    ENV_DASK_CACHE_MOUNT,
    ENV_DASK_IDLE_TIMEOUT,
    ENV_DASK_MAX_WORKERS,
    ENV_DASK_TOKEN_DIR,
    TOKEN_FILE,
    TOKEN_MOUNT,
)
from spawner_hooks.kube_delivery import user_token_secret_name
from spawner_hooks.kube_volumes import cache_volume, cache_volume_mount

TOKEN_VOLUME = "lakehub-rucio-token"  # noqa: S105 (a volume's name in a worker pod)


def token_secret_name(username: str) -> str:
    """The per-user token Secret the hub creates at spawn and the token service renews
    (:func:`spawner_hooks.kube_delivery.user_token_secret_name`)."""
    return user_token_secret_name(username)


def user_pod_overrides(
    username: str, *, cache_claim: str, cache_mount: str, token_dir: str = TOKEN_MOUNT
) -> dict:
    """KubeClusterConfig overrides for one user's scheduler and workers (pure)."""
    volumes = [
        cache_volume(cache_claim),
        {
            "name": TOKEN_VOLUME,
            "secret": {
                "secretName": token_secret_name(username),
                "items": [{"key": TOKEN_FILE, "path": TOKEN_FILE}],
                "defaultMode": 0o400,
                # pods start without it (no Rucio on workers) until the Secret exists
                "optional": True,
            },
        },
    ]
    mounts = [
        cache_volume_mount(cache_mount),
        {"name": TOKEN_VOLUME, "mountPath": token_dir, "readOnly": True},
    ]
    pod, container = {"volumes": volumes}, {"volumeMounts": mounts}
    return {
        "scheduler_extra_pod_config": pod,
        "scheduler_extra_container_config": container,
        "worker_extra_pod_config": pod,
        "worker_extra_container_config": container,
        "environment": {BEARER_TOKEN_FILE: f"{token_dir}/{TOKEN_FILE}"},
    }


def configure(c, environ: Mapping[str, str] | None = None) -> None:
    """Called by the chart's gateway configuration (``gateway.extraConfig``)."""
    from dask_gateway_server.options import Options

    env = os.environ if environ is None else environ
    claim, mount = env[ENV_DASK_CACHE_CLAIM], env[ENV_DASK_CACHE_MOUNT]
    token_dir = env.get(ENV_DASK_TOKEN_DIR, TOKEN_MOUNT)

    def per_user(options, user) -> dict:
        return user_pod_overrides(
            user.name, cache_claim=claim, cache_mount=mount, token_dir=token_dir
        )

    c.DaskGateway.backend_class = "hub_services.dask_gateway.kube.LakehubKubeBackend"
    c.KubeBackend.cluster_options = Options(handler=per_user)
    c.KubeClusterConfig.cluster_max_workers = int(env[ENV_DASK_MAX_WORKERS])
    c.KubeClusterConfig.idle_timeout = float(env[ENV_DASK_IDLE_TIMEOUT])


@functools.cache
def _backend_class():
    from dask_gateway_server.backends.kubernetes import KubeBackend

    from hub_services.dask_gateway.backend import OneClusterPerUser

    class LakehubKubeBackend(OneClusterPerUser, KubeBackend):
        """The chart's Kubernetes backend, one cluster per user."""

    return LakehubKubeBackend


def __getattr__(name: str):
    # the Kubernetes backend imports kubernetes_asyncio; only the gateway pod needs it
    if name == "LakehubKubeBackend":
        return _backend_class()
    raise AttributeError(name)
