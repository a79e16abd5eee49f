"""The k8s figures: lakehub's KubeSpawner hooks against a real kube-apiserver.

k8s_concurrent_starts_p99_s
    200 users start at once through the real KubeSpawner with lakehub's hooks, under
    the hub's ServiceAccount token, each timed from the pre-spawn hook (token exchange at
    a fake identity provider in its own process, the Secret) through PVC and pod creation
    until KubeSpawner sees the pod Running (kwok plays the node).  The 99th percentile, in
    seconds (goal < 5).  Context: the same starts without lakehub's hooks
    (``without_hooks``), measured afterwards on the same apiserver; both after a warm-up
    of 10 starts.
k8s_start_failures
    How many of those starts failed or left no Secret holding a token (goal 0).

``python -m benchmarks.k8s [--users N]`` prints both; the control plane
(``testkit.apiserver``) is stopped by PID on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import IO

from benchmarks.common import Family, count, emit, log
from lakehub.contract import PART_OF, PART_OF_LABEL, TOKEN_FILE, session_secret_name
from testkit.apiserver import (
    ControlPlane,
    HubUser,
    free_port,
    hub_spawn,
    hub_stop,
    idp_process,
    k8s_tools,
    kubeconfig_in_use,
    make_site,
    new_spawner,
    spawner_config,
    stop_reflectors,
)

P99 = "k8s_concurrent_starts_p99_s"
FAILURES = "k8s_start_failures"
P99_GOAL_S = 5.0
WARM_UP = 10  # starts (not measured) before the figures: a fresh apiserver is slower


def p99(values: list[float]) -> float:
    """The nearest-rank 99th percentile."""
    ordered = sorted(values)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]


async def _starts(plane: ControlPlane, users: int, prefix: str, idp=None) -> dict:
    """``users`` servers started at once; with lakehub's hooks when ``idp`` is given."""
    from oauthenticator.generic import GenericOAuthenticator

    from hub_config.kubernetes import configure

    config = spawner_config()
    authenticator = None
    if idp is not None:
        configure(
            config, make_site(free_port()), environ={"LAKEHUB_TOKEN_SOURCE": "token_exchange"}
        )
        authenticator = GenericOAuthenticator(
            token_url=idp.token_url, client_id=idp.client_id, client_secret=idp.client_secret
        )
    spawners = []
    for i in range(users):
        name = f"{prefix}{i:03d}"
        state = {"access_token": idp.access_token_for(name)} if idp else None
        spawners.append(new_spawner(config, HubUser(name, state), authenticator))

    async def one(spawner) -> tuple[float | None, str | None]:
        t0 = time.monotonic()
        try:
            await hub_spawn(spawner)
        except Exception as exc:
            return None, f"{spawner.user.name}: {type(exc).__name__}: {exc}"[:300]
        return time.monotonic() - t0, None

    try:
        t0 = time.monotonic()
        results = await asyncio.gather(*(one(s) for s in spawners))
        wall = time.monotonic() - t0
        failed = {s.user.name for s, (_, error) in zip(spawners, results, strict=True) if error}
        if idp is not None:  # a start without its Secret and token is a failed start
            with plane.admin() as api:
                items = api.get(
                    f"/api/v1/namespaces/{plane.namespace}/secrets",
                    params={"labelSelector": f"{PART_OF_LABEL}={PART_OF}"},
                ).json()["items"]
            tokens = {i["metadata"]["name"] for i in items if TOKEN_FILE in (i.get("data") or {})}
            failed |= {
                s.user.name for s in spawners if session_secret_name(s.pod_name) not in tokens
            }
        stops = await asyncio.gather(*(hub_stop(s) for s in spawners), return_exceptions=True)
        stop_errors = [repr(e)[:200] for e in stops if isinstance(e, BaseException)]
    finally:
        await stop_reflectors()
    return {
        "times": [t for t, _ in results if t is not None],
        "errors": [e for _, e in results if e] + stop_errors,
        "failed_users": sorted(failed),
        "wall_s": wall,
    }


def _summary(times: list[float]) -> dict:
    if not times:
        return {}
    return {
        "median_s": round(statistics.median(times), 3),
        "p99_s": round(p99(times), 3),
        "max_s": round(max(times), 3),
    }


def run(out: IO[str] | None = None, users: int = 200, baseline: bool = True) -> dict:
    """Start the control plane, measure, print the two figures, stop everything.

    With ``baseline`` the same number of plain KubeSpawner starts (no lakehub hooks) is
    measured afterwards on the same control plane and reported as context, so that a
    slow machine can be told apart from slow hooks.
    """
    out = out or sys.stdout
    tools = k8s_tools(build=True)
    with ControlPlane(tools) as plane:
        token = plane.service_account_token()
        hub_config = plane.write_kubeconfig(plane.folder / "hub.kubeconfig", token)
        log(f"control plane up {plane.startup_s}; starting {users} servers at once")
        with kubeconfig_in_use(hub_config):
            with idp_process(plane.folder) as idp:
                # a hub meets a long-running apiserver: warm this fresh one up first
                asyncio.run(_starts(plane, WARM_UP, "warm", idp))
                hooked = asyncio.run(_starts(plane, users, "bench", idp))
            vanilla = None
            if baseline:
                log(f"baseline: {users} plain KubeSpawner starts at once")
                vanilla = asyncio.run(_starts(plane, users, "plain"))
        plane.check_alive()
    times = hooked["times"]
    context = {
        "users": users,
        **_summary(times),
        "wall_s": round(hooked["wall_s"], 3),
        "goal": f"< {P99_GOAL_S}",
    }
    if vanilla:
        context["without_hooks"] = _summary(vanilla["times"])
    emit(out, P99, round(p99(times), 3) if times else None, **context)
    emit(
        out,
        FAILURES,
        len(hooked["failed_users"]),
        users=users,
        goal=0,
        examples=hooked["errors"][:3],
    )
    return {"hooks": hooked, "vanilla": vanilla}


def k8s_group(args: argparse.Namespace, out: IO[str]) -> None:
    run(out=out, users=args.k8s_users)


def k8s_arguments(parser: argparse.ArgumentParser) -> None:
    count(parser, "--k8s-users", 200, "users started at once")


FAMILIES = (Family((P99, FAILURES), k8s_group, k8s_arguments),)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.k8s", description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain starts")
    args = parser.parse_args(argv)
    run(users=args.users, baseline=not args.no_baseline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
