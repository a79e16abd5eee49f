"""The Dask Gateway's scale-out on one machine, and what the gateway itself costs.

dask_speedup_2_workers
    One stack of its own with Dask switched on and the GamGam demo dataset only; one
    user's real session.  In that user's kernel the H->yy notebook's cells run (its Dask
    section included), then the notebook's reading and selection of one file
    (``iterate_chunks`` + ``select_diphotons`` + fill) is applied to the demo files, read
    again and again until one process needs at least 10 s (scheduling and start-up no
    longer dominate).  The same work runs in the kernel, on a gateway cluster of 2 workers
    (one task per file) and on a plain ``distributed.LocalCluster`` of 2 workers, back to
    back in rounds whose order alternates.  Value: the median over the rounds of kernel
    time / gateway time.
dask_speedup_vs_localcluster
    The gateway's speed-up divided by the LocalCluster's on the same work in the same
    rounds (goal >= 0.9): what lakehub's gateway costs, not what the machine has (two
    cores shared by the kernel, the scheduler and both workers).
"""

from __future__ import annotations

import asyncio
import json
import statistics

from benchmarks.common import Family, count, emit, running_stack
from testkit.harness import KernelSession, notebook_code

FIGURE = "dask_speedup_2_workers"
VS_LOCALCLUSTER = "dask_speedup_vs_localcluster"
WORKERS = 2

MIN_SECONDS = 10.0  # the single-process work is repeated until it takes at least this

TIMING = r"""
import json, math, time
import dask
from dask_gateway import Gateway
from distributed import Client, LocalCluster

def one_file(path):
    # the notebook's own reading and selection, one file: what a worker does
    h, flow = new_mass_histogram(), {}
    for chunk in iterate_chunks([path]):
        masses, part = select_diphotons(chunk)
        h.fill(masses)
        for step, n in part.items():
            flow[step] = flow.get(step, 0) + n
    return h, flow

def local_run(paths):
    return combine([one_file(p) for p in paths])

def dask_run(client, paths):
    # a graph with new keys each time (pure=False): nothing computed before is reused
    work = dask.delayed(combine)([dask.delayed(one_file, pure=False)(p) for p in paths])
    return client.compute(work).result()

def settled(client):
    # the previous run's results are released on the scheduler (no reuse, no leftovers)
    return not client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))

start = time.perf_counter()
local_run(files)
once = time.perf_counter() - start
repeat = max(1, math.ceil(MIN_SECONDS / once))
paths = list(files) * repeat  # the same files, read again: a workload of >= MIN_SECONDS

def timed(what, client):
    while client is not None and not settled(client):
        time.sleep(0.05)
    start = time.perf_counter()
    result = local_run(paths) if client is None else dask_run(client, paths)
    took = time.perf_counter() - start
    assert result[1]["all events"] == repeat * cut_flow["all events"]
    return took

gateway_cluster = Gateway().new_cluster()
gateway_cluster.scale(WORKERS)
gateway = gateway_cluster.get_client()
gateway.wait_for_workers(WORKERS, timeout=300)
plain = Client(LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True))
for client in (gateway, plain):
    dask_run(client, files)  # warm: workers import the libraries and open the files once
rounds = []
for rep in range(REPS):
    kinds = ["local", "gateway", "localcluster"]
    order = kinds if rep % 2 == 0 else kinds[::-1]
    clients = {"local": None, "gateway": gateway, "localcluster": plain}
    rounds.append({what: timed(what, clients[what]) for what in order})
gateway.close()
gateway_cluster.shutdown()
plain.close()
plain.cluster.close()
print(json.dumps({"rounds": rounds, "events": repeat * cut_flow["all events"],
                  "repeat": repeat, "single_pass_s": once}))
"""


def run(stack, user: str, reps: int) -> dict:
    """Time the rounds in ``user``'s kernel (their server must be running)."""

    async def go() -> dict:
        async with KernelSession(stack.url, user, stack.admin_token) as kernel:
            for code in notebook_code("HyyAnalysis.ipynb"):
                await kernel.execute(code, limit_s=600)
            code = (
                TIMING.replace("MIN_SECONDS", str(MIN_SECONDS))
                .replace("WORKERS", str(WORKERS))
                .replace("REPS", str(reps))
            )
            out = await kernel.execute(code, limit_s=3600)
            return json.loads(out.strip().splitlines()[-1])

    result = asyncio.run(go())
    rounds = result["rounds"]
    gateway = statistics.median(r["local"] / r["gateway"] for r in rounds)
    plain = statistics.median(r["local"] / r["localcluster"] for r in rounds)
    common = {
        "events": result["events"],
        "repeat": result["repeat"],
        "single_pass_s": round(result["single_pass_s"], 3),
        "repetitions": reps,
        "local_s": [round(r["local"], 3) for r in rounds],
        "gateway_s": [round(r["gateway"], 3) for r in rounds],
        "localcluster_s": [round(r["localcluster"], 3) for r in rounds],
        "workers": WORKERS,
        "timed": "the notebook's reading and selection per file, over the demo files read"
        f" repeatedly until one process needs >= {MIN_SECONDS:.0f} s: in the kernel, on 2"
        " gateway workers, and on a plain distributed.LocalCluster of 2 workers, back to back",
    }
    return {
        FIGURE: {"value": round(gateway, 3), **common},
        VS_LOCALCLUSTER: {
            "value": round(gateway / plain, 3),
            "localcluster_speedup": round(plain, 3),
            "goal": ">= 0.9",
            "goal_met": gateway / plain >= 0.9,
            **common,
        },
    }


def dask_group(args, out) -> None:
    site = {
        "events": args.dask_events,
        "dask": {"enabled": True, "max_workers_per_user": WORKERS},
        "demo_data": {"layouts": ["GamGam"], "files": args.dask_files},
    }
    with running_stack("dask", args.keep_logs, site) as stack:
        user = "bench-dask"
        stack.admin.ensure_user(user)
        stack.admin.start_server(user)
        for figure, result in run(stack, user, args.dask_reps).items():
            emit(out, figure, result.pop("value"), **result)


def dask_arguments(parser) -> None:
    count(parser, "--dask-files", 4, "GamGam files for the Dask figure")
    count(parser, "--dask-events", 500_000, "events per file for the Dask figure")
    count(parser, "--dask-reps", 5, "timed pairs for the Dask figure")


FAMILIES = (Family((FIGURE, VS_LOCALCLUSTER), dask_group, dask_arguments),)
