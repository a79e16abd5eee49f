"""Eviction under the site's quota, against the real cache service and Rucio.

The cache here holds 500 kB; files are 100 kB.  Least recently used files go first,
never a pinned one, never one that a process has open; evicted files also leave the
cache RSE in Rucio (marked unavailable there; Rucio's reaper owns deletion).
"""

from __future__ import annotations

import os

import httpx
import pytest

from lakehub.cache import fetch
from localstack.bootstrap import admin_client
from testkit.harness import (
    cache_stats,
    make_dataset,
    temporary_stack,
    unique_user,
)

pytestmark = pytest.mark.cache

FILE = 100_000


@pytest.fixture(scope="module")
def small_stack():
    with temporary_stack(cache={"quota_gb": 5 * FILE / 1e9}) as stack:
        yield stack


def dataset(stack, label: str, n: int) -> tuple[str, list[str]]:
    names = [f"{label}{i}-{unique_user()}.root" for i in range(n)]
    did = make_dataset(stack, unique_user(f"{label}."), {n_: os.urandom(FILE) for n_ in names})
    return did, names


def test_least_recently_used_goes_first_but_never_pinned_or_open_files(small_stack):
    url = f"http://127.0.0.1:{small_stack.site.local.cache_port}"
    admin = small_stack.admin_token
    scope = small_stack.site.local.demo_data.scope
    on_disk = lambda name: (small_stack.paths.cache / scope / name).exists()  # noqa: E731

    def get(did: str) -> list[str]:
        return fetch(did, progress=False, url=url, token=admin)

    pinned, p_names = dataset(small_stack, "p", 1)
    r = httpx.post(
        f"{url}/api/pin",
        json={"did": pinned},
        headers={"Authorization": f"token {admin}"},
        timeout=30,
    )
    assert r.status_code == 200
    a, a_names = dataset(small_stack, "a", 2)
    b, b_names = dataset(small_stack, "b", 2)
    c, c_names = dataset(small_stack, "c", 2)
    get(pinned)
    get(a)
    get(b)  # 5 files: exactly the quota
    assert all(on_disk(n) for n in p_names + a_names + b_names)
    get(c)  # 7 files: the two least recently used unpinned ones (a's) must go
    assert not any(on_disk(n) for n in a_names)
    assert all(on_disk(n) for n in p_names + b_names + c_names)
    replicas = admin_client(small_stack.site.rucio.default, small_stack.paths).list_replicas(
        [{"scope": scope, "name": n} for n in a_names], all_states=True
    )
    assert all(r_["states"].get(small_stack.site.cache.rse) != "AVAILABLE" for r_ in replicas)

    # a file someone is reading stays, even when it is the oldest
    with open(small_stack.paths.cache / scope / b_names[0], "rb"):
        d, d_names = dataset(small_stack, "d", 2)
        get(d)
        assert on_disk(b_names[0])
        assert not on_disk(b_names[1])
    assert all(on_disk(n) for n in p_names + d_names)
    stats = cache_stats(small_stack)
    assert stats["usage_bytes"] <= stats["quota_bytes"]
    assert stats["evictions"] >= 4

    # an evicted dataset comes back on the next request
    assert [os.path.basename(p) for p in get(a)] == sorted(a_names)
