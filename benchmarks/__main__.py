"""``python -m benchmarks`` (``make bench``): lakehub's figures, family by family.

Every figure is one JSON object on its own line on stdout,
``{"figure": NAME, "value": NUMBER, ...context}``; nothing else is written there.
Progress and diagnostics go to stderr.  Each family lives in a module of its own, which
says what its figures measure: ``spawn`` (hooks vs vanilla, many at once), ``login``
(a student's wait from "Sign in" to JupyterLab), ``classroom`` (a class of 200 logging in
within two minutes), ``cache``
(the shared dataset cache), ``hyy`` (the H->yy selection vs a raw read), ``tokens`` (the
token service's cost), ``dask_scaleout`` (the Dask Gateway), ``k8s`` (KubeSpawner starts
against a real apiserver), ``cluster`` (the whole release on a real one-node cluster),
``courses`` (building the usage report).

Ratios of timed runs come from pairs of runs made back to back, which goes first
alternating; the value is the median of the pairs' ratios.  Every stack started here is
stopped (by PID) on the way out, also on an error, Ctrl-C or SIGTERM.

    python -m benchmarks [FAMILY ...] [--only FIGURE] [family options]
    python -m benchmarks classroom --students 20
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import (
    cache,
    classroom,
    cluster,
    courses,
    dask_scaleout,
    hyy,
    k8s,
    login,
    spawn,
    tokens,
)
from benchmarks.common import claim_stdout, count, log, terminate
from benchmarks.data import BenchData

MODULES = (spawn, login, classroom, cache, hyy, tokens, dask_scaleout, k8s, cluster, courses)
# ``python -m benchmarks classroom``: the families of one module, by its name
BY_MODULE = {m.__name__.rsplit(".", 1)[1]: m.FAMILIES for m in MODULES}
FAMILIES = tuple(family for m in MODULES for family in m.FAMILIES)
FIGURES = tuple(f for family in FAMILIES for f in family.figures)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "modules",
        nargs="*",
        choices=[[], *BY_MODULE],
        metavar="FAMILY",
        help=f"run only these families ({', '.join(BY_MODULE)}; default: all)",
    )
    parser.add_argument("--only", choices=FIGURES, help="run only what this figure needs")
    parser.add_argument(
        "--keep-logs", type=Path, help="copy each stack's logs here before removing it"
    )
    count(parser, "--gamgam-files", 4, "generated GamGam files")
    count(parser, "--gamgam-events", 100_000, "events per generated GamGam file")
    for family in FAMILIES:
        family.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.cache_rate_mbps <= 0:
        parser.error("--cache-rate-mbps must be > 0")
    if args.cache_users < 2:
        parser.error("--cache-users must be >= 2 (the 1-user rounds are the reference)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = claim_stdout()
    signal.signal(signal.SIGTERM, terminate)
    folder = Path(tempfile.mkdtemp(prefix="lakehub-bench-", dir="/tmp"))
    # generated GamGam files, made once for the families that read ROOT files
    args.bench_data = BenchData(folder, args.gamgam_files, args.gamgam_events)
    began = time.monotonic()
    failed = []
    chosen = [f for m in args.modules for f in BY_MODULE[m]] if args.modules else FAMILIES
    try:
        for family in chosen:
            wanted = [f for f in family.figures if args.only in (None, f)]
            if not wanted:
                continue
            log(f"measuring {', '.join(wanted)}")
            family_began = time.monotonic()
            try:
                family.run(args, out)
            except Exception:
                traceback.print_exc(file=sys.stderr)
                failed.extend(wanted)
            log(f"{', '.join(wanted)}: {time.monotonic() - family_began:.0f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log(f"done in {time.monotonic() - began:.0f} s")
    if failed:
        log(f"no value for: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        log("interrupted; the stacks were stopped")
        raise SystemExit(130) from None
