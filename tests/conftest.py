from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from testkit.harness import temporary_stack

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


def run_deploy_script(command: str, **env: str) -> subprocess.CompletedProcess:
    """``helm/deploy.sh COMMAND`` as `make` runs it, with extra environment."""
    return subprocess.run(
        ["bash", str(REPO_ROOT / "helm" / "deploy.sh"), command],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **env},
        cwd=REPO_ROOT,
    )


@pytest.fixture(scope="session")
def deploy_script():
    return run_deploy_script


@pytest.fixture(scope="session")
def chart(helm) -> Path:
    """helm/lakehub with its dependencies (z2jh 4.4.0, dask-gateway) in charts/, put there
    by ``helm/deploy.sh dependencies``: from the archives in $LAKEHUB_CHARTS (CI sets it),
    else downloaded from the chart repositories."""
    done = run_deploy_script("dependencies")
    assert done.returncode == 0, f"helm/deploy.sh dependencies failed:\n{done.stderr}"
    return CHART
