"""``dask_speedup_2_workers``: the H->yy selection on one process vs two gateway workers.

One stack of its own with Dask switched on and the GamGam demo dataset only (larger than
the tests' files); one user's real session.  In that user's kernel the H->yy notebook's
own cells run up to and including its optional Dask section (which defines the
partitioned work, ``work``, from ``uproot.dask`` and checks the result), then, with the
same files from the shared cache in the same kernel, back-to-back pairs of

* the notebook's single-process loop (``iterate_chunks`` + ``select_diphotons`` + fill),
* ``work.compute()`` on a gateway cluster scaled to 2 workers (started once, warm),

alternating which goes first.  The figure is the median of the pairs' ratios (local wall
time over cluster wall time).  Both read warm files from the page cache; on a machine
with 2 cores the kernel, the scheduler and both workers share them.
"""

from __future__ import annotations

import asyncio
import json
import statistics

from benchmarks.common import Family, count, emit, running_stack
from testkit.harness import KernelSession, notebook_code

FIGURE = "dask_speedup_2_workers"
WORKERS = 2

TIMING = r"""
import json, time
import dask
from dask_gateway import Gateway

def local_run():
    h = new_mass_histogram()
    for chunk in iterate_chunks(files):
        masses, _ = select_diphotons(chunk)
        h.fill(masses)
    return h

def dask_run():
    # a graph with new keys each time: nothing computed before is reused
    fresh = dask.delayed(combine)([dask.delayed(fill_partition)(p) for p in events.to_delayed()])
    return fresh.compute()[0]

def settled():
    # the previous run's results are released on the scheduler (no reuse, no leftovers)
    return not bench_client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))

bench_cluster = Gateway().new_cluster()
bench_cluster.scale(WORKERS)
bench_client = bench_cluster.get_client()
bench_client.wait_for_workers(WORKERS, timeout=300)
dask_run()  # warm: workers import the libraries and open the files once
pairs = []
for rep in range(REPS):
    times = {}
    for what in (("local", "dask") if rep % 2 == 0 else ("dask", "local")):
        while not settled():
            time.sleep(0.05)
        start = time.perf_counter()
        result = local_run() if what == "local" else dask_run()
        times[what] = time.perf_counter() - start
        assert (result.values() == mass_hist.values()).all()
    pairs.append(times)
bench_client.close()
bench_cluster.shutdown()
print(json.dumps({"pairs": pairs, "events": cut_flow["all events"],
                  "partitions": events.npartitions}))
"""


def run(stack, user: str, reps: int) -> dict:
    """Time the pairs in ``user``'s kernel (their server must be running)."""

    async def go() -> dict:
        async with KernelSession(stack.url, user, stack.admin_token) as kernel:
            for code in notebook_code("HyyAnalysis.ipynb"):
                await kernel.execute(code, limit_s=600)
            code = TIMING.replace("WORKERS", str(WORKERS)).replace("REPS", str(reps))
            out = await kernel.execute(code, limit_s=1800)
            return json.loads(out.strip().splitlines()[-1])

    result = asyncio.run(go())
    ratios = [p["local"] / p["dask"] for p in result["pairs"]]
    return {
        "value": round(statistics.median(ratios), 3),
        "events": result["events"],
        "partitions": result["partitions"],
        "repetitions": reps,
        "local_s": [round(p["local"], 3) for p in result["pairs"]],
        "dask_s": [round(p["dask"], 3) for p in result["pairs"]],
        "workers": WORKERS,
        "timed": "notebook's single-process loop vs its uproot.dask work on 2 gateway"
        " workers, same files from the shared cache, back to back in one kernel",
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
        result = run(stack, user, args.dask_reps)
        emit(out, FIGURE, result.pop("value"), **result)


def dask_arguments(parser) -> None:
    count(parser, "--dask-files", 4, "GamGam files for the Dask figure")
    count(parser, "--dask-events", 500_000, "events per file for the Dask figure")
    count(parser, "--dask-reps", 5, "timed pairs for the Dask figure")


FAMILIES = (Family((FIGURE,), dask_group, dask_arguments),)
