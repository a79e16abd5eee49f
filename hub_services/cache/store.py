"""Single-flight downloads, publication by atomic rename, and eviction.

A file becomes visible under ``<root>/<scope>/<name>`` only by ``os.replace`` of a fully
written, checksum-verified file from ``<root>/.incoming`` (a root-only folder on the same
file system).  So a reader sees the whole file or nothing, whatever happens to a
transfer.  Concurrent requests for one file share one transfer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hub_services.cache.layout import DID, incoming_dir, published_path
from hub_services.cache.rucio import CacheRucio, Replica, RucioDown
from lakehub.files import atomic_write

log = logging.getLogger("lakehub.cache")


class TransferFailed(RuntimeError):
    pass


class ChecksumMismatch(TransferFailed):
    pass


@dataclass
class Inflight:
    task: asyncio.Task
    total: int
    done: int = 0


@dataclass
class Stats:
    transfers: Counter = field(default_factory=Counter)  # DID text -> completed transfers
    attempts: Counter = field(default_factory=Counter)
    source_bytes: int = 0
    failures: int = 0
    evictions: int = 0

    def as_dict(self) -> dict:
        return {
            "transfers": dict(self.transfers),
            "attempts": dict(self.attempts),
            "source_bytes": self.source_bytes,
            "failures": self.failures,
            "evictions": self.evictions,
        }


def checksum_problem(rep: Replica, result: dict) -> str | None:
    """Compare what the transfer saw with what Rucio holds (pure)."""
    if result.get("bytes") != rep.bytes:
        return f"size {result.get('bytes')} != {rep.bytes} in Rucio"
    if rep.adler32 and result.get("adler32") != rep.adler32.lower().zfill(8):
        return f"adler32 {result.get('adler32')} != {rep.adler32} in Rucio"
    if rep.md5 and result.get("md5") != rep.md5.lower():
        return f"md5 {result.get('md5')} != {rep.md5} in Rucio"
    if not rep.adler32 and not rep.md5:
        return "Rucio holds no checksum for this file; the cache will not publish it unverified"
    return None


def eviction_order(entries: dict[str, dict], protected: set[str], quota: int) -> list[str]:
    """Which files to remove, least recently used first, to get under ``quota`` (pure).

    ``entries`` maps DID text -> {"size", "last_access"}; ``protected`` are never chosen.
    """
    usage = sum(e["size"] for e in entries.values())
    victims = []
    for did, entry in sorted(entries.items(), key=lambda kv: kv[1]["last_access"]):
        if usage <= quota:
            break
        if did in protected:
            continue
        victims.append(did)
        usage -= entry["size"]
    return victims


def open_paths_under(root: Path) -> set[str]:
    """Files under ``root`` that some process on this machine has open (Linux /proc)."""
    prefix = str(root) + os.sep
    found = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith(prefix):
                    found.add(target)
        except OSError:
            continue
    return found


class CacheStore:
    def __init__(
        self,
        root: Path,
        rucio: CacheRucio,
        index_path: Path,
        quota_bytes: int,
        pinned: set[str] | None = None,
        rate_bps: float | None = None,
    ):
        self.root = root
        self.rucio = rucio
        self.index_path = index_path
        self.quota = quota_bytes
        self.pinned = set(pinned or ())  # DID text of files never evicted
        self.rate_bps = rate_bps
        self.inflight: dict[DID, Inflight] = {}
        self.stats = Stats()
        self.index: dict[str, dict] = {}
        self.registered: set[DID] = set()  # known AVAILABLE on the cache RSE
        self._evicting = asyncio.Lock()
        self._saved_at = 0.0

    # -- start-up ----------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the folders, drop half-written leftovers, rebuild the index from disk."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # noqa: S103  students read; only this service writes
        incoming = incoming_dir(self.root)
        incoming.mkdir(exist_ok=True)
        os.chmod(incoming, 0o700)
        for leftover in incoming.iterdir():
            leftover.unlink(missing_ok=True)
        try:
            saved = json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            saved = {}
        index = {}
        for scope_dir in self.root.iterdir():
            if scope_dir.name.startswith(".") or not scope_dir.is_dir():
                continue
            for f in scope_dir.iterdir():
                key = f"{scope_dir.name}:{f.name}"
                st = f.stat()
                index[key] = {
                    "size": st.st_size,
                    "last_access": saved.get(key, {}).get("last_access", st.st_mtime),
                }
        self.index = index
        self._save_index()

    def _save_index(self) -> None:
        atomic_write(self.index_path, json.dumps(self.index, sort_keys=True), 0o600)
        self._saved_at = time.monotonic()

    def cached(self, did: DID) -> Path | None:
        """The published path if the file is in the cache (and note the access)."""
        path = self.path(did)
        if not path.exists():
            return None
        self._touch(did, path, save=False)
        return path

    # -- the main operation --------------------------------------------------------------
    def path(self, did: DID) -> Path:
        return published_path(self.root, did)

    def progress(self, did: DID) -> tuple[int, int] | None:
        f = self.inflight.get(did)
        return (f.done, f.total) if f else None

    async def ensure(self, rep: Replica) -> Path:
        """The published path of ``rep``, downloading it first if needed (single-flight)."""
        path = self.cached(rep.did)
        if path is not None:
            if not rep.on_cache_rse and rep.did not in self.registered:
                await self._register_quietly(rep)
            return path
        flight = self.inflight.get(rep.did)
        if flight is None:
            task = asyncio.create_task(self._transfer(rep))
            flight = self.inflight[rep.did] = Inflight(task, rep.bytes)
            task.add_done_callback(lambda _t, did=rep.did: self.inflight.pop(did, None))
        return await asyncio.shield(flight.task)

    async def _transfer(self, rep: Replica) -> Path:
        key = str(rep.did)
        self.stats.attempts[key] += 1
        if not rep.sources:
            self.stats.failures += 1
            raise TransferFailed(f"{rep.did} has no readable replica outside the cache")
        dest = incoming_dir(self.root) / f"{uuid.uuid4().hex}.part"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub_services.cache.transfer",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        request = {"sources": list(rep.sources), "dest": str(dest), "rate_bps": self.rate_bps}
        proc.stdin.write(json.dumps(request).encode())
        await proc.stdin.drain()
        proc.stdin.close()
        result: dict = {}
        try:
            async for line in proc.stdout:
                msg = json.loads(line)
                if "progress" in msg and rep.did in self.inflight:
                    self.inflight[rep.did].done = msg["progress"]
                else:
                    result = msg
            await proc.wait()
            if proc.returncode != 0 or not result.get("ok"):
                reason = result.get("error") or f"transfer stopped (exit {proc.returncode})"
                raise TransferFailed(f"{rep.did}: {reason}")
            problem = checksum_problem(rep, result)
            if problem:
                raise ChecksumMismatch(f"{rep.did}: {problem}; not published")
            self.stats.source_bytes += result["bytes"]
            path = self.path(rep.did)
            await asyncio.to_thread(_publish, dest, path)
        except BaseException:
            self.stats.failures += 1
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            dest.unlink(missing_ok=True)
            raise
        self.stats.transfers[key] += 1
        log.info("cached %s (%d bytes) from %s", rep.did, result["bytes"], result["source"])
        self._touch(rep.did, path)
        await self._register_quietly(rep)
        try:
            await self.evict()
        except Exception:  # the new file is published; eviction retries after the next one
            log.exception("eviction failed")
        return path

    async def _register_quietly(self, rep: Replica) -> None:
        try:
            await self.rucio.register(rep)
            self.registered.add(rep.did)
        except RucioDown as exc:
            log.warning("could not register %s on the cache RSE yet: %s", rep.did, exc)

    def _touch(self, did: DID, path: Path, save: bool = True) -> None:
        self.index[str(did)] = {"size": path.stat().st_size, "last_access": time.time()}
        # access times only steer eviction: writing them at most every 10 s is enough
        if save or time.monotonic() - self._saved_at > 10:
            self._save_index()

    # -- eviction ------------------------------------------------------------------------
    def usage(self) -> int:
        return sum(e["size"] for e in self.index.values())

    async def evict(self) -> list[str]:
        """Remove least recently used files until the cache fits its quota.

        Never a pinned file, one being written (in flight), one open by any process, or
        one a replication rule on the cache RSE holds.
        """
        if self.usage() <= self.quota:
            return []
        async with self._evicting:
            open_now = await asyncio.to_thread(open_paths_under, self.root)
            protected = set(self.pinned) | {str(d) for d in self.inflight}
            protected |= {k for k in self.index if str(self.path(_did(k))) in open_now}
            removed = []
            for key in eviction_order(self.index, protected, self.quota):
                did = _did(key)
                try:
                    if await self.rucio.locked_by_rule(did):
                        continue
                    await self.rucio.unregister(did)
                except RucioDown as exc:
                    log.warning("eviction paused, Rucio unavailable: %s", exc)
                    break
                self.path(did).unlink(missing_ok=True)
                self.index.pop(key, None)
                self.registered.discard(did)
                self.stats.evictions += 1
                removed.append(key)
                if self.usage() <= self.quota:
                    break
            if removed:
                self._save_index()
                log.info("evicted %d file(s): %s", len(removed), ", ".join(removed))
            return removed


def _did(key: str) -> DID:
    scope, name = key.split(":", 1)
    return DID(scope, name)


def _publish(tmp: Path, final: Path) -> None:
    final.parent.mkdir(exist_ok=True)
    os.chmod(final.parent, 0o755)  # noqa: S103
    os.chmod(tmp, 0o644)
    os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
