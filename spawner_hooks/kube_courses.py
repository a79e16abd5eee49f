"""A course's shared folder on a cluster: a folder per course on one ReadWriteMany volume
(``kubernetes.course_volume``: an existing claim or an NFS export), mounted only into the
pods of that course's members.

Pure builders of the volume, the mounts and the init container, and the pre-spawn step
that sets them on the spawner from the user's hub groups.  A member's pod mounts the
course's folder (``subPath: <course>``) at ``~/course-<name>-shared`` read-write, and its
``handouts`` folder again at ``~/course-<name>-shared/handouts``: read-only for students,
read-write for the course's instructors.  Every pod runs as the same uid (z2jh's jovyan),
so the mounts are the boundary: a non-member's pod has none of them.

The kubelet creates a missing ``subPath`` folder as root, which jovyan could not write;
a small init container (the server's own image, as root, with the course folders of this
pod only) creates them and hands them to jovyan's uid and group first.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from posixpath import join

from courses import membership
from lakehub import contract
from sitefile import Site
from sitefile.model import CourseVolume
from spawner_hooks.profiles import hub_groups

INIT_CONTAINER = "lakehub-course-folders"
INIT_MOUNT = "/srv/lakehub-courses"


def course_volume(volume: CourseVolume) -> dict:
    """The courses' volume as a pod volume."""
    if volume.nfs is not None:
        source = {"nfs": {"server": volume.nfs.server, "path": volume.nfs.path}}
    else:
        source = {"persistentVolumeClaim": {"claimName": volume.claim}}
    return {"name": contract.COURSES_VOLUME, **source}


def course_mounts(mine: Sequence[membership.Enrolment], home: str = contract.POD_HOME) -> list:
    """The mounts of a user's courses: the shared folder read-write, its handouts
    read-only unless the user teaches the course."""
    mounts = []
    for e in mine:
        where = join(home, contract.course_shared_folder(e.name))
        mounts.append({"name": contract.COURSES_VOLUME, "mountPath": where, "subPath": e.name})
        mounts.append(
            {
                "name": contract.COURSES_VOLUME,
                "mountPath": join(where, contract.HANDOUTS_FOLDER),
                "subPath": join(e.name, contract.HANDOUTS_FOLDER),
                "readOnly": e.role != "instructor",
            }
        )
    return mounts


def init_container(
    mine: Sequence[membership.Enrolment], image: str, uid: int, gid: int
) -> dict | None:
    """Creates this user's course folders on the volume, owned by the pod's uid and group
    (each course's folder only, mounted one by one)."""
    if not mine:
        return None
    mounts, folders = [], []
    for e in mine:
        where = join(INIT_MOUNT, e.name)
        mounts.append({"name": contract.COURSES_VOLUME, "mountPath": where, "subPath": e.name})
        folders.append(join(where, contract.HANDOUTS_FOLDER))
    quoted = " ".join(shlex.quote(f) for f in folders)
    script = (
        f"mkdir -p {quoted} && for d in {quoted}; do"
        f' chown {uid}:{gid} "$d" "$(dirname "$d")"; chmod 2775 "$d" "$(dirname "$d")"; done'
    )
    return {
        "name": INIT_CONTAINER,
        "image": image,
        "command": ["sh", "-c", script],
        "securityContext": {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False},
        "volumeMounts": mounts,
    }


def _without_ours(items: Sequence[dict]) -> list[dict]:
    return [i for i in items if i.get("name") not in (contract.COURSES_VOLUME, INIT_CONTAINER)]


class KubeCourseFolders:
    """The pre-spawn step on clusters: the spawner's volumes, mounts and init containers
    for the user's courses.  A spawner is reused for the next start of the same server,
    so what an earlier start added is replaced, not added twice."""

    def __init__(self, site: Site, home: str = contract.POD_HOME):
        self.site = site
        self.home = home

    async def __call__(self, spawner) -> None:
        k8s = self.site.kubernetes
        if k8s is None or k8s.course_volume is None or not self.site.courses:
            return
        mine = membership.enrolments(self.site.courses, hub_groups(spawner))
        volumes = _without_ours(spawner.volumes)
        mounts = [m for m in spawner.volume_mounts if m.get("name") != contract.COURSES_VOLUME]
        inits = _without_ours(spawner.init_containers)
        if mine:
            volumes.append(course_volume(k8s.course_volume))
            mounts += course_mounts(mine, self.home)
            init = init_container(mine, spawner.image, spawner.uid or 1000, spawner.fs_gid or 100)
            inits.append(init)
        spawner.volumes = volumes
        spawner.volume_mounts = mounts
        spawner.init_containers = inits
