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

Every notebook in ``notebooks/`` must appear in ``NOTEBOOK_LAYOUTS`` (with the demo-data
layout it reads) and has a test asserting its physics result.  Two cheap checks need no
analysis environment: the notebooks' static structure (parameters cell, DID, saved without
outputs) and the order in which their data-access function tries its sources, run on
stand-ins for lakehub, Rucio and atlasopenmagic.

The analysis environment lives at ``$LAKEHUB_HOME/venvs/analysis``
(``LAKEHUB_HOME`` defaults to ``<repo>/.lakehub``); scripts/ensure-env.sh
builds it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import uproot

from localstack.demo_data import LAYOUTS, generate_dataset
from sitefile.state import venv_bin

pytestmark = pytest.mark.notebooks

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"
KERNEL_NAME = "lakehub-analysis-test"
RESULT_MARKER = "LAKEHUB_NOTEBOOK_RESULT "
#: Every notebook and the demo-data layout it analyses (its DID is opendata:demo.<layout>).
NOTEBOOK_LAYOUTS = {
    "HyyAnalysis.ipynb": "GamGam",
    "ZllAnalysis.ipynb": "2lep",
    "HZZ4lAnalysis.ipynb": "4lep",
    "WlnuAnalysis.ipynb": "1lep",
}
N_FILES, N_EVENTS = 2, 30_000
#: Wall-clock budget for one notebook on N_FILES x N_EVENTS generated events.
TIME_LIMIT = 60.0


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


def execute_on_demo_data(name: str, tmp_path: Path, report: list[str]) -> dict:
    """Generate the notebook's layout, run the notebook on it, check the generic outcome.

    Returns the values named in ``report`` as the notebook computed them.
    """
    layout = NOTEBOOK_LAYOUTS[name]
    files = generate_dataset(
        tmp_path / "data", n_files=N_FILES, n_events=N_EVENTS, seed=1, progress=False, layout=layout
    )
    started = time.monotonic()
    summary = run_notebook(
        NOTEBOOKS / name,
        tmp_path,
        params={"DATA_FILES": [str(f) for f in files]},
        report=[*report, "IS_DEMO"],
    )
    elapsed = time.monotonic() - started
    print(f"{name} executed in {elapsed:.1f} s")  # shown with pytest -s / -rP

    assert summary["errors"] == []
    assert summary["unexecuted"] == []
    assert summary["images"] >= 1, "the notebook drew no plot"
    result = summary["result"]
    assert result is not None, "the appended result cell printed nothing"
    assert result["IS_DEMO"] is True  # plots are labelled as generated data
    assert elapsed < TIME_LIMIT, f"{name} took {elapsed:.0f} s"
    return result


def assert_every_cut_removes_events(flow: dict[str, int]) -> None:
    """Each selection step keeps fewer events than the one before it.

    A cut that is always true (e.g. a crack veto written with ``or``) would not.
    """
    counts = list(flow.values())
    assert all(after < before for before, after in zip(counts[:-1], counts[1:], strict=True)), flow


def test_every_notebook_is_tested():
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == set(NOTEBOOK_LAYOUTS)
    assert set(NOTEBOOK_LAYOUTS.values()) <= set(LAYOUTS)


def test_hyy_analysis_finds_the_higgs_peak(tmp_path):
    result = execute_on_demo_data(
        "HyyAnalysis.ipynb",
        tmp_path,
        report=["fitted_mass", "fitted_mass_err", "significance", "cut_flow", "dask_hist"],
    )
    # no Dask Gateway here: the optional section says so and skips itself (tests/test_dask.py
    # runs it on a real gateway)
    assert result["dask_hist"] is None
    assert abs(result["fitted_mass"] - 125.0) < 1.5, result
    assert 0.0 < result["fitted_mass_err"] < 1.0, result
    assert math.isfinite(result["significance"]) and result["significance"] > 5.0, result

    flow = list(result["cut_flow"].values())
    assert flow[0] == flow[1] == N_FILES * N_EVENTS  # every generated event has two photons
    assert_every_cut_removes_events(dict(list(result["cut_flow"].items())[1:]))


def test_zll_analysis_finds_the_z_peak_in_both_channels(tmp_path):
    result = execute_on_demo_data(
        "ZllAnalysis.ipynb",
        tmp_path,
        report=[
            "fitted_mass_ee",
            "fitted_mass_ee_err",
            "fitted_mass_mumu",
            "fitted_mass_mumu_err",
            "resolution_ee",
            "resolution_mumu",
            "cut_flow",
        ],
    )
    for channel in ("ee", "mumu"):
        assert abs(result[f"fitted_mass_{channel}"] - 91.2) < 1.0, result
        assert 0.0 < result[f"fitted_mass_{channel}_err"] < 0.5, result
        # the fitted Gaussian part is the detector resolution: a GeV or two, not the Z width
        assert 0.3 < result[f"resolution_{channel}"] < 4.0, result
    assert result["cut_flow"]["all events"] == N_FILES * N_EVENTS
    assert_every_cut_removes_events(result["cut_flow"])


def test_hzz4l_analysis_finds_the_higgs_peak(tmp_path):
    result = execute_on_demo_data(
        "HZZ4lAnalysis.ipynb",
        tmp_path,
        report=["fitted_mass", "fitted_mass_err", "fitted_width", "significance", "cut_flow"],
    )
    assert abs(result["fitted_mass"] - 125.0) < 1.5, result
    assert 0.0 < result["fitted_mass_err"] < 1.0, result
    assert 0.3 < result["fitted_width"] < 5.0, result  # four-lepton mass resolution
    assert math.isfinite(result["significance"]) and result["significance"] > 5.0, result
    assert result["cut_flow"]["all events"] == N_FILES * N_EVENTS
    assert_every_cut_removes_events(result["cut_flow"])


def test_wlnu_analysis_finds_the_transverse_mass_edge(tmp_path):
    result = execute_on_demo_data(
        "WlnuAnalysis.ipynb",
        tmp_path,
        report=[
            "mt_edge",
            "mt_edge_err",
            "mt_resolution",
            "mt_half_max",
            "cut_flow",
            "n_plus",
            "n_minus",
        ],
    )
    # The W mass enters the transverse mass only through the position of the Jacobian edge.
    # The notebook fits that edge with the shape of a W at rest, smeared by a Gaussian: that
    # simple model ignores the W's own width and transverse motion, which shift the fitted
    # edge by about a GeV on these data (the statistical error is ~0.2 GeV). 2.5 GeV keeps
    # room for that while still failing for the usual mistakes, which move the edge by tens
    # of GeV: the lepton pT instead of mT (edge at m_W/2), a lost factor 2 under the root
    # (edge at m_W/sqrt(2) = 57 GeV), or cos(dphi) with the wrong sign.
    assert abs(result["mt_edge"] - 80.4) < 2.5, result
    assert 0.0 < result["mt_edge_err"] < 1.0, result
    # the smearing of the edge is the missing-pT resolution: several GeV, not zero, not 20
    assert 1.0 < result["mt_resolution"] < 15.0, result
    # the naive half-maximum point lies above the true edge, by about the resolution
    assert result["mt_edge"] < result["mt_half_max"] < result["mt_edge"] + 15.0, result
    # more W+ than W-: the proton holds two u quarks and one d quark
    assert 1.1 < result["n_plus"] / result["n_minus"] < 2.0, result
    assert result["cut_flow"]["all events"] == N_FILES * N_EVENTS


# --- the data-access function: same order of sources in every notebook -------


def _data_access_cell(name: str) -> str:
    cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    found = [s for s in sources if "def find_input_files(" in s]
    assert len(found) == 1, f"{name}: expected one cell defining find_input_files"
    return found[0]


def _fake_module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


@pytest.mark.parametrize("name", sorted(NOTEBOOK_LAYOUTS))
def test_static_structure(name):
    """Parameters cell first, DID of the right layout, one data function, saved without outputs."""
    nb = json.loads((NOTEBOOKS / name).read_text())
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    first = code_cells[0]
    assert first["metadata"].get("tags") == ["parameters"]
    namespace: dict = {}
    exec("".join(first["source"]), namespace)  # noqa: S102 - our own notebook's parameters
    assert namespace["DATA_FILES"] is None
    assert namespace["DID"] == f"opendata:demo.{NOTEBOOK_LAYOUTS[name]}"
    tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code_cells)
    _data_access_cell(name)


@pytest.mark.parametrize("name", sorted(NOTEBOOK_LAYOUTS))
def test_data_sources_are_tried_in_order(name, tmp_path, monkeypatch, capsys):
    """DATA_FILES, then lakehub.fetch, then Rucio (RUCIO_CONFIG), then atlasopenmagic.

    The data-access cell is executed here, in the dev environment, with stand-ins for
    lakehub, rucio and atlasopenmagic; nothing is downloaded.
    """
    local = tmp_path / "given.root"
    local.write_bytes(b"")
    cached = [str(tmp_path / "cached.root")]
    downloaded = str(tmp_path / "data" / "opendata" / "demo.root")
    calls: list[tuple] = []

    def fetch(did):
        calls.append(("lakehub.fetch", did))
        return cached

    class DownloadClient:
        def download_dids(self, items):
            calls.append(("rucio", items[0]["did"]))
            return [{"dest_file_paths": [downloaded, downloaded + ".log"]}]

    def get_urls(key, skim, protocol, cache):
        calls.append(("atlasopenmagic", key, skim, protocol))
        return [f"https://example.org/{skim}/{i}.root" for i in range(10)]

    class CacheUnavailable(RuntimeError):
        pass

    cache = _fake_module("lakehub.cache", CacheUnavailable=CacheUnavailable)
    monkeypatch.setitem(sys.modules, "lakehub", _fake_module("lakehub", fetch=fetch, cache=cache))
    rucio = _fake_module("rucio.client.downloadclient", DownloadClient=DownloadClient)
    monkeypatch.setitem(sys.modules, "rucio.client.downloadclient", rucio)
    monkeypatch.setitem(
        sys.modules,
        "atlasopenmagic",
        _fake_module("atlasopenmagic", set_release=lambda release: None, get_urls=get_urls),
    )
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    monkeypatch.setenv("RUCIO_CONFIG", str(tmp_path / "rucio.cfg"))

    did = f"opendata:demo.{NOTEBOOK_LAYOUTS[name]}"
    namespace = {"DID": did, "DATA_FILES": [str(local)], "os": os, "Path": Path, "uproot": uproot}
    exec(_data_access_cell(name), namespace)  # noqa: S102 - our own notebook's code
    assert "DATA_FILES" in capsys.readouterr().out  # the chosen source is printed
    find = namespace["find_input_files"]

    # 1. explicit files win over everything
    assert find([str(local)], did)[0] == [str(local)]
    assert calls == []
    with pytest.raises(FileNotFoundError):
        find([str(tmp_path / "missing.root")], did)
    # 2. the shared cache, when lakehub.fetch exists
    files, source, options = find(None, did)
    assert files == cached and "lakehub.fetch" in source and options == {}
    assert calls == [("lakehub.fetch", did)]

    # ... whose errors stop the search, except "no cache in this session"
    def refuse(did):
        raise RuntimeError(f"{did}: no such dataset")

    monkeypatch.setitem(sys.modules, "lakehub", _fake_module("lakehub", fetch=refuse, cache=cache))
    with pytest.raises(RuntimeError, match="no such dataset"):
        find(None, did)

    def unavailable(did):
        raise CacheUnavailable("no shared cache in this session")

    lakehub = _fake_module("lakehub", fetch=unavailable, cache=cache)
    monkeypatch.setitem(sys.modules, "lakehub", lakehub)
    files, source, _ = find(None, did)
    assert files == [downloaded] and "Rucio" in source
    # 3. Rucio also when lakehub has no fetch, or there is no lakehub at all
    monkeypatch.setitem(sys.modules, "lakehub", _fake_module("lakehub"))
    assert find(None, did)[0] == [downloaded]
    monkeypatch.setitem(sys.modules, "lakehub", None)  # import lakehub raises ImportError
    assert find(None, did)[0] == [downloaded]
    assert calls[1:] == [("rucio", did)] * 3
    # 4. the public release, without Rucio
    monkeypatch.delenv("RUCIO_CONFIG")
    calls.clear()
    files, source, options = find(None, did)
    assert calls[0][0] == "atlasopenmagic" and calls[0][1] == "data" and calls[0][3] == "https"
    skim = calls[0][2]
    assert skim == LAYOUTS[NOTEBOOK_LAYOUTS[name]].skim
    assert 0 < len(files) < 10 and all(f.startswith("https://") for f in files)
    assert "handler" in options and skim in source
