"""``python -m benchmarks.cluster``: figures of lakehub's whole release on a real one-node
Kubernetes cluster (the lab of ``make cluster-up``, :class:`testkit.cluster.Lab`).

One JSON object per figure on stdout, ``{"figure": NAME, "value": NUMBER, ...context}``;
progress on stderr.  :func:`figures` returns the same objects (for ``make bench``).  The
lab is started in a temporary folder, with larger demo files than the tests' (two files
of ``--events`` events), and stopped by PID at the end, also on an error, Ctrl-C or
SIGTERM.

cluster_deploy_s
    The first ``make deploy`` of the lab's site on the fresh node, images present: render,
    lint, diff, ``helm upgrade --install --wait --atomic`` and the settling upgrade that
    follows a first install (helm/deploy.sh says why).
cluster_spawn_p50_s
    Median, over fresh students, of the time from posting the login form to the hub
    reporting the student's server ready: the spawn page, lakehub's hooks (Rucio
    account, token, session Secret), the home claim, the pod, JupyterLab starting.
    Each server is stopped before the next login.
cluster_spawn_ratio_hooks_vs_vanilla
    The same median on this hub over the median on a second release of the same chart,
    site and image in its own namespace with lakehub's hook loader emptied (plain z2jh
    KubeSpawner), side by side on the same node; logins alternate between the two, which
    goes first alternating.  Goal: at most 1.10.
cluster_hyy_ratio_vs_host
    events/s of the H->yy notebook's selection cell in a student's kernel in their pod,
    reading the files through the in-cluster cache (``lakehub.fetch``), over events/s of
    the same cell on the same files on the host's disk in the host's analysis environment
    (testkit.hyy).  Both after a first full run of the notebook (files in the page cache
    on both sides); pairs of runs back to back, which goes first alternating; the value
    is the median of the pairs' ratios.  Goal: at least 0.9.
cluster_secret_propagation_s
    Context: from the token service writing a student's renewed token into the session
    Secret to the same token in the running pod's Secret-mounted file (the kubelet's
    syncFrequency is 10 s here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Family, claim_stdout, count, terminate
from localstack.hubclient import signup, user_api_token
from testkit import hyy
from testkit.cluster import ADMIN_USER, Lab, LabPorts, public_url, run_make
from testkit.harness import KernelSession
from testkit.lab_session import (
    login_until_ready,
    new_student,
    stop_server,
    token_propagation,
)

TOKEN_LIFETIME = 120  # renewal 80 s after a spawn: the propagation figure needs one
VANILLA_NAMESPACE = "vanilla"
VANILLA_PORTS = LabPorts(hub=30081)
# z2jh's hub runs this file (hub.extraFiles) after its own configuration; an empty one
# leaves KubeSpawner as z2jh configures it
HOOKS_OFF = {
    "jupyterhub": {
        "hub": {"extraFiles": {"lakehub-config": {"stringData": "# lakehub's hooks off\n"}}}
    }
}


def note(message: str) -> None:
    print(f"[cluster-bench] {message}", file=sys.stderr, flush=True)


def figure(name: str, value: float, **context) -> dict:
    return {"figure": name, "value": round(value, 4), **context}


def deploy(lab: Lab, site: Path, **variables: str) -> float:
    began = time.monotonic()
    done = run_make(lab, "deploy", site, **variables)
    if done.returncode != 0:
        raise RuntimeError(f"make deploy {site.name} failed:\n{done.stderr[-4000:]}")
    return time.monotonic() - began


def spawn_rounds(hubs: dict[str, str], admin_password: str, rounds: int) -> dict[str, list]:
    """Fresh students log in on each hub in turn; seconds from login to ready."""
    times: dict[str, list[float]] = {label: [] for label in hubs}
    labels = list(hubs)
    for n in range(rounds):
        for label in labels if n % 2 == 0 else labels[::-1]:
            url = hubs[label]
            name, password = new_student(url, ADMIN_USER, admin_password, prefix=label[0])
            seconds = login_until_ready(url, name, password)
            times[label].append(seconds)
            note(f"spawn round {n + 1}/{rounds} {label}: {seconds:.1f} s")
            stop_server(url, name, password)
    return times


async def hyy_pairs(lab: Lab, name: str, token: str, pairs: int) -> dict:
    """The notebook once in the student's kernel (fetching through the cache), then
    pairs of timed selection runs in the pod and on the host."""
    cells = hyy.code_cells()
    selection = hyy.selection_source(cells)
    files = lab.demo_files()
    async with KernelSession(lab.public_url, name, token) as kernel:
        first = await hyy.in_kernel(kernel, limit_s=600)
        note(f"notebook in the pod: {first['source']}")
        pod_s, host_s, events = [], [], []
        for n in range(pairs):
            order = ("pod", "host") if n % 2 == 0 else ("host", "pod")
            for where in order:
                if where == "pod":
                    code = hyy.timing_code(selection, 1)
                    result = hyy.parse(await kernel.execute(code, limit_s=600))
                    pod_s.append(result["seconds"][0])
                else:
                    result = await asyncio.to_thread(hyy.on_host, files, reps=1)
                    host_s.append(result["seconds"][0])
                events.append(result["events"])
            note(f"H->yy pair {n + 1}/{pairs}: pod {pod_s[-1]:.3f} s, host {host_s[-1]:.3f} s")
    if len(set(events)) != 1:
        raise RuntimeError(f"the pod and the host read different numbers of events: {events}")
    return {"events": events[0], "pod_s": pod_s, "host_s": host_s, "source": first["source"]}


class Figures(list):
    """The figures found so far; each is also handed to ``emit`` as soon as it is known."""

    def __init__(self, emit=None) -> None:
        super().__init__()
        self.emit = emit

    def append(self, item: dict) -> None:
        super().append(item)
        if self.emit is not None:
            self.emit(item)


def figures(*, rounds: int = 5, pairs: int = 7, events: int = 400_000, emit=None) -> list[dict]:
    """Start a lab, measure, stop it; the figure objects (see the module docstring),
    each also passed to ``emit`` when it is known."""
    found = Figures(emit)
    with tempfile.TemporaryDirectory(prefix="lakehub-cluster-bench-") as folder:
        lab = Lab(Path(folder) / "lab", token_lifetime_seconds=TOKEN_LIFETIME, demo_events=events)
        try:
            note("starting the one-node lab")
            lab.start()
            note(f"lab up: {', '.join(f'{k} {v:.0f} s' for k, v in lab.timings.items())}")

            deploy_s = deploy(lab, lab.site_file)
            note(f"first make deploy: {deploy_s:.0f} s")
            found.append(
                figure(
                    "cluster_deploy_s",
                    deploy_s,
                    what="first make deploy on a fresh node with the images present,"
                    " including the settling upgrade after a first install",
                )
            )

            vanilla_site = lab.write_site(
                lab.state / "vanilla.yaml", ports=VANILLA_PORTS, namespace=VANILLA_NAMESPACE
            )
            hooks_off = lab.state / "hooks-off.yaml"
            hooks_off.write_text(json.dumps(HOOKS_OFF))
            vanilla_s = deploy(lab, vanilla_site, RELEASE="vanilla", VALUES=str(hooks_off))
            note(f"the release without lakehub's hooks deployed in {vanilla_s:.0f} s")
            hubs = {
                "hooks": lab.public_url,
                "vanilla": public_url(lab.node_ip, VANILLA_PORTS),
            }
            admin_password = "bench-" + str(time.time_ns())
            for url in hubs.values():
                signup(url, ADMIN_USER, admin_password)

            times = spawn_rounds(hubs, admin_password, rounds)
            hooks_p50 = statistics.median(times["hooks"])
            vanilla_p50 = statistics.median(times["vanilla"])
            found.append(
                figure(
                    "cluster_spawn_p50_s",
                    hooks_p50,
                    spawns_s=[round(t, 2) for t in times["hooks"]],
                    what="login POST to server ready, fresh students, real pods",
                )
            )
            found.append(
                figure(
                    "cluster_spawn_ratio_hooks_vs_vanilla",
                    hooks_p50 / vanilla_p50,
                    goal="<= 1.10",
                    hooks_s=[round(t, 2) for t in times["hooks"]],
                    vanilla_s=[round(t, 2) for t in times["vanilla"]],
                    paired_p50=round(
                        statistics.median(
                            h / v for h, v in zip(times["hooks"], times["vanilla"], strict=True)
                        ),
                        4,
                    ),
                )
            )

            name, password = new_student(lab.public_url, ADMIN_USER, admin_password, prefix="a")
            login_until_ready(lab.public_url, name, password)
            token = user_api_token(lab.public_url, name, password, note="bench")
            run = asyncio.run(hyy_pairs(lab, name, token, pairs))
            ratios = [h / p for p, h in zip(run["pod_s"], run["host_s"], strict=True)]
            found.append(
                figure(
                    "cluster_hyy_ratio_vs_host",
                    statistics.median(ratios),
                    goal=">= 0.9",
                    events=run["events"],
                    pod_events_per_s_p50=round(run["events"] / statistics.median(run["pod_s"])),
                    host_events_per_s_p50=round(run["events"] / statistics.median(run["host_s"])),
                    pod_source=run["source"],
                )
            )

            seen = token_propagation(
                lab.node, lab.namespace, lab.public_url, name, token, TOKEN_LIFETIME
            )
            found.append(
                figure(
                    "cluster_secret_propagation_s",
                    seen.delay_s,
                    sync_frequency=lab.node.sync_frequency,
                    what="renewed token: session Secret -> the pod's mounted file",
                )
            )
        finally:
            note("stopping the lab")
            left = lab.stop()
            if left:
                note(f"the lab left this behind: {left}")
    return found


def cluster_group(args: argparse.Namespace, out) -> None:
    figures(
        rounds=args.cluster_rounds,
        pairs=args.cluster_pairs,
        events=args.cluster_events,
        emit=lambda found: out.write(json.dumps(found) + "\n"),
    )


def cluster_arguments(parser: argparse.ArgumentParser) -> None:
    count(parser, "--cluster-rounds", 5, "logins per hub on the one-node cluster")
    count(parser, "--cluster-pairs", 7, "H->yy pairs in a pod and on the host")
    count(parser, "--cluster-events", 400_000, "events per demo file of the cluster lab")


FAMILIES = (
    Family(
        (
            "cluster_deploy_s",
            "cluster_spawn_p50_s",
            "cluster_spawn_ratio_hooks_vs_vanilla",
            "cluster_hyy_ratio_vs_host",
            "cluster_secret_propagation_s",
        ),
        cluster_group,
        cluster_arguments,
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__)
    cluster_arguments(parser)
    args = parser.parse_args(argv)
    out = claim_stdout()
    signal.signal(signal.SIGTERM, terminate)
    cluster_group(args, out)
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
