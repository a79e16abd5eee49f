"""A course's shared folder and handouts, for its members only: the local stack's system
groups and folders against the real hub, and the pod spec on a real kube-apiserver.

What is real: JupyterHub with configurable-http-proxy and lakehub's hooks (``course``
marker), the per-user system accounts, groups and ACLs of this machine (the hub runs as
root), the users' JupyterLab servers whose kernels do the reading and writing; on the
cluster side (``k8s`` marker) etcd, kube-apiserver, kwok and KubeSpawner under z2jh's hub
Role, as in ``tests/test_k8s.py`` (what that simulates, it simulates here too: no kubelet
mounts the volumes, so the mounts are checked in the pod spec).  The hub groups of the
courses are made through the hub's REST API, as an admin (or the hub at start) does.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from lakehub import contract
from sitefile import parse_site
from spawner_hooks import course_folders as cf
from spawner_hooks import kube_courses
from spawner_hooks.local_spawner import system_username
from testkit.harness import (
    add_to_group,
    run_in_kernel,
    stack_folder,
    start_stack,
    stop_stack,
    unique_user,
    write_site,
)

COURSE = "hyy"
OTHER = "masters"
SHARED = contract.course_shared_folder(COURSE)


def site_data(**kubernetes) -> dict:
    data = {
        "name": "courses",
        "rucio": {"instances": [{"name": "lake", "rucio_host": "https://rucio.invalid"}]},
        "auth": {"type": "native", "admin_users": ["admin"]},
        "courses": [
            {"name": COURSE, "source": "courses/hyy", "target": "course-hyy", "students": []},
            {
                "name": OTHER,
                "source": "courses/m",
                "target": "course-m",
                "students": [],
                "storage": "50Gi",
            },
        ],
    }
    if kubernetes:
        data["kubernetes"] = {"public_url": "https://hub.example.org", **kubernetes}
    return data


# --- pure ----------------------------------------------------------------------------------


def test_plan_links_and_groups_follow_the_users_courses(tmp_path):
    site = parse_site(site_data())
    p = cf.plan(site, tmp_path, ["course-hyy", "course-masters-instructors", "other"])
    assert [f.course for f in p.folders] == [COURSE, OTHER]
    assert [f.link_name for f in p.links] == ["course-hyy-shared", "course-masters-shared"]
    # an instructor is in the course's group and in its instructors' group
    assert p.member_of == ("lhc-hyy", "lhc-masters", "lhc-masters-instructors")
    assert cf.plan(site, tmp_path, []).links == ()


def test_system_group_names_fit_linux_limits():
    assert cf.system_group("hyy") == "lhc-hyy"
    assert cf.system_group("hyy", instructors=True) == "lhc-hyy-instructors"
    long = "a" * 32
    names = {cf.system_group(long), cf.system_group(long, instructors=True)}
    assert len(names) == 2 and all(len(n) <= 32 for n in names)


def test_pod_mounts_a_members_course_only_and_handouts_read_only_for_students():
    site = parse_site(site_data(course_volume={"claim": "courses-rwx"}))
    (hyy, _) = site.courses
    from courses.membership import Enrolment

    student = kube_courses.course_mounts([Enrolment(hyy, "student")])
    assert student == [
        {
            "name": contract.COURSES_VOLUME,
            "mountPath": "/home/jovyan/course-hyy-shared",
            "subPath": "hyy",
        },
        {
            "name": contract.COURSES_VOLUME,
            "mountPath": "/home/jovyan/course-hyy-shared/handouts",
            "subPath": "hyy/handouts",
            "readOnly": True,
        },
    ]
    teacher = kube_courses.course_mounts([Enrolment(hyy, "instructor")])
    assert teacher[1]["readOnly"] is False
    volume = kube_courses.course_volume(site.kubernetes.course_volume)
    assert volume == {
        "name": contract.COURSES_VOLUME,
        "persistentVolumeClaim": {"claimName": "courses-rwx"},
    }
    nfs = parse_site(site_data(course_volume={"nfs": {"server": "nfs.lab", "path": "/courses"}}))
    assert kube_courses.course_volume(nfs.kubernetes.course_volume)["nfs"] == {
        "server": "nfs.lab",
        "path": "/courses",
    }


@pytest.mark.parametrize(
    "volume",
    [{}, {"claim": "a", "nfs": {"server": "nfs.lab", "path": "/c"}}],
    ids=["neither", "both"],
)
def test_course_volume_names_exactly_one_source(volume):
    from sitefile import SiteError

    with pytest.raises(SiteError, match=r"kubernetes\.course_volume: set exactly one"):
        parse_site(site_data(course_volume=volume))


def test_new_files_stay_group_writable_and_a_planted_link_is_never_followed(tmp_path):
    """The folders as the hub makes them (without groups: any account may run this)."""
    site = parse_site(site_data())
    root = tmp_path / "shared"
    p = cf.plan(site, root, [])
    cf.ensure_folders(root, p.folders, isolated=False)
    folder = root / COURSE
    assert stat.S_IMODE(folder.stat().st_mode) == 0o2770
    assert stat.S_IMODE((folder / "handouts").stat().st_mode) == 0o2775
    # a member with a strict umask still leaves files the group can write
    old = os.umask(0o077)
    try:
        (folder / "notes.txt").write_text("x")
        (folder / "plots").mkdir()
    finally:
        os.umask(old)
    assert stat.S_IMODE((folder / "notes.txt").stat().st_mode) == 0o660
    assert stat.S_IMODE((folder / "plots").stat().st_mode) & 0o070 == 0o070
    # a member puts a link in place of handouts: the hub moves it aside, changes nothing
    # where it points, and makes a real handouts folder again
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (folder / "handouts").rmdir()
    (folder / "handouts").symlink_to(victim)
    cf.ensure_folders(root, p.folders, isolated=False)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o700
    assert cf.DEFAULT_ACL_XATTR not in os.listxattr(victim)
    assert (folder / "handouts").is_dir() and not (folder / "handouts").is_symlink()
    (moved,) = [e for e in folder.iterdir() if e.name.startswith("handouts.moved-")]
    assert moved.is_symlink()


# --- the real hub, real system accounts ----------------------------------------------------


@pytest.fixture(scope="module")
def course_stack():
    """A stack whose site has two courses, without Rucio (the spawn goes on without it).
    The course names are new for each run: their system groups are the machine's."""
    folder = stack_folder()
    source = folder / "course-src"
    source.mkdir()
    names = SimpleNamespace(course=unique_user("hyy"), other=unique_user("msc"))
    courses = [  # members come from the hub groups the test makes
        {"name": names.course, "source": str(source), "target": "course-one", "students": []},
        {"name": names.other, "source": str(source), "target": "course-two", "students": []},
    ]
    site_file = write_site(folder, courses=courses)
    try:
        yield start_stack(folder / "state", site_file, with_rucio=False), names
    finally:
        stop_stack(folder / "state")
        shutil.rmtree(folder, ignore_errors=True)
    # the course groups went with the stack (make clean)
    for course in (names.course, names.other):
        for instructors in (False, True):
            with pytest.raises(KeyError):
                grp.getgrnam(cf.system_group(course, instructors))


def in_kernel(stack, user: str, code: str) -> str:
    return asyncio.run(run_in_kernel(stack.url, user, stack.admin_token, code))


WRITE = """
import os, pathlib, json
p = pathlib.Path.home() / {path!r}
try:
    with open(p, {mode!r}) as f:
        f.write({text!r})
    print(json.dumps("ok"))
except OSError as e:
    print(json.dumps(type(e).__name__))
"""


def write_as(stack, user: str, path: str, text: str, mode: str = "w") -> str:
    return json.loads(in_kernel(stack, user, WRITE.format(path=path, mode=mode, text=text)))


LIST = """
import os, pathlib, json
p = pathlib.Path.home() / {path!r}
try:
    print(json.dumps(sorted(os.listdir(p))))
except OSError as e:
    print(json.dumps(type(e).__name__))
"""


def listing(stack, user: str, path: str):
    return json.loads(in_kernel(stack, user, LIST.format(path=path)))


@pytest.mark.course
def test_shared_folder_is_for_the_courses_members_and_handouts_for_its_instructors(
    course_stack,
):
    stack, names = course_stack
    if os.geteuid() != 0:
        pytest.fail("the local stack's per-user accounts need the hub to run as root")
    course, other = names.course, names.other
    shared = contract.course_shared_folder(course)
    anna, ben, carl, ines = (unique_user(p) for p in ("anna", "ben", "carl", "ines"))
    for user in (anna, ben, carl, ines):
        stack.admin.ensure_user(user)
    add_to_group(stack, contract.course_group(course), [anna, ben])
    add_to_group(stack, contract.course_group(other), [carl])  # carl takes another course
    add_to_group(stack, contract.instructors_group(course), [ines])
    for user in (anna, ben, carl, ines):
        stack.admin.start_server(user)

    # two students of the course write into the folder; each can change the other's file
    assert write_as(stack, anna, f"{shared}/anna.txt", "from anna\n") == "ok"
    assert write_as(stack, ben, f"{shared}/ben.txt", "from ben\n") == "ok"
    assert write_as(stack, ben, f"{shared}/anna.txt", "ben was here\n", "a") == "ok"
    assert write_as(stack, anna, f"{shared}/ben.txt", "anna too\n", "a") == "ok"
    folder = stack.paths.shared_courses / course
    assert (folder / "anna.txt").read_text() == "from anna\nben was here\n"
    assert (folder / "ben.txt").read_text() == "from ben\nanna too\n"
    # what they created belongs to the course's group and stays group-writable
    info = (folder / "anna.txt").stat()
    assert grp.getgrgid(info.st_gid).gr_name == cf.system_group(course)
    assert info.st_mode & stat.S_IWGRP and not info.st_mode & stat.S_IROTH
    assert listing(stack, anna, shared) == ["anna.txt", "ben.txt", "handouts"]

    # a third student, of another course: no link in the home, and no way in
    assert shared not in os.listdir(stack.home(carl))
    assert listing(stack, carl, str(folder)) == "PermissionError"
    assert write_as(stack, carl, str(folder / "carl.txt"), "x") == "PermissionError"
    assert listing(stack, carl, contract.course_shared_folder(other)) == ["handouts"]

    # handouts: the instructor writes, the students read and cannot write
    handout = f"{shared}/{contract.HANDOUTS_FOLDER}/week1.txt"
    assert write_as(stack, ines, handout, "read me\n") == "ok"
    assert write_as(stack, anna, handout, "changed", "a") == "PermissionError"
    assert write_as(stack, anna, f"{shared}/handouts/mine.txt", "x") == "PermissionError"
    assert in_kernel(stack, ben, f"print(open({handout!r}).read(), end='')") == "read me\n"
    # the instructor is a member of the shared folder too
    assert write_as(stack, ines, f"{shared}/anna.txt", "ines\n", "a") == "ok"

    # ben leaves the course: at his next start the link goes and so does his group
    r = stack.admin.api(
        "DELETE", f"/groups/{contract.course_group(course)}/users", json={"users": [ben]}
    )
    assert r.status_code == 200, r.text
    stack.admin.stop_server(ben)
    stack.admin.start_server(ben)
    assert shared not in os.listdir(stack.home(ben))
    assert listing(stack, ben, str(folder)) == "PermissionError"
    assert system_username(ben) not in grp.getgrnam(cf.system_group(course)).gr_mem


# --- the cluster: pod specs on a real kube-apiserver ----------------------------------------


def k8s(test):
    return pytest.mark.k8s(pytest.mark.timeout(3600)(test))


@pytest.fixture(scope="module")
def plane():
    from testkit.apiserver import ControlPlane, k8s_tools

    control = ControlPlane(k8s_tools(build=True)).start()
    try:
        yield control
    finally:
        control.stop()


@pytest.fixture(scope="module")
def hub_token(plane):
    from testkit.apiserver import kubeconfig_in_use

    token = plane.service_account_token()
    with kubeconfig_in_use(plane.write_kubeconfig(plane.folder / "hub.kubeconfig", token)):
        yield token


def hub_issuer_environ(tmp_path: Path) -> dict[str, str]:
    from tokens.mint import create_signing_key

    create_signing_key(tmp_path / "issuer-key.json")
    (tmp_path / "rucio-admin-password").write_text("not-used")
    return {
        "LAKEHUB_TOKEN_SOURCE": "hub_issuer",
        "LAKEHUB_ISSUER_URL": "http://lakehub-issuer.invalid",
        "LAKEHUB_ISSUER_KEY_FILE": str(tmp_path / "issuer-key.json"),
        "LAKEHUB_RUCIO_ADMIN_PASSWORD_FILE": str(tmp_path / "rucio-admin-password"),
    }


def get(plane, path: str) -> tuple[int, dict]:
    with plane.admin() as api:
        r = api.get(f"/api/v1/namespaces/{plane.namespace}/{path}")
    return r.status_code, r.json()


async def spawn_pod(
    plane, tmp_path, name: str, groups: list[str], site, options: dict | None = None
) -> tuple[dict, dict]:
    """Start ``name``'s server with lakehub's hooks (as the z2jh hub configures them);
    return its pod and home PVC as the apiserver has them, then stop it."""
    from hub_config.kubernetes import configure
    from testkit.apiserver import HubUser, hub_spawn, hub_stop, new_spawner, spawner_config

    config = spawner_config()
    configure(config, site, environ=hub_issuer_environ(tmp_path))
    user = HubUser(name)
    user.groups = [SimpleNamespace(name=g) for g in groups]
    spawner = new_spawner(config, user)
    spawner.user_options = options or {}
    try:
        await hub_spawn(spawner)
        pod = get(plane, f"pods/{spawner.pod_name}")[1]
        pvc = get(plane, f"persistentvolumeclaims/{spawner.pvc_name}")[1]
    finally:
        await hub_stop(spawner)
    return pod, pvc


def course_parts(pod: dict) -> tuple[list, list, list]:
    spec = pod["spec"]
    (server,) = [c for c in spec["containers"] if c["name"] == "notebook"]
    volumes = [v for v in spec["volumes"] if v["name"] == contract.COURSES_VOLUME]
    mounts = [m for m in server["volumeMounts"] if m["name"] == contract.COURSES_VOLUME]
    inits = [c for c in spec.get("initContainers", []) if c["name"] == kube_courses.INIT_CONTAINER]
    return volumes, mounts, inits


@k8s
async def test_only_members_pods_mount_the_course_folder_and_get_its_home_size(
    plane, hub_token, tmp_path
):
    from testkit.apiserver import stop_reflectors

    site = parse_site(site_data(course_volume={"claim": "courses-rwx"}))
    try:
        member, member_pvc = await spawn_pod(
            plane, tmp_path, "mira", [contract.course_group(OTHER)], site
        )
        teacher, _ = await spawn_pod(
            plane, tmp_path, "tess", [contract.instructors_group(COURSE)], site
        )
        outsider, outsider_pvc = await spawn_pod(plane, tmp_path, "otto", [], site)
    finally:
        await stop_reflectors()

    volumes, mounts, inits = course_parts(member)
    assert volumes == [
        {"name": contract.COURSES_VOLUME, "persistentVolumeClaim": {"claimName": "courses-rwx"}}
    ]
    assert {(m["mountPath"], m["subPath"], m.get("readOnly", False)) for m in mounts} == {
        ("/home/jovyan/course-masters-shared", "masters", False),
        ("/home/jovyan/course-masters-shared/handouts", "masters/handouts", True),
    }
    (init,) = inits
    assert [m["subPath"] for m in init["volumeMounts"]] == ["masters"]  # its course only
    # the course's storage sizes the member's new home volume; others get the default
    assert member_pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert outsider_pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"

    _, teacher_mounts, _ = course_parts(teacher)
    assert {(m["subPath"], m.get("readOnly", False)) for m in teacher_mounts} == {
        ("hyy", False),
        ("hyy/handouts", False),  # an instructor writes the handouts
    }
    # a non-member's pod has no course volume, no mount and no init container of it
    assert course_parts(outsider) == ([], [], [])
    assert "courses-rwx" not in json.dumps(outsider)


@k8s
async def test_a_courses_profile_sizes_a_members_pod_and_is_refused_to_others(
    plane, hub_token, tmp_path
):
    from tornado.web import HTTPError

    from testkit.apiserver import stop_reflectors

    data = site_data()
    data["profiles"] = [
        {"name": "Standard", "cpu": 1, "memory": "2G", "default": True},
        {"name": "Large", "cpu": 2, "memory": "6G"},
    ]
    data["courses"][1]["profiles"] = ["Large"]
    site = parse_site(data)
    large = {"profile": "large"}
    try:
        pod, _ = await spawn_pod(
            plane, tmp_path, "lena", [contract.course_group(OTHER)], site, large
        )
        with pytest.raises(HTTPError) as refused:
            await spawn_pod(plane, tmp_path, "omar", [contract.course_group(COURSE)], site, large)
    finally:
        await stop_reflectors()
    (server,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    assert server["resources"]["limits"]["memory"] == str(6 * 1024**3)
    assert refused.value.status_code == 403
    assert f"only for members of the course(s) {OTHER}" in refused.value.log_message
    # refused before anything was made for the server: no pod, no session Secret
    assert pod["metadata"]["name"] == "jupyter-lena"  # how the names are made
    assert get(plane, "pods/jupyter-omar")[0] == 404
    assert get(plane, f"secrets/{contract.session_secret_name('jupyter-omar')}")[0] == 404
