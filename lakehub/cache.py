"""Read datasets through the class's shared cache.

    from lakehub import fetch
    paths = fetch("opendata:demo.GamGam")      # local paths in the read-only cache

The first person to ask for a dataset triggers one download for everybody; later
callers get the same files at once.  A progress bar shows the bytes while you wait.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from lakehub.contract import BEARER_TOKEN_FILE, ENV_CACHE_URL


class CacheError(RuntimeError):
    """The cache could not provide the dataset; the message says why."""


class DatasetNotFound(CacheError):
    pass


class NoPermission(CacheError):
    pass


class RucioUnavailable(CacheError):
    pass


class CacheUnavailable(CacheError):
    pass


_ERRORS = {400: CacheError, 403: NoPermission, 404: DatasetNotFound, 503: RucioUnavailable}


def _settings(
    url: str | None, token: str | None, rucio_token: str | None
) -> tuple[str, dict[str, str]]:
    """Where the cache is and who is asking; a session's environment has all of it."""
    url = url or os.environ.get(ENV_CACHE_URL)
    token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not url or not token:
        raise CacheUnavailable(
            f"no shared cache in this session ({ENV_CACHE_URL} or JUPYTERHUB_API_TOKEN unset)"
        )
    headers = {"Authorization": f"token {token}"}
    if rucio_token is None:
        token_file = os.environ.get(BEARER_TOKEN_FILE)
        if token_file and Path(token_file).is_file():
            rucio_token = Path(token_file).read_text().strip()
    if rucio_token:
        headers["X-Rucio-Token"] = rucio_token
    return url.rstrip("/"), headers


def _raise_for(response: httpx.Response, did: str) -> None:
    if response.status_code < 300:
        return
    try:
        message = response.json().get("error", response.text)
    except ValueError:
        message = response.text
    kind = _ERRORS.get(response.status_code, CacheError)
    raise kind(f"{did}: {message}")


def fetch(
    did: str,
    *,
    progress: bool = True,
    timeout: float = 3600.0,
    url: str | None = None,
    token: str | None = None,
    rucio_token: str | None = None,
) -> list[str]:
    """Local paths of every file of ``did`` (a file, dataset or container) in the cache.

    In a session nothing but the DID is needed; ``url``, ``token`` (a JupyterHub API
    token) and ``rucio_token`` are for scripts running elsewhere.
    """
    url, headers = _settings(url, token, rucio_token)
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            response = client.post("/api/fetch", json={"did": did})
            _raise_for(response, did)
            job = response.json()
            job = _wait(client, job, did, progress, timeout)
    except httpx.HTTPError as exc:
        raise CacheUnavailable(f"the cache service at {url} did not answer ({exc})") from None
    failed = [f for f in job["files"] if f["state"] == "failed"]
    if failed:
        details = "; ".join(f"{f['did']}: {f['error']}" for f in failed)
        raise CacheError(f"{did}: {len(failed)} file(s) could not be cached: {details}")
    return [f["path"] for f in job["files"]]


def _wait(client: httpx.Client, job: dict, did: str, progress: bool, timeout: float) -> dict:
    bar = None
    deadline = time.monotonic() + timeout
    try:
        while job["state"] == "running":
            if progress and bar is None:
                from tqdm import tqdm

                total = sum(f["bytes"] for f in job["files"])
                bar = tqdm(total=total, unit="B", unit_scale=True, desc=did, leave=False)
            if bar is not None:
                bar.n = sum(f["done"] for f in job["files"])
                bar.refresh()
            if time.monotonic() > deadline:
                raise CacheError(f"{did}: still downloading after {timeout:.0f} s")
            time.sleep(0.5)
            response = client.get(f"/api/jobs/{job['job']}")
            _raise_for(response, did)
            job = response.json()
    finally:
        if bar is not None:
            bar.close()
    return job
