"""The k8s figures: lakehub's KubeSpawner hooks against a real kube-apiserver.

k8s_starts_ratio_hooks_vs_vanilla_p50, k8s_starts_ratio_hooks_vs_vanilla_p99
    ``--k8s-users`` (200) users start at once through the real KubeSpawner, under the
    hub's ServiceAccount token, each timed from the pre-spawn hook through PVC and pod
    creation until KubeSpawner sees the pod Running (kwok plays the node).  A batch with
    lakehub's hooks (token exchange at a fake identity provider in its own process, the
    session Secret) and a batch without them run back to back on the same apiserver,
    in rounds whose order alternates (ABBA); the value is the median over the rounds of
    (hooked percentile / plain percentile).  Goal <= 1.15 for both.  Context: the API
    calls each start makes with and without the hooks, from the apiserver's audit log.
k8s_concurrent_starts_p99_s
    The 99th percentile of the hooked starts, in seconds (context: the plain ones).
k8s_start_failures
    How many hooked starts failed or left no Secret holding a token (goal 0).

``python -m benchmarks.k8s [--users N] [--rounds N]`` prints them; the control plane
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
RATIO_P50 = "k8s_starts_ratio_hooks_vs_vanilla_p50"
RATIO_P99 = "k8s_starts_ratio_hooks_vs_vanilla_p99"
P99_GOAL_S = 5.0
RATIO_GOAL = 1.15
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
    authenticator = session = None
    if idp is not None:
        session = configure(
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
        if session is not None:  # the exchange's HTTP connections, kept alive till here
            await session.hooks.exchange.aclose()
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


def api_calls(events: list[dict], users: int) -> dict[str, float]:
    """API calls per start by ``verb resource``, from a batch's audit events."""
    counts: dict[str, int] = {}
    for event in events:
        ref = event.get("objectRef") or {}
        key = f"{event.get('verb')} {ref.get('resource', event.get('requestURI', '?'))}"
        counts[key] = counts.get(key, 0) + 1
    return {k: round(v / users, 2) for k, v in sorted(counts.items())}


def run(out: IO[str] | None = None, users: int = 200, rounds: int = 2) -> dict:
    """Start the control plane, measure hooked and plain batches in alternating order,
    print the figures, stop everything."""
    out = out or sys.stdout
    tools = k8s_tools(build=True)
    batches: dict[str, list[dict]] = {"hooks": [], "plain": []}
    calls: dict[str, dict] = {}
    with ControlPlane(tools) as plane:
        token = plane.service_account_token()
        hub_config = plane.write_kubeconfig(plane.folder / "hub.kubeconfig", token)
        log(f"control plane up {plane.startup_s}; {rounds} rounds of {users} starts at once")
        with kubeconfig_in_use(hub_config), idp_process(plane.folder) as idp:
            # a hub meets a long-running apiserver: warm this fresh one up first
            asyncio.run(_starts(plane, WARM_UP, "warmh", idp))
            asyncio.run(_starts(plane, WARM_UP, "warmp"))
            for r in range(rounds):
                order = ("hooks", "plain") if r % 2 == 0 else ("plain", "hooks")
                for label in order:
                    before = len(plane.audit_events())
                    prefix = f"{label[0]}{r}-"
                    batch = asyncio.run(
                        _starts(plane, users, prefix, idp if label == "hooks" else None)
                    )
                    batches[label].append(batch)
                    starts = [e for e in plane.audit_events()[before:] if e["verb"] != "delete"]
                    calls.setdefault(label, api_calls(starts, users))
                    log(f"round {r + 1}/{rounds} {label}: {_summary(batch['times'])}")
        plane.check_alive()
    hooked = [t for b in batches["hooks"] for t in b["times"]]
    plain = [t for b in batches["plain"] for t in b["times"]]
    context = {
        "users": users,
        "rounds": rounds,
        "with_hooks": _summary(hooked),
        "without_hooks": _summary(plain),
        "api_calls_per_start": calls,
        "note": "watch/list calls are KubeSpawner's reflectors, shared by all starts",
    }
    for figure, percentile in ((RATIO_P50, statistics.median), (RATIO_P99, p99)):
        ratios = [
            percentile(h["times"]) / percentile(v["times"])
            for h, v in zip(batches["hooks"], batches["plain"], strict=True)
            if h["times"] and v["times"]
        ]
        value = round(statistics.median(ratios), 3) if ratios else None
        emit(
            out,
            figure,
            value,
            per_round=[round(x, 3) for x in ratios],
            goal=f"<= {RATIO_GOAL}",
            goal_met=value is not None and value <= RATIO_GOAL,
            **context,
        )
    emit(out, P99, round(p99(hooked), 3) if hooked else None, goal=f"< {P99_GOAL_S}", **context)
    failed = [u for b in batches["hooks"] for u in b["failed_users"]]
    errors = [e for b in batches["hooks"] for e in b["errors"]]
    emit(out, FAILURES, len(failed), users=users * rounds, goal=0, examples=errors[:3])
    return batches


def k8s_group(args: argparse.Namespace, out: IO[str]) -> None:
    run(out=out, users=args.k8s_users, rounds=args.k8s_rounds)


def k8s_arguments(parser: argparse.ArgumentParser) -> None:
    count(parser, "--k8s-users", 200, "users started at once")
    count(parser, "--k8s-rounds", 2, "rounds of one hooked and one plain batch")


FAMILIES = (Family((RATIO_P50, RATIO_P99, P99, FAILURES), k8s_group, k8s_arguments),)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.k8s", description=__doc__)
    count(parser, "--users", 200, "users started at once")
    count(parser, "--rounds", 2, "rounds of one hooked and one plain batch")
    args = parser.parse_args(argv)
    run(users=args.users, rounds=args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
