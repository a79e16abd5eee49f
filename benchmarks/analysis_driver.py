"""Timed reads and the H->yy selection, run in the *analysis* environment.

``benchmarks/__main__.py`` runs this file as a script with the analysis Python (which
has uproot, awkward, vector, hist, lmfit, mplhep; the dev environment lacks vector and
the plotting stack).  It imports nothing from the repository.  One JSON object goes to
stdout at the end; everything else (the notebook's own prints included) goes to stderr.

``hyy``
    Executes the code cells of ``HyyAnalysis.ipynb`` in one namespace, in order, with
    ``DATA_FILES`` set right after the cell tagged ``parameters``, up to and including
    the cell that reads the files and runs the selection (the one looping over
    ``iterate_chunks`` and calling ``select_diphotons``; it also defines the reader and
    fills the histogram).  That cell is then executed again and again, as the notebook
    has it, alternating with a plain ``uproot.iterate`` over the same files, the same
    ``BRANCHES`` and the same step size (the default of the notebook's
    ``iterate_chunks``).
``read``
    Reads two sets of files (the same bytes in two folders) with ``uproot.iterate``,
    each file right after or before its copy, once with each file dropped from the page
    cache before its read (``posix_fadvise(DONTNEED)`` after an ``fsync``) and once
    with both warm.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

SELECTION_MARKERS = ("iterate_chunks(", "select_diphotons(")


def note(message: str) -> None:
    print(f"[analysis-driver] {message}", file=sys.stderr, flush=True)


def read_all(files: list[str], branches: list[str], step_size: str) -> int:
    """Read ``branches`` of every file's ``analysis`` tree; return the number of events."""
    import uproot

    events = 0
    for chunk in uproot.iterate({f: "analysis" for f in files}, branches, step_size=step_size):
        events += len(chunk)
    return events


def timed(action) -> tuple[float, object]:
    gc.collect()
    began = time.perf_counter()
    result = action()
    return time.perf_counter() - began, result


# --- hyy: the notebook's selection against a raw read -----------------------------------


def notebook_code_cells(path: str) -> list[dict]:
    """The code cells, each with ``number``: its index among all the notebook's cells."""
    with open(path) as f:
        nb = json.load(f)
    return [{**c, "number": n} for n, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


def cell_source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def run_hyy(args: argparse.Namespace) -> dict:
    os.environ.setdefault("MPLBACKEND", "Agg")  # the notebook imports pyplot and mplhep
    cells = notebook_code_cells(args.notebook)
    params = [i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", [])]
    if len(params) != 1:
        raise SystemExit(f"expected one code cell tagged 'parameters', found {len(params)}")
    selection = [
        i for i, c in enumerate(cells) if all(m in cell_source(c) for m in SELECTION_MARKERS)
    ]
    if len(selection) != 1:
        raise SystemExit(
            f"expected one code cell that calls {' and '.join(SELECTION_MARKERS)}, "
            f"found {len(selection)}: the notebook's structure changed"
        )
    params_at, select_at = params[0], selection[0]
    if select_at < params_at:
        raise SystemExit("the selection cell comes before the parameters cell")

    namespace: dict = {"__name__": "__main__"}

    def run_cell(index: int) -> None:
        name = f"<notebook cell {cells[index]['number']}>"
        code = compile(cell_source(cells[index]), name, "exec")
        exec(code, namespace)  # noqa: S102  the repository's own notebook

    began = time.perf_counter()
    for index in range(select_at + 1):  # the selection cell once too: it defines the reader
        run_cell(index)
        if index == params_at:
            namespace["DATA_FILES"] = list(args.files)
    setup_s = time.perf_counter() - began
    files = namespace["files"]
    if sorted(files) != sorted(args.files):
        raise SystemExit(f"the notebook picked {files}, not the injected DATA_FILES")
    branches = list(namespace["BRANCHES"])
    step_size = inspect.signature(namespace["iterate_chunks"]).parameters["step_size"].default

    def notebook_cell() -> int:
        run_cell(select_at)
        return int(namespace["cut_flow"]["all events"])

    def raw_read() -> int:
        return read_all(files, branches, step_size)

    rates: dict[str, list[float]] = {"selection": [], "raw_read": []}
    seconds: dict[str, list[float]] = {"selection": [], "raw_read": []}
    events = {}
    actions = {"selection": notebook_cell, "raw_read": raw_read}
    for rep in range(-args.warmup, args.reps):
        order = ["raw_read", "selection"] if rep % 2 == 0 else ["selection", "raw_read"]
        for label in order:
            elapsed, n = timed(actions[label])
            events[label] = n
            if rep >= 0:
                rates[label].append(n / elapsed)
                seconds[label].append(elapsed)
                note(f"hyy rep {rep + 1}/{args.reps} {label}: {n} events in {elapsed:.3f} s")
    if events["selection"] != events["raw_read"]:
        raise SystemExit(f"event counts differ: {events}")
    return {
        "events": events["raw_read"],
        "branches": branches,
        "step_size": step_size,
        "selection_cell": cells[select_at]["number"],
        "cells_run_before": [c["number"] for c in cells[:select_at]],
        "setup_s": round(setup_s, 3),
        "events_per_s": {k: statistics.median(v) for k, v in rates.items()},
        "seconds": seconds,
        "selected_in_window": int(namespace["mass_hist"].sum()),
        "cut_flow": namespace["cut_flow"],
    }


# --- read: two copies of the same files ------------------------------------------------


def drop_from_page_cache(files: list[str]) -> None:
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # written pages must be clean before they can be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_bytes(files: list[str]) -> int | None:
    """Bytes of ``files`` in the page cache (util-linux ``fincore``), None if unknown."""
    if shutil.which("fincore") is None:
        return None
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", *files],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return None
    return sum(int(x) for x in out.stdout.split())


def run_read(args: argparse.Namespace) -> dict:
    """Each file and its copy are read back to back (which goes first alternates), so a
    pair shares the load of its moment; ``pairs`` lists [events, cached s, local s]."""
    if len(args.cached) != len(args.local):
        raise SystemExit("--cached and --local must name the same number of files")
    pairs_of_files = list(zip(args.cached, args.local, strict=True))
    result: dict = {"pairs": {}, "resident_bytes_before_cold_read": {}}
    for mode in ("cold", "warm"):
        pairs = []
        for rep in range(-args.warmup, args.reps):
            for j, (cached, local) in enumerate(pairs_of_files):
                paths = {"cached": cached, "local": local}
                order = ["cached", "local"] if (rep + j) % 2 == 0 else ["local", "cached"]
                took, events = {}, {}
                for label in order:
                    path = paths[label]
                    if mode == "cold":
                        drop_from_page_cache([path])
                        if rep == 0:
                            resident = result["resident_bytes_before_cold_read"]
                            resident[label] = (resident.get(label) or 0) + (
                                resident_bytes([path]) or 0
                            )
                    took[label], events[label] = timed(
                        lambda path=path: read_all([path], args.branches, "25 MB")
                    )
                if events["cached"] != events["local"]:
                    raise SystemExit(f"event counts differ for {cached} and {local}: {events}")
                if rep >= 0:
                    pairs.append([events["cached"], took["cached"], took["local"]])
            if rep >= 0:
                done = pairs[-len(pairs_of_files) :]
                note(
                    f"read {mode} {rep + 1}/{args.reps}: cached "
                    f"{sum(p[1] for p in done):.3f} s, local {sum(p[2] for p in done):.3f} s"
                )
        result["pairs"][mode] = pairs
    result["events"] = sum(p[0] for p in result["pairs"]["cold"]) // args.reps
    result["branches"] = args.branches
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="task", required=True)
    hyy = sub.add_parser("hyy")
    hyy.add_argument("--notebook", required=True)
    hyy.add_argument("--reps", type=int, default=5)
    hyy.add_argument("--warmup", type=int, default=1)
    hyy.add_argument("files", nargs="+")
    read = sub.add_parser("read")
    read.add_argument("--reps", type=int, default=5)
    read.add_argument("--warmup", type=int, default=1)
    read.add_argument("--cached", nargs="+", required=True)
    read.add_argument("--local", nargs="+", required=True)
    read.add_argument("--branches", nargs="+", required=True, help="the branches to read")
    args = parser.parse_args()
    # the result alone on the real stdout; anything else written to fd 1 (the notebook's
    # prints, uproot's ``show``, which holds its own reference to sys.stdout) to stderr
    sys.stdout.flush()
    result_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    import uproot

    result = run_hyy(args) if args.task == "hyy" else run_read(args)
    result["uproot"] = uproot.__version__
    result["python"] = sys.version.split()[0]
    result_out.write(json.dumps(result) + "\n")
    result_out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
