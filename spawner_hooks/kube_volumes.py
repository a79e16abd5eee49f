"""Pure builders of the shared cache's pieces in a pod: the volume and its mount.

Shared by the z2jh values renderer (user pods), the KubeSpawner tests and the Dask
Gateway's per-user pods, in the style of KubeSpawner's own ``objects.py``: plain dicts
in the camelCase the Kubernetes API uses, no I/O.
"""

from __future__ import annotations

from lakehub.contract import CACHE_CLAIM, CACHE_MOUNT, CACHE_VOLUME


def cache_volume(claim_name: str = CACHE_CLAIM) -> dict:
    """The shared cache's PVC (ReadWriteMany) as a pod volume, read-only in user pods."""
    return {
        "name": CACHE_VOLUME,
        "persistentVolumeClaim": {"claimName": claim_name, "readOnly": True},
    }


def cache_volume_mount(mount_path: str = CACHE_MOUNT) -> dict:
    """Where user pods see the cache: read-only, whatever the claim allows."""
    return {"name": CACHE_VOLUME, "mountPath": mount_path, "readOnly": True}
