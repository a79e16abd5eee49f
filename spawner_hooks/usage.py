"""The hub-side usage collector of the local stack: servers' starts and stops, and the CPU
time and peak memory of each server's processes, appended to the sessions record
(:mod:`courses.usage`) for the usage report.

It runs in the hub's own event loop.  :func:`install` wraps whatever ``pre_spawn_hook``
and ``post_stop_hook`` the configuration already has: after the pre-spawn hook the
server is watched; one sampling task reads ``/proc`` every few seconds (in a thread) for
all watched servers, finds each one's process id once ``LocalProcessSpawner`` has started
it, records the start (the process's own start time) and follows the server's process
tree (the kernels and terminals are its children); the post-stop hook records the stop
with the figures.  A server whose process ends without the hub stopping it is recorded
as stopped at the next round.

What the figures are:

* CPU time: user plus system time of every process in the tree, including the children
  they already reaped (``cutime``/``cstime``), so kernels that exited still count;
  never decreasing within a session.
* Peak memory: the largest resident set size of the whole tree at one sample.

On Kubernetes a server is a pod on another machine: :mod:`spawner_hooks.kube_usage` is
the same collector (:class:`Collector`) with the pods' figures from the kubelets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from courses.usage import append

log = logging.getLogger("lakehub.usage")
PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    cpu_ticks: int  # utime + stime + cutime + cstime
    rss_pages: int
    started_ticks: int = 0  # since boot


def parse_stat(text: str) -> ProcStat:
    """One ``/proc/<pid>/stat`` line (the command may hold spaces and parentheses, so
    the fields are counted from the last ``)``)."""
    head, _, rest = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = rest.split()
    # fields[0] is the state (field 3 of proc(5)): utime is field 14, starttime 22, rss 24
    cpu = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ProcStat(pid, int(fields[1]), cpu, int(fields[21]), int(fields[19]))


def boot_time(proc: Path = PROC) -> float:
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime line in /proc/stat")


def read_stats(proc: Path = PROC) -> dict[int, ProcStat]:
    """Every process's stat (blocking; processes that end meanwhile are skipped)."""
    out: dict[int, ProcStat] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            stat = parse_stat((proc / entry.name / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        out[stat.pid] = stat
    return out


def tree_figures(stats: dict[int, ProcStat], root: int) -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of ``root`` and its descendants, or None if ``root``
    is gone (pure)."""
    if root not in stats:
        return None
    children: dict[int, list[int]] = {}
    for s in stats.values():
        children.setdefault(s.ppid, []).append(s.pid)
    ticks = rss = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        ticks += stats[pid].cpu_ticks
        rss += stats[pid].rss_pages
        todo += children.get(pid, [])
    return ticks / TICKS, rss * PAGE


@dataclass
class Watch:
    """One server the collector follows."""

    spawner: object
    session: str
    until: float  # give up waiting for its process after this (monotonic)
    pid: int = 0  # 0 until the spawner has started the process
    cpu: float = 0.0
    peak: int = 0
    written: float = 0.0  # when the last line was written (monotonic)

    @property
    def base(self) -> dict:
        user, server = self.spawner.user.name, self.spawner.name
        return {"session": self.session, "user": user, "server": server}

    def figures(self, event: str) -> dict:
        return {
            **self.base,
            "event": event,
            "t": time.time(),
            "cpu_s": round(self.cpu, 3),
            "peak_rss": self.peak,
        }


class Collector:
    """What every usage collector shares (one per hub): the servers it watches, one
    sampling task that ends when none is left, and the writes to the record.  A subclass
    says how one round finds its servers' figures (:meth:`sample_once`) and whether a
    server's start was recorded (:meth:`recorded`)."""

    watch_class: type[Watch] = Watch

    def __init__(self, record: Path, every: float, write_every: float, starting_every: float):
        self.record = record
        self.every = every
        self.starting_every = starting_every
        self.write_every = write_every
        self.watching: dict[tuple[str, str], Watch] = {}
        self.sampler: asyncio.Task | None = None

    def recorded(self, w: Watch) -> bool:
        """Was the start of this server written (its process, or its pod, seen)?"""
        return bool(w.pid)

    def watch(self, spawner) -> None:
        limit = float(getattr(spawner, "start_timeout", 180) or 180)
        w = self.watch_class(spawner, secrets.token_hex(8), time.monotonic() + limit)
        self.watching[(spawner.user.name, spawner.name)] = w
        if self.sampler is None or self.sampler.done():
            self.sampler = asyncio.create_task(self._sample_forever())

    async def stopped(self, spawner) -> None:
        """The server stopped: record it with its last figures."""
        w = self.watching.pop((spawner.user.name, spawner.name), None)
        if w is not None and self.recorded(w):
            await self._write(w.figures("stop"))

    async def _write(self, record: dict) -> None:
        try:
            await asyncio.to_thread(append, self.record, record)
        except OSError as exc:  # the report loses a line; the server is unaffected
            log.warning("lakehub: cannot record usage in %s: %s", self.record, exc)

    async def _sample_forever(self) -> None:
        while self.watching:
            try:
                await self.sample_once()
            except Exception:  # never let the hub's loop see this task fail
                log.exception("lakehub: usage sampling failed")
            # while a server is starting, look often: it must be seen before a short
            # session ends, or its start and stop would go unrecorded
            starting = any(not self.recorded(w) for w in self.watching.values())
            await asyncio.sleep(min(self.every, self.starting_every) if starting else self.every)

    async def sample_once(self) -> None:
        raise NotImplementedError


class UsageCollector(Collector):
    """Follows every server the local hub starts: one read of ``/proc`` per round for
    all servers."""

    def __init__(
        self,
        record: Path,
        every: float = 5.0,
        write_every: float = 300.0,
        starting_every: float = 0.25,
        read: Callable[[], dict[int, ProcStat]] = read_stats,
    ):
        super().__init__(record, every, write_every, starting_every)
        self.read = read

    async def sample_once(self) -> None:
        # the process ids first: a process the table was read without is not yet known
        pids = {key: getattr(w.spawner, "pid", 0) or 0 for key, w in self.watching.items()}
        stats = await asyncio.to_thread(self.read)
        now = time.monotonic()
        for key, pid in pids.items():
            w = self.watching.get(key)
            if w is None:  # stopped meanwhile
                continue
            if not w.pid:
                if not pid or pid not in stats:
                    if now > w.until:  # the spawn never started a process
                        self.watching.pop(key, None)
                    continue
                w.pid, w.written = pid, now
                t = await asyncio.to_thread(boot_time) + stats[pid].started_ticks / TICKS
                await self._write({**w.base, "event": "start", "t": t})
            figures = tree_figures(stats, w.pid)
            if figures is None or pid != w.pid:  # ended without the hub stopping it
                self.watching.pop(key, None)
                await self._write(w.figures("stop"))
                continue
            w.cpu, w.peak = max(w.cpu, figures[0]), max(w.peak, figures[1])
            if now - w.written >= self.write_every:
                w.written = now
                await self._write(w.figures("sample"))


async def _call(hook, spawner) -> None:
    if hook is not None:
        result = hook(spawner)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            await result


def install(section, collector: Collector) -> None:
    """Chain the collector after the ``pre_spawn_hook`` and before the ``post_stop_hook``
    already set on the config section (``c.Spawner`` locally, ``c.KubeSpawner`` on
    clusters; plain functions: traitlets copies config values)."""
    pre = section.pre_spawn_hook if "pre_spawn_hook" in section else None
    post = section.post_stop_hook if "post_stop_hook" in section else None

    async def lakehub_usage_pre_spawn_hook(spawner) -> None:
        await _call(pre, spawner)
        collector.watch(spawner)

    async def lakehub_usage_post_stop_hook(spawner) -> None:
        await collector.stopped(spawner)
        await _call(post, spawner)

    section.pre_spawn_hook = lakehub_usage_pre_spawn_hook
    section.post_stop_hook = lakehub_usage_post_stop_hook
