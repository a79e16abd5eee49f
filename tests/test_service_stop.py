"""lakehub's hub services stop cleanly.

JupyterHub stops a managed service with SIGINT at every ``make down``, and Kubernetes
stops the services' pods with SIGTERM. Each service must then exit 0 with one line saying
why, with no ``KeyboardInterrupt`` traceback in the hub's log. The real service
processes run here on 127.0.0.1, on their own. The hub they would answer to is not
running: the cache service is given an API URL that nothing listens on, and Rucio is
unreachable, which the cache logs as a skipped rule check.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from localstack.procs import http_ok, wait_until
from testkit.harness import free_ports
from tokens.mint import create_signing_key

REPO_ROOT = Path(__file__).resolve().parent.parent
SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


def _stops_cleanly(proc: subprocess.Popen, sig: signal.Signals, log: Path) -> None:
    """``sig`` ends the service within 30 s: status 0, one line, no traceback."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"still running 30 s after {sig.name}: {log.read_text()[-2000:]}")
    out = log.read_text()
    assert proc.returncode == 0, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    assert f"{sig.name}: stopping" in out, out[-2000:]


def _start(args: list[str], env: dict[str, str], url: str, log: Path) -> subprocess.Popen:
    """The service as its own process, its output in ``log``, once ``url`` answers."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=REPO_ROOT,
            env={**clean, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            http_ok(url),
            timeout=60,
            what=f"{args[0]} answering at {url}",
            alive=lambda: proc.poll() is None,
            log_path=log,
        )
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


@pytest.mark.parametrize("sig", SIGNALS)
def test_the_token_service_stops_on_a_signal_with_one_line_and_no_traceback(tmp_path, sig):
    key = tmp_path / "issuer-key.json"
    create_signing_key(key)
    (port,) = free_ports(1)
    issuer = f"http://127.0.0.1:{port}"
    proc = _start(
        ["hub_services.issuer", "--issuer-url", issuer, "--key", str(key)],
        {},
        f"{issuer}/health",
        tmp_path / "issuer.log",
    )
    _stops_cleanly(proc, sig, tmp_path / "issuer.log")


@pytest.mark.parametrize("sig", SIGNALS)
def test_the_cache_service_stops_on_a_signal_with_one_line_and_no_traceback(tmp_path, sig):
    port, nobody = free_ports(2)
    password = tmp_path / "rucio-password"
    password.write_text("unused")
    password.chmod(0o600)
    config = tmp_path / "cache.json"
    config.write_text(
        json.dumps(
            {
                "rucio": {
                    "rucio_host": f"http://127.0.0.1:{nobody}",
                    "auth_host": f"http://127.0.0.1:{nobody}",
                    "vo": "def",
                    "account": "root",
                    "username": "root",
                    "password_file": str(password),
                    "cache_rse": "LAKEHUB_CACHE",
                },
                "root": str(tmp_path / "cache"),
                "index": str(tmp_path / "state" / "index.json"),
                "quota_bytes": 10**8,
                "port": port,
                "rule_poll_seconds": 1,
            }
        )
    )
    proc = _start(
        ["hub_services.cache.app", "--config", str(config)],
        {
            "JUPYTERHUB_API_TOKEN": "not-used-before-a-request",
            "JUPYTERHUB_API_URL": f"http://127.0.0.1:{nobody}/hub/api",
        },
        f"http://127.0.0.1:{port}/",
        tmp_path / "cache.log",
    )
    _stops_cleanly(proc, sig, tmp_path / "cache.log")
