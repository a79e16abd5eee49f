"""The H->yy notebook's selection against a raw read.

hyy_throughput_ratio_vs_raw_read, hyy_events_per_s
    events/s of the H->yy notebook's own reading-and-selection cell (executed from
    ``notebooks/HyyAnalysis.ipynb`` with ``DATA_FILES`` injected) on generated files,
    over events/s of reading the same branches with uproot and nothing else.  No
    stack.  ``benchmarks/analysis_driver.py`` does the reading in the analysis
    environment.
"""

from __future__ import annotations

import argparse
import os
from typing import IO

from benchmarks.common import Family, count, emit
from benchmarks.data import (
    GAMGAM_SEED,
    HYY_GOAL,
    PAIRED_NOTE,
    BenchData,
    analysis_driver,
    rate_ratios,
)
from sitefile.state import REPO

HYY_RATIO = "hyy_throughput_ratio_vs_raw_read"
HYY_RATE = "hyy_events_per_s"


def hyy_figures(args: argparse.Namespace, out: IO[str]) -> None:
    data: BenchData = args.bench_data
    files = [str(p) for p in data.gamgam()]
    notebook = REPO / "notebooks" / "HyyAnalysis.ipynb"
    load_before = os.getloadavg()[0]
    result = analysis_driver(
        ["hyy", "--notebook", str(notebook), "--reps", str(args.hyy_reps), *files], limit_s=600
    )
    load_after = os.getloadavg()[0]
    seconds = result["seconds"]
    ratios = rate_ratios(
        [result["events"]] * len(seconds["selection"]), seconds["selection"], seconds["raw_read"]
    )
    ratio = ratios["paired_p50"]
    selection_rate = ratios["top_events_per_s_p50"]
    common = {
        "events": result["events"],
        "files": len(files),
        "events_per_file": args.gamgam_events,
        "repetitions": args.hyy_reps,
        "selection_events_per_s": round(selection_rate),
        "raw_read_events_per_s": round(ratios["bottom_events_per_s_p50"]),
        "ratio_of_medians": round(ratios["of_medians"], 4),
        "ratio_of_best": round(ratios["of_best"], 4),
        "paired_note": PAIRED_NOTE,
        "selection_s": [round(t, 4) for t in result["seconds"]["selection"]],
        "raw_read_s": [round(t, 4) for t in result["seconds"]["raw_read"]],
        "branches": result["branches"],
        "step_size": result["step_size"],
        "timed": (
            f"notebook cell {result['selection_cell']} of HyyAnalysis.ipynb as it stands "
            "(uproot.iterate through the notebook's iterate_chunks, select_diphotons, "
            "histogram fill, cut-flow sums and printout), executed after cells "
            f"{result['cells_run_before']} with DATA_FILES injected after the parameters cell; "
            "against uproot.iterate of the same files, branches and step size, doing nothing "
            "with the chunks; files in the page cache for both"
        ),
        "selected_in_mass_window": result["selected_in_window"],
        "data": f"localstack.demo_data GamGam, seed {GAMGAM_SEED}",
        "reader": f"uproot {result['uproot']} (analysis Python {result['python']})",
        "loadavg_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
    }
    emit(
        out,
        HYY_RATIO,
        round(ratio, 4),
        goal=f">= {HYY_GOAL:.2f}",
        goal_met=ratio >= HYY_GOAL,
        **common,
    )
    emit(
        out,
        HYY_RATE,
        round(selection_rate),
        unit="events/s",
        note="median rate of the notebook's selection cell, same runs as " + HYY_RATIO,
        **common,
    )


# --- command line -----------------------------------------------------------------------


def hyy_arguments(parser: argparse.ArgumentParser) -> None:
    count(parser, "--hyy-reps", 11, "timed runs of the selection and of the raw read")


FAMILIES = (Family((HYY_RATIO, HYY_RATE), hyy_figures, hyy_arguments),)
