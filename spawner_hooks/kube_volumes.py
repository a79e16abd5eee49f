"""Pure builders of the Kubernetes pieces lakehub adds to a user pod.

Shared by the KubeSpawner configuration and the z2jh values renderer (Kubernetes
bundle), in the style of KubeSpawner's own ``objects.py``: plain dicts in the
camelCase the Kubernetes API uses, no I/O.
"""

from __future__ import annotations

import shlex

CACHE_VOLUME = "lakehub-cache"
DEFAULT_CACHE_CLAIM = "lakehub-cache"
DEFAULT_CACHE_MOUNT = "/srv/lakehub/cache"


def cache_volume(claim_name: str = DEFAULT_CACHE_CLAIM) -> dict:
    """The shared cache's PVC (ReadWriteMany) as a pod volume, read-only in user pods."""
    return {
        "name": CACHE_VOLUME,
        "persistentVolumeClaim": {"claimName": claim_name, "readOnly": True},
    }


HOME = "/home/jovyan"
COURSE_NOTICE = "LAKEHUB-COURSES.md"


def course_pull_script(courses: list[tuple[str, str, str]], home: str = HOME) -> str:
    """A shell script for a user pod's ``postStart`` hook: nbgitpuller's ``gitpuller``
    for each (git URL, branch, target folder), as the local stack does at spawn.

    A failed pull never stops the pod: the student finds the reason in a note in the
    home, which the next successful start removes.
    """
    lines = [f"rm -f {shlex.quote(f'{home}/{COURSE_NOTICE}')}"]
    for repo, branch, target in courses:
        path = shlex.quote(f"{home}/{target}")
        note = shlex.quote(
            f"The course in ~/{target} could not be updated from {repo} ({branch})."
            " Your files are unchanged; restart your server later to try again."
        )
        lines.append(
            f"gitpuller {shlex.quote(repo)} {shlex.quote(branch)} {path} >/dev/null 2>&1"
            f" || echo {note} >> {shlex.quote(f'{home}/{COURSE_NOTICE}')}"
        )
    return "\n".join(lines) + "\n"


def cache_volume_mount(mount_path: str = DEFAULT_CACHE_MOUNT) -> dict:
    """Where user pods see the cache: read-only, whatever the claim allows."""
    return {"name": CACHE_VOLUME, "mountPath": mount_path, "readOnly": True}
