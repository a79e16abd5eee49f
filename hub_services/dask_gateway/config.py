"""The local Dask Gateway server's settings, built from the site model (pure), and the
traitlets configuration made from them.

The hub writes :func:`gateway_settings` to a file (hub_config.local) and starts
``dask-gateway-server -f hub_services/dask_gateway/gateway_config.py`` as a managed
service; that file calls :func:`load_from_environment`.  Nothing here is secret: the
gateway authenticates users through the hub with its service token, which JupyterHub
hands to the process in ``JUPYTERHUB_API_TOKEN``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from lakehub.contract import (
    BEARER_TOKEN_FILE,
    DASK_SERVICE,
    ENV_DASK_CONFIG,
    RUCIO_CFG_FILE,
    RUCIO_CONFIG,
    SESSION_DIR,
    TOKEN_FILE,
    service_prefix,
)
from sitefile import Site, memory_bytes


def gateway_settings(
    site: Site,
    *,
    port: int,
    clusters_directory: str,
    home_template: str,
    bin_dir: str,
    isolated: bool,
) -> dict:
    """What the local gateway needs: where it listens, where users' homes are, which
    environment runs schedulers and workers, and the site's limits."""
    dask = site.dask
    return {
        "service": DASK_SERVICE,
        "address": f"127.0.0.1:{port}",
        "prefix": service_prefix(DASK_SERVICE),
        "clusters_directory": clusters_directory,
        "home_template": home_template,
        "bin_dir": bin_dir,
        "isolated": isolated,
        "max_workers": dask.max_workers_per_user,
        "worker_cores": dask.worker_cores,
        "worker_memory_bytes": int(memory_bytes(dask.worker_memory)),
        "idle_timeout_seconds": dask.idle_timeout_seconds,
    }


def session_paths(home: str) -> dict[str, str]:
    """The user's own Rucio client files, as their session sees them (pure)."""
    folder = PurePosixPath(home) / SESSION_DIR
    return {
        # kept fresh by the session's refresher (lakehub.token_refresher); readable only by the
        # user's account, which is the account schedulers and workers run as
        BEARER_TOKEN_FILE: str(folder / TOKEN_FILE),
        RUCIO_CONFIG: str(folder / RUCIO_CFG_FILE),
    }


def cluster_env(home_template: str, bin_dir: str, username: str) -> dict[str, str]:
    """Environment of a user's scheduler and workers, from the *authenticated* hub
    username only: a user cannot point their workers at somebody else's files (pure)."""
    home = home_template.format(username=username)
    return {
        "HOME": home,
        "PATH": os.pathsep.join([bin_dir, "/usr/local/bin", "/usr/bin", "/bin"]),
        **session_paths(home),
    }


def configure(c, settings: dict) -> None:
    """Fill the gateway's traitlets config ``c`` from :func:`gateway_settings`."""
    c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
    # only tokens allowed to access this service (the role grants it to users)
    c.JupyterHubAuthenticator.jupyterhub_service_name = settings["service"]
    c.DaskGateway.backend_class = (
        "hub_services.dask_gateway.backend.LakehubLocalBackend"
        if settings["isolated"]
        else "hub_services.dask_gateway.backend.SharedAccountBackend"
    )
    c.Proxy.address = settings["address"]  # API, dashboards and scheduler TLS on one port
    c.Proxy.prefix = settings["prefix"]  # reached through the hub's proxy under this path
    c.LocalBackend.clusters_directory = settings["clusters_directory"]
    # nothing of the hub's own environment leaks into users' processes
    c.LocalBackend.inherited_environment = ["LANG", "LC_ALL"]
    c.LakehubClusters.home_template = settings["home_template"]
    c.LakehubClusters.bin_dir = settings["bin_dir"]
    bin_dir = Path(settings["bin_dir"])
    c.ClusterConfig.scheduler_cmd = [str(bin_dir / "dask-scheduler")]
    c.ClusterConfig.worker_cmd = [str(bin_dir / "dask-worker")]
    c.ClusterConfig.worker_cores = settings["worker_cores"]
    c.ClusterConfig.worker_memory = settings["worker_memory_bytes"]
    c.ClusterConfig.cluster_max_workers = settings["max_workers"]
    c.ClusterConfig.idle_timeout = float(settings["idle_timeout_seconds"])


def load_from_environment(c) -> None:
    """Entry point for ``gateway_config.py``: the settings file named by the hub."""
    where = os.environ.get(ENV_DASK_CONFIG)
    if not where:
        raise SystemExit(f"{ENV_DASK_CONFIG} is not set; the hub starts this service")
    configure(c, json.loads(Path(where).read_text(encoding="utf-8")))
