"""Execute the teaching notebooks top to bottom on generated demo data.

How the execution works, and why:

* The tests run in the *dev* environment, which has pytest and the demo-data
  generator but neither nbclient nor nbformat nor the analysis stack
  (hist, mplhep, vector, lmfit, ...).  The notebook has to run where students
  run it: in the *analysis* environment.
* So the test writes a small driver script (``_DRIVER`` below) to ``tmp_path``
  and runs it with the analysis environment's Python in a subprocess.  The
  driver loads the notebook with nbformat, swaps the cell tagged
  ``parameters`` for one that also sets ``DATA_FILES`` to the generated files,
  appends a cell that prints the results as one JSON line, and executes the
  notebook with nbclient.
* The kernel is started from a throw-away kernelspec in ``tmp_path`` whose
  ``argv`` names the analysis Python explicitly, and ``JUPYTER_PATH`` points
  the subprocess at it.  Nothing depends on kernels installed for the user,
  and jupyter's runtime/IPython directories are kept inside ``tmp_path``.
* The driver prints a JSON summary (errors, unexecuted cells, image count and
  the values from the appended cell) which the test parses and checks.  The
  executed notebook is saved next to it for inspection when a test fails.

The analysis environment lives at ``$LAKEHUB_HOME/venvs/analysis``
(``LAKEHUB_HOME`` defaults to ``<repo>/.lakehub``); scripts/ensure-env.sh
builds it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from pathlib import Path

import pytest

from localstack.demo_data import generate_dataset
from localstack.paths import venv_bin

pytestmark = pytest.mark.notebooks

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"
KERNEL_NAME = "lakehub-analysis-test"
RESULT_MARKER = "LAKEHUB_NOTEBOOK_RESULT "


def analysis_python() -> Path:
    """The Python interpreter of the analysis environment."""
    return venv_bin("analysis", "python")


_DRIVER = r'''
"""Run one notebook with injected parameters; print a JSON summary on stdout."""
import json
import sys

import nbformat
from nbclient import NotebookClient

source, executed, kernel_name, params_json, report_json, marker = sys.argv[1:7]
params = json.loads(params_json)
report = json.loads(report_json)

nb = nbformat.read(source, as_version=4)
tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
if len(tagged) != 1:
    sys.exit(f"expected exactly one cell tagged 'parameters', found {len(tagged)}")
index = tagged[0]
original = nb.cells[index].source
injected = "\n".join(f"{name} = {value!r}" for name, value in params.items())
nb.cells[index] = nbformat.v4.new_code_cell(
    f"{original}\n\n# injected by tests/test_notebooks.py\n{injected}\n",
    metadata={"tags": ["parameters", "injected-parameters"]},
)
fields = ", ".join(f"{name!r}: {name}" for name in report)
nb.cells.append(nbformat.v4.new_code_cell(
    f"import json as _json\nprint({marker!r} + _json.dumps({{{fields}}}, default=float))"
))

client = NotebookClient(nb, timeout=300, kernel_name=kernel_name, allow_errors=True)
client.execute()
nbformat.write(nb, executed)

summary = {"errors": [], "unexecuted": [], "images": 0, "result": None}
for number, cell in enumerate(nb.cells):
    if cell.cell_type != "code":
        continue
    if cell.execution_count is None:
        summary["unexecuted"].append(number)
    for output in cell.outputs:
        if output.output_type == "error":
            summary["errors"].append(f"cell {number}: {output.ename}: {output.evalue}")
        if "image/png" in output.get("data", {}):
            summary["images"] += 1
        if output.output_type == "stream":
            for line in output.text.splitlines():
                if line.startswith(marker):
                    summary["result"] = json.loads(line[len(marker):])
print(json.dumps(summary))
'''


def _write_kernelspec(root: Path, python: Path) -> Path:
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lakehub analysis (test)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def run_notebook(notebook: Path, tmp_path: Path, params: dict, report: list[str]) -> dict:
    """Execute ``notebook`` in the analysis environment and return the driver's summary."""
    python = analysis_python()
    if not python.is_file():
        pytest.fail(
            f"analysis environment not found at {python}; build it with scripts/ensure-env.sh "
            "or point LAKEHUB_HOME at it"
        )
    driver = tmp_path / "run_notebook.py"
    driver.write_text(_DRIVER)
    jupyter_dir = _write_kernelspec(tmp_path / "jupyter", python)
    executed = tmp_path / f"{notebook.stem}.executed.ipynb"
    env = {
        **os.environ,
        "JUPYTER_PATH": str(jupyter_dir),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("RUCIO_CONFIG", None)  # the data must come from DATA_FILES only
    env.pop("PYTHONPATH", None)  # keep the dev environment out of the kernel
    proc = subprocess.run(
        [
            str(python),
            str(driver),
            str(notebook),
            str(executed),
            KERNEL_NAME,
            json.dumps(params),
            json.dumps(report),
            RESULT_MARKER,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=notebook.parent,
        timeout=540,
        check=False,
    )
    assert proc.returncode == 0, f"driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"no summary from the driver:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def test_hyy_analysis_finds_the_higgs_peak(tmp_path):
    data_dir = tmp_path / "data"
    files = generate_dataset(data_dir, n_files=2, n_events=30_000, seed=1, progress=False)

    started = time.monotonic()
    summary = run_notebook(
        NOTEBOOKS / "HyyAnalysis.ipynb",
        tmp_path,
        params={"DATA_FILES": [str(f) for f in files]},
        report=["fitted_mass", "fitted_mass_err", "significance", "IS_DEMO", "cut_flow"],
    )
    elapsed = time.monotonic() - started
    print(f"HyyAnalysis.ipynb executed in {elapsed:.1f} s")  # shown with pytest -s / -rP

    assert summary["errors"] == []
    assert summary["unexecuted"] == []
    assert summary["images"] >= 1
    result = summary["result"]
    assert result is not None, "the appended result cell printed nothing"

    fitted_mass = result["fitted_mass"]
    assert abs(fitted_mass - 125.0) < 1.5, result
    assert 0.0 < result["fitted_mass_err"] < 1.0, result
    assert math.isfinite(result["significance"]) and result["significance"] > 5.0, result
    assert result["IS_DEMO"] is True  # plots are labelled as generated data

    # every step of the selection removes events (a cut that is always true would not)
    flow = list(result["cut_flow"].values())
    assert flow[0] == flow[1] == 2 * 30_000  # every generated event has two photons
    assert all(after < before for before, after in zip(flow[1:-1], flow[2:], strict=True)), flow
    assert elapsed < 60.0, f"notebook took {elapsed:.0f} s"
