"""The cache service's view of Rucio.

* Whether a caller may read a DID is asked of Rucio **with the caller's own token**
  (plain REST with httpx), so Rucio's permissions and existence checks apply as they
  would to the person.
* Everything the cache does as itself (find source replicas, register and remove the
  cache's replicas, look at rules on the cache RSE) uses the service's admin identity
  through rucio-clients, in a one-thread pool: the event loop only awaits.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from hub_services.cache.layout import DID

log = logging.getLogger("lakehub.cache")
SOURCE_SCHEMES = ["file", "https", "http"]


class UnknownDID(LookupError):
    pass


class NotAllowed(PermissionError):
    pass


class RucioDown(ConnectionError):
    pass


@dataclass(frozen=True)
class Replica:
    """One file to cache: its checksums and where it can be read from."""

    did: DID
    bytes: int
    adler32: str | None
    md5: str | None
    sources: tuple[str, ...]
    on_cache_rse: bool


@dataclass(frozen=True)
class RucioSettings:
    rucio_host: str
    auth_host: str
    vo: str
    account: str
    username: str
    password_file: Path
    cache_rse: str
    ca_cert: str | None = None


class CacheRucio:
    def __init__(self, settings: RucioSettings):
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-rucio")
        self._client = None
        self._http = httpx.AsyncClient(
            base_url=settings.rucio_host, timeout=30, verify=settings.ca_cert or True
        )

    # -- as the caller ---------------------------------------------------------------
    async def check_readable(self, did: DID, user_token: str) -> str:
        """Ask Rucio, as the caller, about the DID; return its type (FILE, DATASET, ...)."""
        path = f"/dids/{quote(did.scope, safe='')}/{quote(did.name, safe='')}"
        try:
            r = await self._http.get(path, headers={"X-Rucio-Auth-Token": user_token})
        except httpx.HTTPError as exc:
            raise RucioDown(f"Rucio at {self.settings.rucio_host} did not answer") from exc
        if r.status_code == 404:
            raise UnknownDID(f"Rucio knows no DID {did}")
        if r.status_code in (401, 403):
            raise NotAllowed(f"Rucio refused your token for {did} (HTTP {r.status_code})")
        if r.status_code >= 500:
            raise RucioDown(f"Rucio answered HTTP {r.status_code}")
        r.raise_for_status()
        return r.json().get("type", "FILE")

    # -- as the service --------------------------------------------------------------
    def _admin(self):
        from rucio.client import Client

        if self._client is None:
            s = self.settings
            self._client = Client(
                rucio_host=s.rucio_host,
                auth_host=s.auth_host,
                account=s.account,
                auth_type="userpass",
                creds={"username": s.username, "password": s.password_file.read_text().strip()},
                vo=s.vo,
                ca_cert=s.ca_cert,
                timeout=30,
            )
        return self._client

    async def _call(self, fn, *args):
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, *args)
        except (UnknownDID, NotAllowed, RucioDown):
            raise
        except Exception as exc:
            from rucio.common import exception as rex

            if isinstance(exc, rex.DataIdentifierNotFound):
                raise UnknownDID(str(exc)) from None
            unreachable = (rex.CannotAuthenticate, rex.ServerConnectionException)
            if isinstance(exc, rex.RucioException) and not isinstance(exc, unreachable):
                raise
            self._client = None
            raise RucioDown(
                f"Rucio did not answer the cache service ({type(exc).__name__})"
            ) from None

    def _replicas(self, did: DID) -> list[Replica]:
        cache_rse = self.settings.cache_rse
        found = []
        for r in self._admin().list_replicas(
            [{"scope": did.scope, "name": did.name}], schemes=SOURCE_SCHEMES, all_states=True
        ):
            states = r.get("states", {})
            sources = tuple(
                pfn
                for pfn, meta in sorted(r.get("pfns", {}).items(), key=lambda kv: kv[1]["priority"])
                if meta["rse"] != cache_rse and states.get(meta["rse"]) == "AVAILABLE"
            )
            found.append(
                Replica(
                    did=DID(r["scope"], r["name"]),
                    bytes=int(r["bytes"] or 0),
                    adler32=r.get("adler32"),
                    md5=r.get("md5"),
                    sources=sources,
                    on_cache_rse=states.get(cache_rse) == "AVAILABLE",
                )
            )
        return sorted(found, key=lambda rep: rep.did)

    async def replicas(self, did: DID) -> list[Replica]:
        """The files of a FILE, DATASET or CONTAINER DID with their source replicas."""
        return await self._call(self._replicas, did)

    def _register(self, rep: Replica) -> None:
        from rucio.common.exception import Duplicate

        client = self._admin()
        item = {"scope": rep.did.scope, "name": rep.did.name, "bytes": rep.bytes}
        if rep.adler32:
            item["adler32"] = rep.adler32
        if rep.md5:
            item["md5"] = rep.md5
        try:
            client.add_replicas(self.settings.cache_rse, [item])
        except Duplicate:
            pass
        # a replica created by a rule waits in COPYING: the cache is its transfer agent
        client.update_replicas_states(
            self.settings.cache_rse,
            [{"scope": rep.did.scope, "name": rep.did.name, "state": "A"}],
        )

    async def register(self, rep: Replica) -> None:
        await self._call(self._register, rep)

    def _unregister(self, did: DID) -> None:
        # Rucio's policies leave deleting replicas to its reaper; marking the replica
        # unavailable tells clients (and rucio-jupyterlab) at once that it is gone, and
        # the next fetch marks it available again.
        self._admin().update_replicas_states(
            self.settings.cache_rse, [{"scope": did.scope, "name": did.name, "state": "U"}]
        )

    async def unregister(self, did: DID) -> None:
        await self._call(self._unregister, did)

    def _locked(self, did: DID) -> bool:
        rules = self._admin().list_associated_rules_for_file(did.scope, did.name)
        return any(r.get("rse_expression") == self.settings.cache_rse for r in rules)

    async def locked_by_rule(self, did: DID) -> bool:
        return await self._call(self._locked, did)

    def _waiting(self) -> list[DID]:
        client = self._admin()
        wanted = []
        for rule in client.list_replication_rules(
            {"rse_expression": self.settings.cache_rse, "state": "R"}  # R: replicating
        ):
            for lock in client.list_replica_locks(rule["id"]):
                if lock.get("state") in ("REPLICATING", "STUCK"):
                    wanted.append(DID(lock["scope"], lock["name"]))
        return sorted(set(wanted))

    async def files_waiting_for_rules(self) -> list[DID]:
        """Files that replication rules on the cache RSE are waiting for."""
        return await self._call(self._waiting)

    async def close(self) -> None:
        await self._http.aclose()
        self._pool.shutdown(wait=False, cancel_futures=True)
