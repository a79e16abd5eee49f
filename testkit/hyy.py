"""The H->yy notebook run the same way in a student's kernel and on this machine.

Both sides execute the code cells of ``notebooks/HyyAnalysis.ipynb`` in order, in one
namespace, then the same two snippets: one reports the histogram, the cut flow and the
files read; the other executes the notebook's selection cell (the one that reads the
files chunk by chunk and fills the histogram) again ``reps`` times and reports how long
each run took.  In a session the notebook finds its data itself (``lakehub.fetch``, the
shared cache); on the host ``DATA_FILES`` is set right after the parameters cell, as a
student would, and the host's analysis environment runs it
(``$LAKEHUB_HOME/venvs/analysis``).

Results are one JSON object on a line starting with :data:`MARKER`.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from sitefile.state import REPO, venv_bin

NOTEBOOK = REPO / "notebooks" / "HyyAnalysis.ipynb"
MARKER = "LAKEHUB_HYY "
# what identifies the selection cell (it calls both)
SELECTION_CALLS = ("iterate_chunks(", "select_diphotons(")


class HyyError(RuntimeError):
    pass


def code_cells(path: Path = NOTEBOOK) -> list[tuple[str, list[str]]]:
    """(source, tags) of every code cell, in order."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [
        ("".join(c["source"]), list(c.get("metadata", {}).get("tags", [])))
        for c in cells
        if c["cell_type"] == "code"
    ]


def _one(cells: list[tuple[str, list[str]]], matches, what: str) -> int:
    found = [n for n, cell in enumerate(cells) if matches(cell)]
    if len(found) != 1:
        raise HyyError(f"expected one {what} in {NOTEBOOK.name}, found {len(found)}")
    return found[0]


def parameters_index(cells: list[tuple[str, list[str]]]) -> int:
    return _one(cells, lambda c: "parameters" in c[1], "cell tagged 'parameters'")


def selection_source(cells: list[tuple[str, list[str]]]) -> str:
    at = _one(cells, lambda c: all(s in c[0] for s in SELECTION_CALLS), "selection cell")
    return cells[at][0]


def report_code() -> str:
    """Prints the histogram's bin contents, the cut flow and the files read."""
    return (
        "import json as _json\n"
        f"print({MARKER!r} + _json.dumps({{'histogram': mass_hist.values().tolist(),"
        " 'cut_flow': cut_flow, 'files': [str(f) for f in files], 'source': data_source}))\n"
    )


def timing_code(selection: str, reps: int) -> str:
    """Runs the selection cell ``reps`` more times; prints the events and the seconds."""
    return (
        "import json as _json, time as _time\n"
        f"_selection = compile({selection!r}, '<selection cell>', 'exec')\n"
        "_seconds = []\n"
        f"for _rep in range({reps}):\n"
        "    _began = _time.perf_counter()\n"
        "    exec(_selection, globals())\n"
        "    _seconds.append(_time.perf_counter() - _began)\n"
        f"print({MARKER!r} + _json.dumps({{'events': cut_flow['all events'],"
        " 'seconds': _seconds}))\n"
    )


def parse(output: str) -> dict:
    """The last result line of ``output``."""
    lines = [ln for ln in output.splitlines() if ln.startswith(MARKER)]
    if not lines:
        raise HyyError(f"no result line in the output:\n{output[-2000:]}")
    return json.loads(lines[-1][len(MARKER) :])


async def in_kernel(kernel, *, reps: int = 0, limit_s: float = 300) -> dict:
    """Run the notebook in a :class:`testkit.harness.KernelSession`; the report, and
    with ``reps`` the timings (``events``, ``seconds``)."""
    cells = code_cells()
    for source, _ in cells:
        await kernel.execute(source, limit_s=limit_s)
    result = parse(await kernel.execute(report_code(), limit_s=limit_s))
    if reps:
        result.update(
            parse(await kernel.execute(timing_code(selection_source(cells), reps), limit_s))
        )
    return result


# the host side: the same cells, in the analysis environment's Python
_HOST_PROGRAM = """
import json, os, sys
os.environ.setdefault("MPLBACKEND", "Agg")
spec = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for number, source in enumerate(spec["cells"]):
    exec(compile(source, f"<cell {number}>", "exec"), namespace)
    if number == spec["parameters"]:
        namespace["DATA_FILES"] = spec["files"]
for snippet in spec["after"]:
    exec(compile(snippet, "<report>", "exec"), namespace)
"""


def on_host(files: list[Path], *, reps: int = 0, timeout: float = 600) -> dict:
    """Run the notebook on ``files`` with the host's analysis environment; the same
    report as :func:`in_kernel`."""
    python = venv_bin("analysis", "python")
    if not python.is_file():
        raise HyyError(f"{python} is missing: run `make envs`")
    cells = code_cells()
    after = [report_code()] + ([timing_code(selection_source(cells), reps)] if reps else [])
    spec = {
        "cells": [source for source, _ in cells],
        "parameters": parameters_index(cells),
        "files": [str(f) for f in files],
        "after": after,
    }
    with tempfile.TemporaryDirectory(prefix="lakehub-hyy-") as folder:
        spec_file = Path(folder) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        env = {**os.environ, "MPLCONFIGDIR": folder}
        done = subprocess.run(
            [str(python), "-c", _HOST_PROGRAM, str(spec_file)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=folder,
            check=False,
        )
    if done.returncode != 0:
        raise HyyError(f"the notebook failed on the host:\n{done.stderr[-3000:]}")
    results = [parse(line) for line in done.stdout.splitlines() if line.startswith(MARKER)]
    merged: dict = {}
    for result in results:
        merged.update(result)
    return merged
