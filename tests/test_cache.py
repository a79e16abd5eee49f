"""The shared dataset cache against the real Rucio server, the real cache service run by
the real hub, and (for the last tests) real users' kernels.

Nothing is mocked.  For the 20-user test the users get exactly what the spawn hook
would give them (a Rucio account bound to their hub identity, a hub-signed token and a
JupyterHub API token) without 20 JupyterLab servers, which 2 cores cannot start at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from hub_services.cache.rucio import CacheRucio, RucioDown, RucioSettings
from lakehub.cache import CacheError, DatasetNotFound, NoPermission, RucioUnavailable, fetch
from localstack.procs import wait_until
from testkit.harness import (
    cache_stats,
    free_ports,
    make_dataset,
    run_in_kernel,
    unique_user,
    user_tokens,
)

pytestmark = pytest.mark.cache


def cache_url(stack) -> str:
    return f"http://127.0.0.1:{stack.site.local.cache_port}"


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_twenty_users_at_once_cause_one_transfer_per_file(local_stack):
    files = {f"conc-{unique_user('f')}.root": os.urandom(300_000) for _ in range(3)}
    did = make_dataset(local_stack, unique_user("concurrent."), files)
    users = [unique_user("c") for _ in range(20)]
    tokens = {u: user_tokens(local_stack, u) for u in users}

    def ask(user: str) -> list[str]:
        hub_token, rucio_token = tokens[user]
        return fetch(
            did,
            progress=False,
            url=cache_url(local_stack),
            token=hub_token,
            rucio_token=rucio_token,
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(ask, users))

    stats = cache_stats(local_stack)
    scope = did.split(":")[0]
    for name in files:
        assert stats["transfers"][f"{scope}:{name}"] == 1
        assert stats["attempts"][f"{scope}:{name}"] == 1
    assert all(sorted(a) == sorted(answers[0]) for a in answers)
    published = {Path(p).name: sha256(p) for p in answers[0]}
    assert published == {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    for path in answers[0]:
        mode = os.stat(path).st_mode & 0o777
        assert mode == 0o644, "published files are readable by all, writable by none"


def test_a_corrupt_replica_is_detected_and_never_published(local_stack):
    good, bad = f"ok-{unique_user()}.root", f"bad-{unique_user()}.root"
    did = make_dataset(
        local_stack,
        unique_user("corrupt."),
        {good: b"x" * 5000, bad: b"y" * 5000},
        lie_about=[bad],
    )
    hub_token, rucio_token = user_tokens(local_stack, unique_user("k"))
    with pytest.raises(CacheError, match="adler32"):
        fetch(
            did,
            progress=False,
            url=cache_url(local_stack),
            token=hub_token,
            rucio_token=rucio_token,
        )
    cache = local_stack.paths.cache / did.split(":")[0]
    assert not (cache / bad).exists()
    assert (cache / good).exists()  # the healthy file of the same dataset is served
    assert not any((local_stack.paths.cache / ".incoming").iterdir())


@pytest.mark.parametrize(
    "did",
    [
        "opendata:../../etc/passwd",
        "../opendata:x.root",
        "opendata:a/b.root",
        "/abs:x.root",
        "opendata:.incoming",
        "opendata",
        "opendata:..",
    ],
)
def test_dids_that_would_escape_the_cache_are_refused(local_stack, did):
    r = httpx.post(
        f"{cache_url(local_stack)}/api/fetch",
        json={"did": did},
        headers={"Authorization": f"token {local_stack.admin_token}"},
        timeout=30,
    )
    assert r.status_code == 400
    assert "error" in r.json() and r.json()["error"]


def test_unknown_dataset_missing_permission_and_rucio_down_each_say_so(local_stack):
    hub_token, rucio_token = user_tokens(local_stack, unique_user("e"))
    ask = {"progress": False, "url": cache_url(local_stack)}
    with pytest.raises(DatasetNotFound, match="opendata:no.such.dataset"):
        fetch("opendata:no.such.dataset", token=hub_token, rucio_token=rucio_token, **ask)
    # a hub token without access to the cache service
    other_token, other_rucio = user_tokens(local_stack, unique_user("n"), scopes=[])
    with pytest.raises(NoPermission):
        fetch("opendata:demo.GamGam", token=other_token, rucio_token=other_rucio, **ask)
    # a Rucio token that is not the caller's own gets refused by Rucio itself
    with pytest.raises(NoPermission, match="Rucio refused"):
        fetch("opendata:demo.GamGam", token=hub_token, rucio_token="not-a-token", **ask)
    local_stack.stop_rucio()
    try:
        with pytest.raises(RucioUnavailable, match="did not answer"):
            fetch("opendata:demo.GamGam", token=hub_token, rucio_token=rucio_token, **ask)
    finally:
        local_stack.start_rucio()


KERNEL_FETCH = r"""
import json, os
from lakehub import fetch
import uproot
paths = fetch("DID", progress=False)
entries = 0
for p in paths:
    with uproot.open(p) as f:
        entries += f["analysis"].num_entries
denied = []
try:
    open(os.path.join(os.path.dirname(paths[0]), "mine.txt"), "w").write("x")
except PermissionError:
    denied.append("write")
try:
    os.unlink(paths[0])
except PermissionError:
    denied.append("delete")
try:
    open(paths[0], "r+b")
except PermissionError:
    denied.append("modify")
print(json.dumps({"paths": paths, "entries": entries, "denied": denied}))
"""


def test_a_students_kernel_reads_the_cache_but_cannot_change_it(local_stack):
    user = unique_user("reader")
    local_stack.admin.ensure_user(user)
    local_stack.admin.start_server(user)
    demo = local_stack.site.local.demo_data
    did = f"{demo.scope}:{demo.dataset_name('GamGam')}"
    out = asyncio.run(
        run_in_kernel(
            local_stack.url, user, local_stack.admin_token, KERNEL_FETCH.replace("DID", did)
        )
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["entries"] == demo.files * demo.events
    assert all(p.startswith(str(local_stack.paths.cache)) for p in result["paths"])
    assert result["denied"] == ["write", "delete", "modify"]


def test_rucio_jupyterlab_replica_mode_sees_the_cache_and_make_available_fills_it(local_stack):
    """The extension's own REST API: files already cached show as available with their
    path in the cache; "make available" on a new dataset creates a rule on the cache RSE
    that the cache service fulfils."""
    user = unique_user("ext")
    local_stack.admin.ensure_user(user)
    local_stack.admin.start_server(user)
    base = f"{local_stack.url}/user/{user}/rucio-jupyterlab"
    headers = {"Authorization": f"token {local_stack.admin_token}"}

    def details(did: str) -> list[dict]:
        # force=1: ask Rucio now rather than the extension's own cache of answers
        r = httpx.get(
            f"{base}/did",
            params={"namespace": "local", "did": did, "force": "1"},
            headers=headers,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        return r.json()

    def statuses(did: str) -> set[str]:
        return {f["status"] for f in details(did)}

    # a dataset the class already fetched: available, at its path in the cache
    demo = local_stack.site.local.demo_data
    cached = f"{demo.scope}:{demo.dataset_name('GamGam')}"
    fetch(cached, progress=False, url=cache_url(local_stack), token=local_stack.admin_token)
    wait_until(lambda: statuses(cached) == {"OK"}, timeout=30, what="the extension to answer")
    seen = details(cached)
    assert all(f["path"].startswith(str(local_stack.paths.cache)) for f in seen)

    # a new dataset: "make available" -> rule -> the cache service brings the files in
    files = {f"rule-{unique_user()}.root": os.urandom(20_000) for _ in range(2)}
    did = make_dataset(local_stack, unique_user("rule."), files)
    wait_until(lambda: "FETCHING" not in statuses(did), timeout=30, what="the extension")
    assert statuses(did) == {"NOT_AVAILABLE"}
    r = httpx.post(
        f"{base}/did/make-available",
        params={"namespace": "local"},
        json={"did": did},
        headers=headers,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    wait_until(
        lambda: statuses(did) == {"OK"},
        timeout=60,
        what="the rule on the cache RSE to be fulfilled",
    )
    for name, data in files.items():
        path = local_stack.paths.cache / demo.scope / name
        assert path.read_bytes() == data


def test_warm_cache_fills_pins_and_reports_what_was_already_there(local_stack):
    from io import StringIO

    from hub_services.cache.warm import Course, warm

    files = {f"warm-{unique_user()}.root": os.urandom(50_000) for _ in range(2)}
    did = make_dataset(local_stack, unique_user("warm."), files)
    course = Course(name="PHYS 101", datasets=[did], pin=True)
    out = StringIO()
    first = warm(course, cache_url(local_stack), local_stack.admin_token, out=out)
    assert (first["files"], first["already_present"], first["failed"]) == (2, 0, 0)
    assert first["bytes"] == 100_000
    assert "PHYS 101: 1 dataset(s), 2 file(s)" in out.getvalue()
    second = warm(course, cache_url(local_stack), local_stack.admin_token, out=StringIO())
    assert (second["files"], second["already_present"]) == (2, 2)
    pinned = set(cache_stats(local_stack)["pinned"])
    assert {f"{did.split(':')[0]}:{n}" for n in files} <= pinned


def test_a_bad_course_file_is_reported_without_a_traceback(tmp_path):
    import subprocess
    import sys

    course = tmp_path / "course.yaml"
    course.write_text("name: x\ndatasets: ['opendata:../etc']\n")
    result = subprocess.run(
        [sys.executable, "-m", "hub_services.cache.warm", "--course", str(course)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "datasets" in result.stderr and "'..'" in result.stderr


def test_an_unreachable_rucio_is_a_skipped_rule_check_not_a_traceback(tmp_path):
    """Nothing listens on Rucio's port. The cache's Rucio calls then say that Rucio did
    not answer, which its rule loop logs as one warning line per poll. They must not
    raise rucio-clients' own connection error, which the loop logged with a traceback at
    every poll."""
    (port,) = free_ports(1)
    password = tmp_path / "password"
    password.write_text("unused")
    rucio = CacheRucio(
        RucioSettings(
            rucio_host=f"http://127.0.0.1:{port}",
            auth_host=f"http://127.0.0.1:{port}",
            vo="def",
            account="root",
            username="root",
            password_file=password,
            cache_rse="LAKEHUB_CACHE",
        )
    )
    with pytest.raises(RucioDown, match="did not answer"):
        asyncio.run(rucio.files_waiting_for_rules())
