"""Fill the shared cache before class: ``make warm-cache COURSE=course.yaml``.

    python -m hub_services.cache.warm --course examples/course.demo.yaml [--site SITE]

A course file names the datasets a class will read::

    name: PHYS 101, week 3
    datasets: [opendata:demo.GamGam]
    pin: true          # never evict these while the course runs

Progress is shown per dataset; the summary counts files, bytes, files already present
and failures.  The exit status is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub_services.cache.layout import BadDID, parse_did
from lakehub.contract import ENV_CACHE_URL
from sitefile import SiteError, load_site


class Course(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    datasets: list[str] = Field(min_length=1)
    pin: bool = False

    @field_validator("datasets")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        for did in value:
            parse_did(did)
        return value


def load_course(path: Path) -> Course:
    try:
        return Course.model_validate(yaml.safe_load(path.read_text()))
    except FileNotFoundError:
        raise SystemExit(f"{path}: the course file does not exist") from None
    except (yaml.YAMLError, BadDID) as exc:
        raise SystemExit(f"{path}: {exc}") from None
    except ValidationError as exc:
        lines = [
            f"  - {'.'.join(str(x) for x in e['loc']) or '(top level)'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise SystemExit(f"{path}: problems in the course file\n" + "\n".join(lines)) from None


def warm(course: Course, url: str, token: str, out=sys.stdout) -> dict:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    totals = {"datasets": 0, "files": 0, "bytes": 0, "already_present": 0, "failed": 0}
    headers = {"Authorization": f"token {token}"}
    with (
        httpx.Client(base_url=url, headers=headers, timeout=60) as client,
        Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), transient=False
        ) as progress,
    ):
        for did in course.datasets:
            r = client.post("/api/fetch", json={"did": did})
            if r.status_code != 202:
                progress.console.print(f"[red]{did}: {r.json().get('error', r.text)}")
                totals["failed"] += 1
                continue
            job = r.json()
            task = progress.add_task(did, total=sum(f["bytes"] for f in job["files"]))
            while job["state"] == "running":
                progress.update(task, completed=sum(f["done"] for f in job["files"]))
                time.sleep(0.5)
                job = client.get(f"/api/jobs/{job['job']}").json()
            progress.update(task, completed=sum(f["done"] for f in job["files"]))
            totals["datasets"] += 1
            for f in job["files"]:
                totals["files"] += 1
                totals["bytes"] += f["bytes"]
                totals["already_present"] += f["present"]
                if f["state"] == "failed":
                    totals["failed"] += 1
                    progress.console.print(f"[red]{f['did']}: {f['error']}")
            if course.pin:
                client.post("/api/pin", json={"did": did}).raise_for_status()
    print(
        f"{course.name}: {totals['datasets']} dataset(s), {totals['files']} file(s), "
        f"{totals['bytes'] / 1e6:.1f} MB, {totals['already_present']} already present, "
        f"{totals['failed']} failed" + (", pinned" if course.pin else ""),
        file=out,
    )
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fill the lakehub shared cache before class")
    parser.add_argument("--course", type=Path, required=True)
    parser.add_argument("--site", type=Path, help="site file of the local stack (make up)")
    args = parser.parse_args(argv)
    course = load_course(args.course)
    # in a cluster job: the cache's address and a hub token come from the environment
    if os.environ.get(ENV_CACHE_URL) and os.environ.get("JUPYTERHUB_API_TOKEN"):
        return _run(course, os.environ[ENV_CACHE_URL], os.environ["JUPYTERHUB_API_TOKEN"])
    return _run_local(course, args.site)


def _run_local(course: Course, site_file: Path | None) -> int:
    from sitefile.state import REPO, StackPaths

    site_file = site_file or REPO / "examples" / "site.local.yaml"
    try:
        site = load_site(site_file)
    except SiteError as exc:
        print(exc, file=sys.stderr)
        return 1
    if site.local is None:
        print(
            "warm-cache talks to the local stack; on Kubernetes use the chart's job",
            file=sys.stderr,
        )
        return 1
    paths = StackPaths.default()
    if not paths.admin_token.exists():
        print("the local stack has not been started: run `make up` first", file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{site.local.cache_port}"
    return _run(course, url, paths.admin_token.read_text().strip())


def _run(course: Course, url: str, token: str) -> int:
    try:
        totals = warm(course, url, token)
    except httpx.HTTPError as exc:
        print(
            f"the cache service at {url} did not answer ({exc}); is `make up` running?",
            file=sys.stderr,
        )
        return 1
    return 1 if totals["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
