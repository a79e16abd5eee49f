"""Transfers into the shared cache killed at random points (pytest -m faults).

Real Rucio, real hub, real cache service; the cache's bandwidth limit (a site setting)
slows each transfer to about two seconds so that it can be killed part-way.  The kill is
a SIGKILL of the transfer process, as an out-of-memory kill or a node loss would be.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
from pathlib import Path

import pytest

from lakehub.cache import CacheError, fetch
from localstack.procs import wait_until
from testkit.harness import (
    cache_stats,
    make_dataset,
    temporary_stack,
    unique_user,
    user_tokens,
)

pytestmark = pytest.mark.faults

SIZE = 4_000_000
KILLS = 20


@pytest.fixture(scope="module")
def slow_stack():
    with temporary_stack(cache={"transfer_rate_limit_mbps": 16}) as stack:  # 2 MB/s
        yield stack


def transfer_pids() -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"hub_services.cache.transfer" in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_killed_transfers_never_publish_a_partial_file(slow_stack):
    data = os.urandom(SIZE)
    name = f"big-{unique_user()}.root"
    did = make_dataset(slow_stack, unique_user("faults."), {name: data})
    published = slow_stack.paths.cache / did.split(":")[0] / name
    incoming = slow_stack.paths.cache / ".incoming"
    expected = hashlib.sha256(data).hexdigest()
    hub_token, rucio_token = user_tokens(slow_stack, unique_user("f"))
    url = f"http://127.0.0.1:{slow_stack.site.local.cache_port}"

    # a watcher that looks at the published name the whole time
    seen_bad: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                content = published.read_bytes()
            except FileNotFoundError:
                continue
            if hashlib.sha256(content).hexdigest() != expected:
                seen_bad.append(f"{len(content)} bytes")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rng = random.Random(20261124)
    try:
        for _ in range(KILLS):
            threshold = rng.randrange(0, SIZE * 3 // 4)  # before the end: then kill
            outcome: dict = {}

            def ask(outcome=outcome) -> None:
                try:
                    fetch(did, progress=False, url=url, token=hub_token, rucio_token=rucio_token)
                    outcome["ok"] = True
                except CacheError as exc:
                    outcome["error"] = str(exc)

            caller = threading.Thread(target=ask)
            caller.start()

            def reached(threshold=threshold) -> bool:
                parts = list(incoming.glob("*.part"))
                return bool(parts) and parts[0].stat().st_size >= threshold and transfer_pids()

            wait_until(reached, timeout=60, what=f"the transfer to pass {threshold} bytes")
            for pid in transfer_pids():
                os.kill(pid, signal.SIGKILL)
            caller.join(timeout=60)
            assert outcome.get("error"), "a killed transfer must fail the request"
            assert not published.exists()
            wait_until(
                lambda: not list(incoming.glob("*.part")),
                timeout=10,
                what="the partial file to be removed",
            )
        # the next request completes it
        paths = fetch(did, progress=False, url=url, token=hub_token, rucio_token=rucio_token)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert paths == [str(published)]
    assert hashlib.sha256(published.read_bytes()).hexdigest() == expected
    assert seen_bad == []
    stats = cache_stats(slow_stack)
    assert stats["transfers"][did.split(":")[0] + ":" + name] == 1
    assert stats["attempts"][did.split(":")[0] + ":" + name] == KILLS + 1
