"""Pure builders for what a session needs: Rucio client config, the rucio-jupyterlab
``RucioConfig``, environment variables and the notice shown when something failed.

One builder per artefact, used by every delivery mechanism (files in the home locally,
a Secret plus mounts on Kubernetes).  Nothing here touches the network or the disk.
"""

from __future__ import annotations

import configparser
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from lakehub import contract
from sitefile import RucioInstance

SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class ReplicaMode:
    """rucio-jupyterlab's replica mode: files appear in a shared mount of an RSE."""

    rse: str
    mount_path: str  # where the RSE's files are seen inside the session
    pfn_prefix: str  # the RSE protocol's path prefix, stripped from PFNs

    @property
    def path_begins_at(self) -> int:
        return len(PurePosixPath(self.pfn_prefix).parts) - 1


@dataclass(frozen=True)
class SessionPaths:
    """Where a session finds lakehub's files.  ``root`` is a folder the user owns."""

    root: PurePosixPath

    @property
    def rucio_cfg(self) -> PurePosixPath:
        return self.root / contract.RUCIO_CFG_FILE

    @property
    def token(self) -> PurePosixPath:
        return self.root / contract.TOKEN_FILE

    @property
    def token_seed(self) -> PurePosixPath | None:
        """A read-only copy the session starts from when ``token`` is not writable where
        it is delivered (Kubernetes); locally the token is written in place."""
        return None

    @property
    def jupyter_config_dir(self) -> PurePosixPath:
        return self.root / contract.JUPYTER_CONFIG_DIR

    @property
    def jupyter_server_config(self) -> PurePosixPath:
        return self.jupyter_config_dir / contract.JUPYTER_SERVER_CONFIG_FILE

    @property
    def rucio_jupyterlab_dir(self) -> PurePosixPath:
        return self.root / contract.RUCIO_JUPYTERLAB_DIR

    @property
    def status(self) -> PurePosixPath:
        return self.root / contract.STATUS_FILE


@dataclass(frozen=True)
class DaskGateway:
    """Where a session finds the site's Dask Gateway (docs/scale-out.md)."""

    address: str  # the gateway's HTTP API (and dashboards), e.g. http://host/services/dask-gateway
    proxy_address: str  # scheduler traffic (TLS), e.g. gateway://host:8786


def dask_gateway_env(gateway: DaskGateway) -> dict[str, str]:
    """What makes ``Gateway()`` and the dask JupyterLab extension work with no arguments.

    dask reads ``DASK_<SECTION>__<KEY>`` variables as configuration; the session's own
    ``$JUPYTERHUB_API_TOKEN`` is the credential (auth type ``jupyterhub``), so nothing
    secret is added here.
    """
    return {
        "DASK_GATEWAY__ADDRESS": gateway.address,
        "DASK_GATEWAY__PROXY_ADDRESS": gateway.proxy_address,
        "DASK_GATEWAY__PUBLIC_ADDRESS": gateway.address,
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        # the lab extension's "+ NEW" button asks the gateway for a cluster
        "DASK_LABEXTENSION__FACTORY__MODULE": "dask_gateway",
        "DASK_LABEXTENSION__FACTORY__CLASS": "GatewayCluster",
    }


def rucio_cfg(instance: RucioInstance, account: str, ca_cert: str | None = None) -> str:
    """The ``rucio.cfg`` that makes the ``rucio`` CLI and rucio-clients use the token.

    rucio-clients reads a pre-issued bearer token with ``auth_type = oidc`` plus the
    ``BEARER_TOKEN_FILE`` variable (WLCG bearer-token discovery): no password needed.
    """
    cfg = configparser.ConfigParser(interpolation=None)
    cfg["client"] = {
        "rucio_host": instance.rucio_host,
        "auth_host": instance.auth_url,
        "auth_type": "oidc",
        "account": account,
        "vo": instance.vo,
        "ca_cert": str(ca_cert or instance.ca_cert or SYSTEM_CA_BUNDLE),
        "request_retries": "3",
    }
    buf = io.StringIO()
    buf.write("# Written by lakehub at spawn; it is replaced at the next start.\n")
    cfg.write(buf)
    return buf.getvalue()


def _instance_config(
    i: RucioInstance, token_path: str, ca_cert: str | None, replica: ReplicaMode | None
) -> dict:
    config = {
        "name": i.name,
        "display_name": i.title,
        "rucio_base_url": i.rucio_host,
        "rucio_auth_url": i.auth_url,
        "rucio_ca_cert": str(ca_cert or i.ca_cert or SYSTEM_CA_BUNDLE),
        "vo": i.vo,
        "mode": "download",
        "wildcard_enabled": True,
        "oidc_auth": "file",
        "oidc_file_name": token_path,
    }
    if replica is not None:
        config.update(
            mode="replica",
            destination_rse=replica.rse,
            rse_mount_path=replica.mount_path,
            path_begins_at=replica.path_begins_at,
        )
    return config


def rucio_jupyterlab_config(
    instances: Sequence[RucioInstance],
    default: str,
    token_path: str,
    ca_cert: str | None = None,
    replica: ReplicaMode | None = None,
) -> dict:
    """``jupyter_server_config.json`` content configuring rucio-jupyterlab.

    Every instance authenticates with the token file (``oidc_auth: file``); the
    extension re-reads it when its cached token expires.  The default instance runs in
    replica mode when the site has a shared cache (``replica``): "make available"
    creates a rule on the cache RSE and the files show up in the read-only cache
    mount.  Other instances use download mode (copies in the home).
    """
    return {
        "RucioConfig": {
            "instances": [
                _instance_config(i, token_path, ca_cert, replica if i.name == default else None)
                for i in instances
            ],
            "default_instance": default,
            "default_auth_type": "oidc",
        },
        # lakehub's own extension records the token file as the credential (jupyter_ext)
        "ServerApp": {"jpserver_extensions": {"lakehub": True}},
    }


def session_env(
    paths: SessionPaths,
    token_path: str | None = None,
    cache_url: str | None = None,
    token_url: str | None = None,
    courses: Sequence[Mapping[str, str]] = (),
    dask: DaskGateway | None = None,
) -> dict[str, str]:
    """Environment variables for the single-user server: paths and URLs, never a secret.

    ``courses`` are the session's courses (name, target folder, repo, branch): pods pull
    them and every session reports their revisions (``lakehub.courses``)."""
    env = {
        contract.RUCIO_CONFIG: str(paths.rucio_cfg),
        contract.BEARER_TOKEN_FILE: str(token_path or paths.token),
        "JUPYTER_CONFIG_PATH": str(paths.jupyter_config_dir),
        contract.ENV_SESSION_DIR: str(paths.root),
        # rucio-jupyterlab keeps its state (stored credentials, replica lists) in a
        # SQLite file; inside JupyterHub it defaults to /tmp/.rucio_jupyterlab, shared
        # by every user of a machine.  Keep it in the user's own private folder.
        "RUCIO_CACHE_DIR": str(paths.rucio_jupyterlab_dir),
    }
    if cache_url:
        env[contract.ENV_CACHE_URL] = cache_url
    if token_url:  # where the session's refresher renews the token (lakehub.token_refresher)
        env[contract.ENV_TOKEN_URL] = token_url
    if paths.token_seed is not None:
        env[contract.ENV_TOKEN_SEED] = str(paths.token_seed)
    if courses:
        env[contract.ENV_COURSES] = json.dumps([dict(c) for c in courses])
    if dask is not None:
        env.update(dask_gateway_env(dask))
    return env


def session_files(
    paths: SessionPaths,
    instances: Sequence[RucioInstance],
    default: RucioInstance,
    account: str,
    problems: Sequence[str],
    token_expires: int | None,
    replica: ReplicaMode | None = None,
) -> dict[PurePosixPath, str]:
    """Every non-secret file a session gets, by path (shared by all deliveries)."""
    return {
        paths.rucio_cfg: rucio_cfg(default, account),
        paths.jupyter_server_config: json.dumps(
            rucio_jupyterlab_config(instances, default.name, str(paths.token), replica=replica),
            indent=2,
        ),
        paths.status: status_json(account, problems, token_expires),
    }


def notice_markdown(problems: Sequence[str]) -> str:
    lines = [
        "# lakehub could not finish setting up your session",
        "",
        "Your server started, but some data-lake features are not ready:",
        "",
        *[f"- {p}" for p in problems],
        "",
        "Restart your server later from the hub's home page (File > Hub Control Panel)"
        " to try again. This note disappears once everything works.",
        "",
    ]
    return "\n".join(lines)


def status_json(account: str | None, problems: Sequence[str], token_expires: int | None) -> str:
    return json.dumps(
        {"rucio_account": account, "problems": list(problems), "token_expires": token_expires},
        indent=2,
    )
