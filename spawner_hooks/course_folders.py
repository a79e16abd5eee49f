"""A course's shared folder on the local stack: ``~/course-<name>-shared/`` for its members.

One folder per course under the local state (``<state>/courses/shared/<name>``), owned by
root and by the course's system group ``lhc-<name>`` with mode ``2770``: members (the
course's students and instructors) read and write it, nobody else can enter it.  The
setgid bit gives every new file the course's group, and a default ACL keeps new files and
folders group-writable whatever the member's umask, so what one member creates stays
writable by the others.  Inside it,
``handouts/`` belongs to the instructors' group ``lhc-<name>-instructors`` (mode ``2775``,
default ACL the same): instructors write it, students read it.

At each spawn the hub (as root) makes sure the groups and folders exist, puts the user's
system account into the groups of exactly their courses (``gpasswd``; a student who left
a course leaves its group), and links ``course-<name>-shared`` in their home to the
folder (links of courses left are removed).  The server then runs with those groups
(:class:`spawner_hooks.local_spawner.LakehubLocalSpawner` sets the supplementary groups).
All of it is blocking system work and runs in a thread, never on the hub's event loop.

Members may rename or delete what is in the folder, as in any shared folder; the hub
recreates ``handouts/`` if it is gone, moves aside whatever a member put in its place,
and changes folders through descriptors opened without following links, so a link
planted there never redirects the hub's changes.  Without root (a developer's laptop) every server
runs as one account: the folders and links are made, without groups.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import logging
import os
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from courses import membership
from lakehub import contract
from sitefile import Site
from spawner_hooks.profiles import hub_groups

log = logging.getLogger("JupyterHub").getChild("lakehub")

# Linux limits group names to 32 characters
GROUP_NAME_MAX = 32


def system_group(course: str, instructors: bool = False) -> str:
    """The system group of a course's members (``lhc-<name>``) or of its instructors
    (``lhc-<name>-instructors``); a name too long gets a hash in place of its end."""
    suffix = contract.INSTRUCTORS_GROUP_SUFFIX if instructors else ""
    name = f"{contract.LOCAL_COURSE_GROUP_PREFIX}{course}{suffix}"
    if len(name) <= GROUP_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: GROUP_NAME_MAX - 9]}-{digest}"


@dataclass(frozen=True)
class CourseFolder:
    """One course's folder and groups (pure)."""

    course: str
    folder: Path  # <root>/<course>
    group: str  # every member
    instructors_group: str

    @property
    def handouts(self) -> Path:
        return self.folder / contract.HANDOUTS_FOLDER

    @property
    def link_name(self) -> str:
        return contract.course_shared_folder(self.course)


@dataclass(frozen=True)
class FolderPlan:
    """What one spawn makes sure of (pure): every course's folder, and for the user the
    groups and links of their own courses."""

    folders: tuple[CourseFolder, ...]  # every course of the site
    member_of: tuple[str, ...]  # system groups the user belongs in
    links: tuple[CourseFolder, ...]  # folders linked into the user's home


def plan(site: Site, root: Path, hub_groups: Sequence[str]) -> FolderPlan:
    folders = tuple(
        CourseFolder(c.name, root / c.name, system_group(c.name), system_group(c.name, True))
        for c in site.courses
    )
    by_name = {f.course: f for f in folders}
    mine = membership.enrolments(site.courses, hub_groups)
    member_of: list[str] = []
    for e in mine:
        member_of.append(by_name[e.name].group)
        if e.role == "instructor":
            member_of.append(by_name[e.name].instructors_group)
    return FolderPlan(folders, tuple(member_of), tuple(by_name[e.name] for e in mine))


# --- the system work (blocking; run in a thread) -------------------------------------------

# A default ACL as the kernel stores it (the xattr ``system.posix_acl_default``, version 2:
# entries of tag, permissions, id), written through the folder's descriptor: no external
# tool, and never through a link a member may have put in place of a folder.
_ACL_VERSION = 2
_ACL_USER_OBJ, _ACL_GROUP_OBJ, _ACL_OTHER = 0x01, 0x04, 0x20
_ACL_UNDEFINED_ID = 0xFFFFFFFF
DEFAULT_ACL_XATTR = "system.posix_acl_default"


def default_acl(owner: int, group: int, other: int) -> bytes:
    """The xattr value of a default ACL with these rwx bits (pure)."""
    entries = [(_ACL_USER_OBJ, owner), (_ACL_GROUP_OBJ, group), (_ACL_OTHER, other)]
    return struct.pack("<I", _ACL_VERSION) + b"".join(
        struct.pack("<HHI", tag, perm, _ACL_UNDEFINED_ID) for tag, perm in entries
    )


# the course folder: new entries group-writable, closed to others (rwx, rwx, ---)
SHARED_ACL = default_acl(7, 7, 0)
# handouts: the instructors' group writes, students (others) read (rwx, rwx, r-x)
HANDOUTS_ACL = default_acl(7, 7, 5)


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def ensure_group(name: str) -> bool:
    """Create a system group; True if it was created."""
    try:
        grp.getgrnam(name)
        return False
    except KeyError:
        pass
    done = _run("groupadd", "--system", name)
    if done.returncode not in (0, 9):  # 9: it exists (made meanwhile)
        raise RuntimeError(f"groupadd {name} failed: {done.stderr.strip()}")
    return done.returncode == 0


def set_membership(user: str, wanted: set[str], managed: Sequence[str]) -> None:
    """Make ``user`` a member of exactly ``wanted`` among the ``managed`` groups."""
    for name in managed:
        members = set(grp.getgrnam(name).gr_mem)
        if name in wanted and user not in members:
            action = ("-a", user)
        elif name not in wanted and user in members:
            action = ("-d", user)
        else:
            continue
        done = _run("gpasswd", *action, name)
        if done.returncode != 0:
            raise RuntimeError(f"gpasswd {' '.join(action)} {name} failed: {done.stderr.strip()}")


def _ensure_folder(folder: Path, gid: int | None, mode: int, acl: bytes) -> None:
    """A real folder (whatever else is in its place is moved aside) with this group,
    mode and default ACL, changed through its descriptor only."""
    try:
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode):
            aside = folder.with_name(f"{folder.name}.moved-{int(time.time())}")
            os.rename(folder, aside)
            log.warning("lakehub: %s was not a folder; moved it to %s", folder, aside.name)
    except FileNotFoundError:
        pass
    folder.mkdir(exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if gid is not None:
            os.fchown(fd, 0, gid)
        try:
            os.setxattr(fd, DEFAULT_ACL_XATTR, acl)
        except OSError as exc:  # a file system without ACLs: new files follow the umask
            log.warning("lakehub: no default ACL on %s: %s", folder, exc)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def ensure_folders(root: Path, folders: Sequence[CourseFolder], isolated: bool) -> None:
    """Every course's folder and handouts with their groups, modes and default ACLs."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711)  # noqa: S103  (members traverse it; nobody lists the courses)
    for f in folders:
        gid = grp.getgrnam(f.group).gr_gid if isolated else None
        _ensure_folder(f.folder, gid, 0o2770, SHARED_ACL)
        igid = grp.getgrnam(f.instructors_group).gr_gid if isolated else None
        _ensure_folder(f.handouts, igid, 0o2775, HANDOUTS_ACL)


def link_into_home(home: Path, root: Path, links: Sequence[CourseFolder], owner) -> None:
    """Links in the home to the user's course folders; links of courses left go.  Only
    links are made or removed (never followed): a file of the user's own with the same
    name is left alone."""
    wanted = {f.link_name: f.folder for f in links}
    for entry in home.iterdir():
        if not entry.is_symlink():
            continue
        target = Path(os.readlink(entry))
        if target.parent == root and wanted.get(entry.name) != target:
            entry.unlink()
    for name, target in wanted.items():
        link = home / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.exists() or link.is_symlink():
            log.warning(
                "lakehub: %s exists in %s's home; the course folder is not linked", name, home
            )
            continue
        link.symlink_to(target)
        if owner is not None:
            os.chown(link, owner[0], owner[1], follow_symlinks=False)


class LocalCourseFolders:
    """The pre-spawn step of the local stack."""

    def __init__(self, site: Site, root: Path, groups_file: Path | None = None):
        self.site = site
        self.root = root
        self.groups_file = groups_file  # groups made, for `make clean`
        self._lock = threading.Lock()  # one change of /etc/group at a time

    def apply(
        self, spawner_user: str | None, hub_groups: Sequence[str], home: Path, owner
    ) -> FolderPlan:
        p = plan(self.site, self.root, hub_groups)
        with self._lock:
            if spawner_user is not None:
                managed = [g for f in p.folders for g in (f.group, f.instructors_group)]
                for name in managed:
                    if ensure_group(name) and self.groups_file is not None:
                        with self.groups_file.open("a") as out:
                            out.write(name + "\n")
                set_membership(spawner_user, set(p.member_of), managed)
            ensure_folders(self.root, p.folders, spawner_user is not None)
        link_into_home(home, self.root, p.links, owner)
        return p

    async def __call__(self, spawner) -> None:
        if not self.site.courses:
            return
        owner = await spawner.prepare_home()
        user = spawner.system_user if owner is not None else None
        home = Path(spawner.home_dir)
        try:
            await asyncio.to_thread(self.apply, user, hub_groups(spawner), home, owner)
        except (OSError, RuntimeError) as exc:
            # the server still starts; the hub log says why the course folders are missing
            log.error("lakehub: course folders for %s: %s", spawner.user.name, exc)
