"""Token-service figures: the hub-side cost of keeping many sessions' tokens fresh.

``token_service_hub_cpu_fraction``: 1000 simulated sessions each renewing every 5 minutes
means 3.3 requests per second on the hub's token service.  The benchmark sends exactly
that rate (each request with the session's own JupyterHub token, as the refresher does)
for a measured window and reads the CPU time the hub process and its issuer service
used from /proc: value = CPU seconds / wall seconds (fraction of one core).  Creating
1000 real hub users with their own tokens is part of the set-up, not of the window.

``token_refresh_p99_ms``: the 99th percentile of the request latency in that window.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import httpx

from benchmarks.common import Family, emit, log, running_stack
from hub_config.local import issuer_url
from hub_config.scopes import TOKEN_ACCESS
from lakehub.contract import ISSUER_SERVICE
from localstack import procs
from testkit.harness import Stack

SESSIONS = 1000
PERIOD_S = 300.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_pid(hub_pid: int, marker: str) -> int | None:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                stat = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == hub_pid:
                    return int(cmdline.parent.name)
        except (OSError, ValueError):
            continue
    return None


def session_tokens(stack: Stack, n: int, log) -> list[str]:
    names = [f"tok{i:04d}" for i in range(n)]
    admin = stack.admin
    admin.api("POST", "/users", json={"usernames": names})
    tokens = []
    with httpx.Client(
        base_url=f"{stack.url}/hub/api",
        timeout=60,
        headers={"Authorization": f"token {stack.admin_token}"},
    ) as client:
        for i, name in enumerate(names):
            r = client.post(f"/users/{name}/tokens", json={"scopes": [TOKEN_ACCESS]})
            r.raise_for_status()
            tokens.append(r.json()["token"])
            if i % 200 == 199:
                log(f"  {i + 1} session tokens")
    return tokens


async def _load(url: str, tokens: list[str], rate: float, window_s: float) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(token: str) -> None:
            started = time.perf_counter()
            r = await client.get(url, headers={"Authorization": f"token {token}"})
            r.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)

        tasks = []
        begin = time.monotonic()
        i = 0
        while time.monotonic() - begin < window_s:
            tasks.append(asyncio.create_task(one(tokens[i % len(tokens)])))
            i += 1
            await asyncio.sleep(max(begin + i / rate - time.monotonic(), 0))
        await asyncio.gather(*tasks)
    return latencies


def token_figures(stack: Stack, emit, log, window_s: float = 60.0) -> None:
    hub_pid = procs.running("jupyterhub", stack.paths.run)
    issuer_pid = service_pid(hub_pid, "hub_services.issuer")
    log(f"creating {SESSIONS} hub users with session tokens")
    tokens = session_tokens(stack, SESSIONS, log)
    url = f"{issuer_url(stack.site)}/api/token"
    rate = SESSIONS / PERIOD_S
    # one untimed pass so every session's first lookup (hub token check) is warm, as in
    # steady state where each session renews every 5 minutes
    asyncio.run(_load(url, tokens, rate=50, window_s=len(tokens) / 50))
    before = {p: cpu_seconds(p) for p in (hub_pid, issuer_pid) if p}
    wall = time.monotonic()
    latencies = asyncio.run(_load(url, tokens, rate=rate, window_s=window_s))
    wall = time.monotonic() - wall
    used = {p: cpu_seconds(p) - t for p, t in before.items()}
    fraction = sum(used.values()) / wall
    context = {
        "sessions": SESSIONS,
        "renewal_period_s": PERIOD_S,
        "requests": len(latencies),
        "window_s": round(wall, 1),
        "hub_cpu_s": round(used.get(hub_pid, 0.0), 3),
        "issuer_service_cpu_s": round(used.get(issuer_pid, 0.0), 3) if issuer_pid else None,
        "service": ISSUER_SERVICE,
    }
    emit("token_service_hub_cpu_fraction", round(fraction, 4), goal="< 0.05", **context)
    p99 = statistics.quantiles(latencies, n=100)[98]
    emit(
        "token_refresh_p99_ms",
        round(p99, 1),
        p50_ms=round(statistics.median(latencies), 1),
        **context,
    )


def token_group(args, out) -> None:
    with running_stack("tokens", args.keep_logs) as stack:
        token_figures(stack, lambda figure, value, **c: emit(out, figure, value, **c), log)


FAMILIES = (Family(("token_service_hub_cpu_fraction", "token_refresh_p99_ms"), token_group),)
