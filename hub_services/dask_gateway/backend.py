"""dask-gateway-server's local-process backend, adapted to lakehub's accounts.

When the hub runs as root, every hub user has a system account ``lh-<account>``
(spawner_hooks.local_spawner) and a 0700 home.  :class:`LakehubLocalBackend` starts a
user's scheduler and workers under that account, so they read exactly what the user's
own server reads: the shared cache (world-readable, read-only) and the user's Rucio
token file in their home, and nobody else's.  The environment they get is computed here
from the hub username the gateway authenticated, never from what the client asked for.

Each user may run one cluster at a time, so the site's worker limit is a per-user limit.
Without root (a developer's laptop) :class:`SharedAccountBackend` runs every cluster as
the hub's own account, as the local spawner does there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.local import LocalBackend, UnsafeLocalBackend, getpwnam
from dask_gateway_server.models import ClusterStatus
from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from hub_services.dask_gateway.config import cluster_env
from spawner_hooks.local_spawner import system_username

ACTIVE = [ClusterStatus.PENDING, ClusterStatus.RUNNING]


def owned_paths(workdir: str, clusters_directory: str) -> list[str]:
    """The working folder of a cluster and everything below it; refuses a folder that
    is not directly inside ``clusters_directory``."""
    folder = Path(workdir)
    if not clusters_directory or folder.parent != Path(clusters_directory) or folder.is_symlink():
        raise PublicException(f"unexpected cluster working folder {workdir!r}")
    found = [str(folder)]
    for parent, dirs, files in os.walk(folder):
        found += [os.path.join(parent, name) for name in dirs + files]
    return found


class OneClusterPerUser(LoggingConfigurable):
    """A user may run one cluster at a time (local and Kubernetes backends)."""

    async def start_cluster(self, user, cluster_options):
        running = await self.list_clusters(username=user.name, statuses=ACTIVE)
        if running:
            raise PublicException(
                f"{user.name} already has a running cluster ({running[0].name}); connect to"
                " it with Gateway().connect(name) or shut it down first"
            )
        return await super().start_cluster(user, cluster_options)


class LakehubClusters(OneClusterPerUser):
    """What both local backends share: the user's environment, one cluster per user."""

    home_template = Unicode(config=True, help="A user's home; {username} is the hub name.")
    bin_dir = Unicode(config=True, help="bin/ of the environment schedulers and workers run.")

    def get_env(self, cluster):
        env = super().get_env(cluster)
        env.update(cluster_env(self.home_template, self.bin_dir, cluster.username))
        # the cluster's own private folder (0700, removed with the cluster), not a
        # scratch folder in /tmp shared by every user
        workdir = cluster.state.get("workdir")
        if workdir:
            env["DASK_TEMPORARY_DIRECTORY"] = workdir
        return env


@dataclass(frozen=True)
class _RunAs:
    """The part of a cluster that LocalBackend.make_preexec_fn reads, with the user's
    system account in place of their hub name."""

    username: str
    state: dict


class LakehubLocalBackend(LakehubClusters, LocalBackend):
    """Schedulers and workers run as the user's system account (the hub is root)."""

    def set_file_permissions(self, paths, username):
        """Give the cluster's working folder, and everything in it, to the user's account.

        Upstream's list holds the working folder first, then its sub-folders, then the
        certificate files; but dask-gateway-server 2026.3.0 adds those file paths with
        ``list.extend(str)``, one *character* at a time, so its own loop would chown
        ``/`` to the user before failing.  Only what lies inside the working folder is
        touched here, without following links.
        """
        entry = getpwnam(system_username(username))
        for path in owned_paths(paths[0], self.clusters_directory):
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    def make_preexec_fn(self, cluster):
        return super().make_preexec_fn(_RunAs(system_username(cluster.username), cluster.state))

    def get_env(self, cluster):
        env = super().get_env(cluster)
        env["USER"] = system_username(cluster.username)
        return env


class SharedAccountBackend(LakehubClusters, UnsafeLocalBackend):
    """Every cluster runs as the hub's account: no isolation (the hub is not root)."""
