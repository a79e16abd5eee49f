"""Pure builders of the Kubernetes pieces lakehub adds to a user pod.

Shared by the KubeSpawner configuration and the z2jh values renderer (Kubernetes
bundle), in the style of KubeSpawner's own ``objects.py``: plain dicts in the
camelCase the Kubernetes API uses, no I/O.
"""

from __future__ import annotations

CACHE_VOLUME = "lakehub-cache"
DEFAULT_CACHE_CLAIM = "lakehub-cache"
DEFAULT_CACHE_MOUNT = "/srv/lakehub/cache"


def cache_volume(claim_name: str = DEFAULT_CACHE_CLAIM) -> dict:
    """The shared cache's PVC (ReadWriteMany) as a pod volume, read-only in user pods."""
    return {
        "name": CACHE_VOLUME,
        "persistentVolumeClaim": {"claimName": claim_name, "readOnly": True},
    }


def cache_volume_mount(mount_path: str = DEFAULT_CACHE_MOUNT) -> dict:
    """Where user pods see the cache: read-only, whatever the claim allows."""
    return {"name": CACHE_VOLUME, "mountPath": mount_path, "readOnly": True}
