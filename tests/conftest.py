from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from localstack.harness import temporary_stack

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART = REPO_ROOT / "helm" / "lakehub"


def pytest_collection_modifyitems(items):
    """The leak scan looks at what every other test left behind: run it last."""
    items.sort(key=lambda item: item.get_closest_marker("security") is not None)


@pytest.fixture(scope="session")
def local_stack():
    """The real embedded stack (Rucio + JupyterHub + proxy + issuer) for the session.

    Runs as root in CI so each hub user gets a system account of their own; the
    isolation assertions depend on that.  Everything started is stopped by PID at the
    end, also when starting failed half-way.
    """
    with temporary_stack() as stack:
        yield stack


# --- helm and the staged chart (tests/test_chart.py, tests/test_k8s.py) -----------------


def dependency_version(name: str) -> str:
    """The version helm/lakehub/Chart.yaml pins for one of its dependencies."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    return next(d["version"] for d in chart["dependencies"] if d["name"] == name)


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> list[str]:
    """The helm command, with its own config/cache folders (the user's stay untouched)."""
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "ensure-helm.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, f"scripts/ensure-helm.sh failed:\n{done.stderr}"
    binary = done.stdout.strip().splitlines()[-1]
    print(f"helm: {binary} ({time.monotonic() - started:.1f} s to ensure)")
    home = tmp_path_factory.mktemp("helm-home")
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        os.environ[name] = str(home / name.lower())
    return [binary]


@pytest.fixture(scope="session")
def reference() -> Path | None:
    where = os.environ.get("LAKEHUB_Z2JH_REFERENCE")
    if where and Path(where, "z2jh-4.4.0-values.schema.yaml").is_file():
        return Path(where)
    return None


@pytest.fixture(scope="session")
def chart(tmp_path_factory, reference) -> Path:
    """helm/lakehub with a stand-in for the z2jh 4.4.0 dependency (no templates)."""
    staged = tmp_path_factory.mktemp("chart") / "lakehub"
    shutil.copytree(CHART, staged, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    standin = staged / "charts" / "jupyterhub"
    standin.mkdir(parents=True)
    meta = {"apiVersion": "v2", "name": "jupyterhub", "version": "4.4.0"}
    (standin / "Chart.yaml").write_text(yaml.safe_dump(meta), encoding="utf-8")
    # the dask-gateway dependency: a stand-in without templates (nothing to download)
    dask = staged / "charts" / "dask-gateway"
    dask.mkdir()
    meta = {
        "apiVersion": "v2",
        "name": "dask-gateway",
        "version": dependency_version("dask-gateway"),
    }
    (dask / "Chart.yaml").write_text(yaml.safe_dump(meta), encoding="utf-8")
    if reference is not None:
        schema = yaml.safe_load((reference / "z2jh-4.4.0-values.schema.yaml").read_text())
        (standin / "values.schema.json").write_text(json.dumps(schema), encoding="utf-8")
        shutil.copy(reference / "z2jh-4.4.0-values.yaml", standin / "values.yaml")
    return staged
