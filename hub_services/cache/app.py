"""The cache service's HTTP API (a JupyterHub-managed service).

Callers authenticate with their JupyterHub API token (``Authorization: token ...``); a
session's token carries the scope ``access:services!service=lakehub-cache``.  Sessions
also send their Rucio token (``X-Rucio-Token``) so the service can ask Rucio whether the
person may read the DID before it downloads anything with its own identity.

    POST /api/fetch      {"did": "scope:name"}          -> 202 {"job": ID, "files": [...]}
    GET  /api/jobs/ID                                    -> progress and, when done, paths
    POST /api/pin        {"did": ...}          (admins)  -> never evict these files
    GET  /api/stats                            (admins)  -> transfers, bytes, usage
    GET  /api/usage[?course=NAME]  (admins; a course's instructors) -> bytes per user, DID
    GET  /api/health

    python -m hub_services.cache.app --config cache-service.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from jupyterhub.services.auth import HubAuth
from tornado import web

from hub_services.cache.layout import DID, BadDID, parse_did
from hub_services.cache.rucio import (
    CacheRucio,
    NotAllowed,
    Replica,
    RucioDown,
    RucioSettings,
    UnknownDID,
)
from hub_services.cache.store import CacheStore, TransferFailed
from hub_services.cache.usage import UsageLedger
from hub_services.hub_auth import HubJSONHandler, service_hub_auth
from hub_services.lifecycle import run_until_stopped
from lakehub.contract import CACHE_SERVICE, CACHE_USAGE_PATH, course_group, instructors_group

log = logging.getLogger("lakehub.cache")
ADMIN_SCOPES = {"admin:users", "admin:servers"}
JOB_TTL = 3600


@dataclass
class FileState:
    replica: Replica
    present: bool = False  # already in the cache when the job started
    state: str = "waiting"  # waiting | transferring | done | failed
    error: str | None = None


@dataclass
class Job:
    id: str
    owner: str
    did: DID
    files: list[FileState]
    created: float = field(default_factory=time.time)
    task: asyncio.Task | None = None
    counted: bool = False  # a user's fetch: its bytes go into the usage ledger

    @property
    def state(self) -> str:
        states = {f.state for f in self.files}
        if states <= {"done"}:
            return "done"
        if "failed" in states and states <= {"done", "failed"}:
            return "failed"
        return "running"


class Service:
    """Jobs on top of the store; one per process."""

    def __init__(
        self,
        store: CacheStore,
        rucio: CacheRucio,
        max_parallel: int,
        ledger: UsageLedger | None = None,
    ):
        self.store = store
        self.rucio = rucio
        self.ledger = ledger
        self.jobs: dict[str, Job] = {}
        self.slots = asyncio.Semaphore(max_parallel)

    def describe(self, job: Job) -> dict:
        files = []
        for f in job.files:
            progress = self.store.progress(f.replica.did)
            files.append(
                {
                    "did": str(f.replica.did),
                    "bytes": f.replica.bytes,
                    "done": f.replica.bytes if f.state == "done" else (progress or (0, 0))[0],
                    "state": f.state,
                    "present": f.present,
                    "path": str(self.store.path(f.replica.did)) if f.state == "done" else None,
                    "error": f.error,
                }
            )
        return {"job": job.id, "did": str(job.did), "state": job.state, "files": files}

    async def _one(self, f: FileState) -> None:
        if f.present and self.store.cached(f.replica.did) is not None:
            if f.replica.on_cache_rse or f.replica.did in self.store.registered:
                f.state = "done"  # already there: no transfer slot, no Rucio call
                return
        async with self.slots:
            f.state = "transferring"
            try:
                await self.store.ensure(f.replica)
                f.state = "done"
            except TransferFailed as exc:
                f.state, f.error = "failed", str(exc)
            except Exception as exc:  # one file's trouble must not kill the job silently
                f.state, f.error = "failed", f"{type(exc).__name__}: {exc}"
                log.exception("fetching %s failed", f.replica.did)

    def start(self, owner: str, did: DID, replicas: list[Replica], counted: bool = False) -> Job:
        self._forget_old_jobs()
        files = [FileState(r, present=self.store.path(r.did).exists()) for r in replicas]
        job = Job(secrets.token_hex(8), owner, did, files, counted=counted)
        job.task = asyncio.create_task(self._run(job))
        self.jobs[job.id] = job
        return job

    async def _run(self, job: Job) -> None:
        await asyncio.gather(*(self._one(f) for f in job.files))
        if job.counted and self.ledger is not None and job.state == "done":
            self.ledger.count(job.owner, str(job.did), sum(f.replica.bytes for f in job.files))
            try:
                await asyncio.to_thread(self.ledger.save)
            except OSError as exc:
                log.warning("cannot save the usage ledger: %s", exc)

    def _forget_old_jobs(self) -> None:
        cutoff = time.time() - JOB_TTL
        for key in [k for k, j in self.jobs.items() if j.created < cutoff and j.state != "running"]:
            del self.jobs[key]

    async def fulfil_rules_forever(self, every: float) -> None:
        """Act as the transfer agent of the cache RSE: bring in what rules wait for."""
        while True:
            try:
                for did in await self.rucio.files_waiting_for_rules():
                    for rep in await self.rucio.replicas(did):
                        self.start("rucio-rule", rep.did, [rep])
            except (RucioDown, UnknownDID) as exc:
                log.warning("rule check skipped: %s", exc)
            except Exception:
                log.exception("rule check failed")
            await asyncio.sleep(every)


class BaseHandler(HubJSONHandler):
    service_name = CACHE_SERVICE

    @property
    def service(self) -> Service:
        return self.settings["service"]

    @property
    def is_admin(self) -> bool:
        return bool(ADMIN_SCOPES & set(self.current_user.get("scopes", [])))

    @property
    def caller(self) -> str:
        return self.current_user["name"]

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish({"error": message})

    def body(self) -> dict:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body must be JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return data


# what a caller is told when the DID or Rucio is the problem
ERROR_STATUS = {BadDID: 400, NotAllowed: 403, UnknownDID: 404, RucioDown: 503}


def error_status(exc: Exception) -> int:
    return next(status for kind, status in ERROR_STATUS.items() if isinstance(exc, kind))


class FetchHandler(BaseHandler):
    @web.authenticated
    async def post(self) -> None:
        data = self.body()
        try:
            did = parse_did(data.get("did", ""))
            if not self.is_admin:
                token = self.request.headers.get("X-Rucio-Token", "").strip()
                if not token:
                    return self.fail(400, "send your Rucio token in X-Rucio-Token")
                await self.service.rucio.check_readable(did, token)
            replicas = await self.service.rucio.replicas(did)
        except tuple(ERROR_STATUS) as exc:
            return self.fail(error_status(exc), str(exc))
        if not replicas:
            return self.fail(404, f"{did} has no files")
        counted = self.current_user.get("kind", "user") == "user"
        job = self.service.start(self.caller, did, replicas, counted=counted)
        self.set_status(202)
        self.finish(self.service.describe(job))


class JobHandler(BaseHandler):
    @web.authenticated
    def get(self, job_id: str) -> None:
        job = self.service.jobs.get(job_id)
        if job is None or (job.owner != self.caller and not self.is_admin):
            return self.fail(404, "no such job")
        self.finish(self.service.describe(job))


class PinHandler(BaseHandler):
    @web.authenticated
    async def post(self) -> None:
        if not self.is_admin:
            return self.fail(403, "only hub admins may pin datasets")
        try:
            did = parse_did(self.body().get("did", ""))
            replicas = await self.service.rucio.replicas(did)
        except tuple(ERROR_STATUS) as exc:
            return self.fail(error_status(exc), str(exc))
        self.service.store.pinned |= {str(r.did) for r in replicas}
        self.finish({"pinned": sorted(str(r.did) for r in replicas)})


class StatsHandler(BaseHandler):
    @web.authenticated
    def get(self) -> None:
        if not self.is_admin:
            return self.fail(403, "only hub admins may read the cache statistics")
        store = self.service.store
        self.finish(
            {
                **store.stats.as_dict(),
                "usage_bytes": store.usage(),
                "quota_bytes": store.quota,
                "files": len(store.index),
                "pinned": sorted(store.pinned),
                "in_flight": sorted(str(d) for d in store.inflight),
            }
        )


class UsageHandler(BaseHandler):
    """Bytes served per user and DID: every user's for admins; for a course's
    instructors (``?course=NAME``), those of the course's students only."""

    @web.authenticated
    async def get(self) -> None:
        ledger = self.service.ledger
        course = self.get_argument("course", None)
        if not self.is_admin:
            groups = set(self.current_user.get("groups") or [])
            if course is None or instructors_group(course) not in groups:
                which = f"of course {course}" if course else "of a course (?course=NAME)"
                return self.fail(
                    403,
                    f"{self.caller} may not read the cache's usage: only hub admins and"
                    f" the instructors {which} may",
                )
        users = None if course is None else await self.members(course)
        self.finish({"course": course, "users": ledger.view(users) if ledger else {}})

    async def members(self, course: str) -> set[str]:
        """The course's students, from the hub (the service's role grants read:groups)."""
        url = f"{self.hub_auth.api_url}/groups/{course_group(course)}"
        headers = {"Authorization": f"token {self.hub_auth.api_token}"}
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.get(url, headers=headers)
        if r.status_code == 404:
            return set()
        if r.status_code != 200:
            raise web.HTTPError(502, f"the hub did not list course {course}: HTTP {r.status_code}")
        return set(r.json().get("users", []))


class HealthHandler(web.RequestHandler):
    def get(self) -> None:
        self.finish({"ok": True})


def make_app(service: Service, hub_auth: HubAuth, prefix: str = "/") -> web.Application:
    """Routes answer at ``/api/...`` (direct) and under the hub's service prefix
    (``/services/lakehub-cache/api/...``, through the proxy)."""
    routes = [
        (r"api/fetch", FetchHandler),
        (r"api/jobs/([0-9a-f]+)", JobHandler),
        (r"api/pin", PinHandler),
        (r"api/stats", StatsHandler),
        (CACHE_USAGE_PATH, UsageHandler),
        (r"api/health", HealthHandler),
        (r"?", HealthHandler),
    ]
    prefixes = sorted({"/", prefix.rstrip("/") + "/"})
    return web.Application(
        [(p + pattern, handler) for p in prefixes for pattern, handler in routes],
        service=service,
        hub_auth=hub_auth,
        login_url=None,
    )


def load_config(path: Path) -> dict:
    return json.loads(path.read_text())


async def serve(config: dict) -> None:
    settings = RucioSettings(
        **{**config["rucio"], "password_file": Path(config["rucio"]["password_file"])}
    )
    rucio = CacheRucio(settings)
    store = CacheStore(
        root=Path(config["root"]),
        rucio=rucio,
        index_path=Path(config["index"]),
        quota_bytes=int(config["quota_bytes"]),
        pinned=set(),
        rate_bps=config.get("rate_bps"),
    )
    await asyncio.to_thread(store.prepare)
    ledger = UsageLedger(Path(config["index"]).with_name("usage.json"))
    await asyncio.to_thread(ledger.load)
    service = Service(store, rucio, int(config.get("max_parallel", 4)), ledger)
    hub_auth = service_hub_auth(CACHE_SERVICE, cache_max_age=60)
    app = make_app(service, hub_auth, os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/"))
    # loopback for the local stack; the chart sets 0.0.0.0 so its Service can reach the pod
    app.listen(int(config["port"]), address=config.get("address", "127.0.0.1"))
    for did_text in config.get("pinned", []):
        asyncio.create_task(_pin_at_start(service, did_text))
    log.info("cache service on 127.0.0.1:%s, cache %s", config["port"], config["root"])
    await service.fulfil_rules_forever(float(config.get("rule_poll_seconds", 10)))


async def _pin_at_start(service: Service, did_text: str) -> None:
    try:
        replicas = await service.rucio.replicas(parse_did(did_text))
        service.store.pinned |= {str(r.did) for r in replicas}
    except (BadDID, UnknownDID, RucioDown) as exc:
        log.warning("could not pin %s: %s", did_text, exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="lakehub shared dataset cache service")
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[lakehub-cache] %(message)s")
    try:
        config = load_config(args.config)
    except (OSError, ValueError) as exc:
        print(f"lakehub-cache: cannot read {args.config}: {exc}", file=sys.stderr)
        return 2
    return run_until_stopped(serve(config), log)


if __name__ == "__main__":
    raise SystemExit(main())
