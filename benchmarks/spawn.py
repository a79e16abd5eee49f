"""Spawning on the local stack, with and without lakehub's hooks.

spawn_p50_ratio_hooks_vs_vanilla
    Median time to spawn a JupyterLab server on a hub with lakehub's pre-spawn hook,
    divided by the median on the same hub without the hook.  The two hubs run side by
    side and the spawns alternate between them, so whatever else loads the machine
    loads both.  Each spawn is a fresh user, timed from the POST to the hub reporting
    the server ready; the server is stopped before the next spawn.
spawn_hook_overhead_p50_s
    The difference of those two medians, in seconds.
concurrent_spawn_failures
    Many users started at once on a hub with the hook and JupyterHub's light test
    server (``jupyterhub.tests.mocksu``).  A user counts as failed when the spawn
    failed, was not ready in time, or left no Rucio token file in the home.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO
from urllib.parse import quote

import httpx

from benchmarks.common import Family, count, emit, hub_log_problems, log, option, running_stack
from testkit.harness import (
    Stack,
    unique_user,
)

RATIO = "spawn_p50_ratio_hooks_vs_vanilla"
OVERHEAD = "spawn_hook_overhead_p50_s"
CONCURRENT = "concurrent_spawn_failures"
JUPYTERLAB = "jupyterlab"
MOCKSU = "jupyterhub.tests.mocksu"
RATIO_GOAL = 1.10
POLL_S = 0.25


_HUB_LINE = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) JupyterHub ")


def pre_start_gaps(state: Path) -> list[float]:
    """Seconds between the hub making a user's OAuth client and launching the server
    process, from the hub log: the pre-spawn hook runs in between.  Only meaningful
    for spawns one at a time (the launch line does not name the user)."""
    path = state / "logs" / "hub.log"
    if not path.exists():
        return []
    gaps = []
    opened: datetime | None = None
    for line in path.read_text(errors="replace").splitlines():
        m = _HUB_LINE.match(line)
        if not m:
            continue
        when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
        if "Creating oauth client jupyterhub-user-" in line:
            opened = when
        elif opened is not None and " spawner:" in line and "] Spawning " in line:
            gaps.append((when - opened).total_seconds())
            opened = None
    return gaps


def timed_spawn(stack: Stack, prefix: str, timeout: float) -> float:
    """Seconds from the POST until the hub reports a fresh user's server ready."""
    admin = stack.admin
    name = unique_user(prefix)
    admin.ensure_user(name)
    began = time.perf_counter()
    admin.start_server(name, timeout=timeout)
    elapsed = time.perf_counter() - began
    admin.stop_server(name)
    return elapsed


def spawn_ratio(args: argparse.Namespace, out: IO[str]) -> None:
    with contextlib.ExitStack() as stacks:
        vanilla = stacks.enter_context(
            running_stack("vanilla", args.keep_logs, with_hooks=False, with_rucio=False)
        )
        hooked = stacks.enter_context(running_stack("hooks", args.keep_logs, with_hooks=True))
        # label: (stack, user name prefix)
        hubs = {"hooks": (hooked, "h"), "vanilla": (vanilla, "v")}
        times: dict[str, list[float]] = {"hooks": [], "vanilla": []}
        load_before = os.getloadavg()[0]
        rounds = args.warmup + args.spawns
        for i in range(rounds):
            warm = i < args.warmup
            for label, (stack, prefix) in hubs.items():
                elapsed = timed_spawn(stack, prefix, args.spawn_timeout)
                if not warm:
                    times[label].append(elapsed)
                kind = "warm-up" if warm else f"{i - args.warmup + 1}/{args.spawns}"
                log(f"spawn {kind} {label}: {elapsed:.2f} s")
        load_after = os.getloadavg()[0]
        with_hooks = statistics.median(times["hooks"])
        without = statistics.median(times["vanilla"])
        gaps = {
            label: pre_start_gaps(stack.paths.state)[args.warmup :]
            for label, (stack, _) in hubs.items()
        }
        log_errors = {
            "hooks": len(hub_log_problems(hooked.paths.state)),
            "vanilla": len(hub_log_problems(vanilla.paths.state)),
        }
    ratio = with_hooks / without
    common = {
        "n": args.spawns,
        "warmup_per_hub": args.warmup,
        "single_user": JUPYTERLAB,
        "spawn_times_with_hooks_s": [round(t, 3) for t in times["hooks"]],
        "spawn_times_without_s": [round(t, 3) for t in times["vanilla"]],
        "hub_log_error_lines": log_errors,
        "hub_log_pre_start_p50_s": {
            label: round(statistics.median(g), 3) if g else None for label, g in gaps.items()
        },
        "hub_log_pre_start_note": (
            "from the hub log: OAuth client made -> server process launched, where the "
            "pre-spawn hook runs; unlike the spawn times it excludes JupyterLab's start-up"
        ),
        "loadavg_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
    }
    emit(
        out,
        RATIO,
        round(ratio, 4),
        p50_with_hooks_s=round(with_hooks, 3),
        p50_without_s=round(without, 3),
        goal=f"<= {RATIO_GOAL:.2f}",
        goal_met=ratio <= RATIO_GOAL,
        **common,
    )
    emit(
        out,
        OVERHEAD,
        round(with_hooks - without, 3),
        unit="s",
        note=f"p50 with hooks minus p50 without, same spawns as {RATIO}",
        **common,
    )


# --- figure 2: many spawns at once --------------------------------------------------------


@dataclass
class Outcome:
    ready_s: float | None = None
    failure: str | None = None
    post_error: str | None = None


async def list_servers(client: httpx.AsyncClient) -> dict[str, dict]:
    """Every user's servers, one paginated listing (cheaper for the hub than one GET
    per user while it is busy spawning)."""
    servers: dict[str, dict] = {}
    offset = 0
    while True:
        r = await client.get(
            "/hub/api/users",
            params={"offset": offset, "limit": 200},
            headers={"Accept": "application/jupyterhub-pagination+json"},
        )
        r.raise_for_status()
        page = r.json()
        for user in page["items"]:
            servers[user["name"]] = user.get("servers") or {}
        following = page["_pagination"].get("next")
        if not following:
            return servers
        offset = following["offset"]


async def start_all(
    base_url: str, token: str, names: list[str], limit_s: float
) -> tuple[dict[str, Outcome], float]:
    """POST every user's server at once, then poll until each is ready or gone."""
    outcomes = {name: Outcome() for name in names}
    limits = httpx.Limits(max_connections=len(names) + 4)
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"token {token}"},
        timeout=httpx.Timeout(120),
        limits=limits,
    ) as client:
        began = time.perf_counter()

        async def post(name: str) -> None:
            try:
                r = await client.post(f"/hub/api/users/{quote(name, safe='')}/server")
            except httpx.HTTPError as exc:
                # the hub may still have started it: the polling below decides
                outcomes[name].post_error = f"{type(exc).__name__}: {exc}"
                return
            if r.status_code == 201:  # finished within the hub's slow_spawn_timeout
                outcomes[name].ready_s = time.perf_counter() - began
            elif r.status_code != 202:
                outcomes[name].failure = f"POST answered HTTP {r.status_code}: {r.text[:200]}"

        await asyncio.gather(*(post(name) for name in names))
        log(f"all {len(names)} POSTs answered after {time.perf_counter() - began:.1f} s")

        pending = {n for n, o in outcomes.items() if o.ready_s is None and o.failure is None}
        while pending:
            servers = await list_servers(client)
            now = time.perf_counter() - began
            for name in sorted(pending):
                server = servers.get(name, {}).get("")
                if server is None:
                    reason = "the spawn failed (the hub dropped the server)"
                    if outcomes[name].post_error:
                        reason += f"; POST error {outcomes[name].post_error}"
                    outcomes[name].failure = reason
                    pending.discard(name)
                elif server.get("ready"):
                    outcomes[name].ready_s = now
                    pending.discard(name)
            if not pending:
                break
            if now > limit_s:
                for name in pending:
                    outcomes[name].failure = f"not ready after {limit_s:.0f} s"
                break
            await asyncio.sleep(POLL_S)
        wall = time.perf_counter() - began
    return outcomes, wall


async def stop_all(base_url: str, token: str, names: list[str], limit_s: float = 120) -> None:
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"token {token}"}, timeout=60
    ) as client:
        await asyncio.gather(
            *(client.delete(f"/hub/api/users/{quote(n, safe='')}/server") for n in names),
            return_exceptions=True,
        )
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            servers = await list_servers(client)
            if not any("" in servers.get(n, {}) for n in names):
                return
            await asyncio.sleep(POLL_S)
    log(f"some servers did not stop within {limit_s:.0f} s; stop_stack will end them")


def token_problem(stack: Stack, name: str) -> str | None:
    token = stack.home(name) / ".lakehub" / "rucio-token"
    try:
        if token.stat().st_size == 0:
            return f"{token} is empty"
    except OSError as exc:
        return f"no token file ({type(exc).__name__})"
    return None


def rucio_problems(stack: Stack, name: str) -> list[str]:
    """What the hook wrote into status.json as problems (it never fails the spawn)."""
    try:
        status = json.loads((stack.home(name) / ".lakehub" / "status.json").read_text())
    except (OSError, ValueError):
        return ["no readable status.json"]
    return list(status.get("problems") or [])


def concurrent_failures(args: argparse.Namespace, out: IO[str]) -> None:
    with running_stack("concurrent", args.keep_logs, with_hooks=True, mock_servers=True) as stack:
        names = [unique_user("c") for _ in range(args.concurrent)]
        r = stack.admin.api("POST", "/users", json={"usernames": names})
        if r.status_code != 201:
            raise RuntimeError(f"creating the users failed: HTTP {r.status_code} {r.text[:200]}")
        log(f"starting {len(names)} servers at once")
        load_before = os.getloadavg()[0]
        try:
            outcomes, wall = asyncio.run(
                start_all(stack.url, stack.admin_token, names, args.concurrent_timeout)
            )
            spawn_failed = {n: o.failure for n, o in outcomes.items() if o.failure}
            ready = {n: o for n, o in outcomes.items() if not o.failure}
            missing_token = {
                n: problem for n in ready if (problem := token_problem(stack, n)) is not None
            }
            with_rucio_problems = {n: p for n in ready if (p := rucio_problems(stack, n))}
            log_errors = len(hub_log_problems(stack.paths.state))
        finally:
            asyncio.run(stop_all(stack.url, stack.admin_token, names))
    for name, reason in {**spawn_failed, **missing_token}.items():
        log(f"failed: {name}: {reason}")
    for name, problems in with_rucio_problems.items():
        log(f"rucio problem reported to {name}: {problems}")
    ready_times = sorted(o.ready_s for o in ready.values() if o.ready_s is not None)
    failures = len(spawn_failed) + len(missing_token)
    emit(
        out,
        CONCURRENT,
        failures,
        users=len(names),
        wall_s=round(wall, 3),
        wall_note="from the first POST until every server was ready or had failed",
        ready_p50_s=round(statistics.median(ready_times), 3) if ready_times else None,
        ready_max_s=round(ready_times[-1], 3) if ready_times else None,
        spawn_failures=len(spawn_failed),
        missing_token_files=len(missing_token),
        failures_note=(
            "failures = spawns that failed or were not ready in time, plus ready servers "
            "without a non-empty <home>/.lakehub/rucio-token"
        ),
        post_errors=sum(o.post_error is not None for o in outcomes.values()),
        users_with_rucio_problems=len(with_rucio_problems),
        hub_log_error_lines=log_errors,
        loadavg_1m_before=round(load_before, 2),
        cpus=os.cpu_count(),
        single_user=MOCKSU,
        goal=0,
        goal_met=failures == 0,
    )


def spawn_arguments(parser: argparse.ArgumentParser) -> None:
    count(parser, "--spawns", 8, "timed spawns per hub")
    option(parser, "--warmup", 1, "untimed spawns per hub before the timed ones")
    option(parser, "--spawn-timeout", 180.0, "seconds per spawn")


def concurrent_arguments(parser: argparse.ArgumentParser) -> None:
    count(parser, "--concurrent", 20, "users started at once")
    option(parser, "--concurrent-timeout", 300.0, "seconds for all concurrent spawns")


FAMILIES = (
    Family((RATIO, OVERHEAD), spawn_ratio, spawn_arguments),
    Family((CONCURRENT,), concurrent_failures, concurrent_arguments),
)
