"""The hub-side usage collector of the local stack: servers' starts and stops, and the CPU
time and peak memory of each server's processes, appended to the sessions record
(:mod:`courses.usage`) for the usage report.

It runs in the hub's own event loop.  :func:`install` wraps whatever ``pre_spawn_hook``
and ``post_stop_hook`` the configuration already has: after the pre-spawn hook, a task
waits for the spawner's process id (``LocalProcessSpawner`` sets it as it starts the
server), records the start and samples the server's process tree every few seconds from
``/proc`` (the kernels and terminals are its children); the post-stop hook ends the task,
which records the stop with the figures.  Reading ``/proc`` runs in a thread.

What the figures are:

* CPU time: user plus system time of every process in the tree, including the children
  they already reaped (``cutime``/``cstime``), so kernels that exited still count;
  never decreasing within a session.
* Peak memory: the largest resident set size of the whole tree at one sample.

On Kubernetes a server is a pod on another machine, so this collector does not apply
there (see docs/instructors.md, "Usage report").
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


def parse_stat(text: str) -> ProcStat:
    """One ``/proc/<pid>/stat`` line (the command may hold spaces and parentheses, so
    the fields are counted from the last ``)``)."""
    head, _, rest = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = rest.split()
    # fields[0] is the state (field 3 of proc(5)); utime is field 14, rss field 24
    ppid = int(fields[1])
    cpu = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ProcStat(pid, ppid, cpu, int(fields[21]))


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
class _Watch:
    session: str
    stop: asyncio.Event
    task: asyncio.Task | None = None


class UsageCollector:
    """Follows every server the hub starts; one per hub."""

    def __init__(
        self,
        record: Path,
        every: float = 5.0,
        write_every: float = 300.0,
        read: Callable[[], dict[int, ProcStat]] = read_stats,
    ):
        self.record = record
        self.every = every
        self.write_every = write_every
        self.read = read
        self.watching: dict[tuple[str, str], _Watch] = {}

    def watch(self, spawner) -> None:
        key = (spawner.user.name, spawner.name)
        old = self.watching.get(key)
        if old is not None:
            old.stop.set()
        w = _Watch(secrets.token_hex(8), asyncio.Event())
        w.task = asyncio.create_task(self._follow(spawner, w))
        self.watching[key] = w

    def stopped(self, spawner) -> None:
        w = self.watching.get((spawner.user.name, spawner.name))
        if w is not None:
            w.stop.set()

    async def _wait(self, w: _Watch, seconds: float) -> None:
        try:
            await asyncio.wait_for(w.stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _write(self, record: dict) -> None:
        try:
            await asyncio.to_thread(append, self.record, record)
        except OSError as exc:  # the report loses a line; the server is unaffected
            log.warning("lakehub: cannot record usage in %s: %s", self.record, exc)

    async def _follow(self, spawner, w: _Watch) -> None:
        user, server = spawner.user.name, spawner.name
        try:
            give_up = time.monotonic() + float(getattr(spawner, "start_timeout", 180))
            while not spawner.pid and not w.stop.is_set():
                if time.monotonic() > give_up:
                    return
                await self._wait(w, min(self.every, 1.0))
            pid = spawner.pid
            if not pid:
                return
            base = {"session": w.session, "user": user, "server": server}
            await self._write({**base, "event": "start", "t": time.time()})
            cpu, peak, written = 0.0, 0, time.monotonic()
            while not w.stop.is_set() and spawner.pid == pid:
                figures = tree_figures(await asyncio.to_thread(self.read), pid)
                if figures is None:
                    break
                cpu, peak = max(cpu, figures[0]), max(peak, figures[1])
                if time.monotonic() - written >= self.write_every:
                    await self._write({**base, **_figures("sample", cpu, peak)})
                    written = time.monotonic()
                await self._wait(w, self.every)
            await self._write({**base, **_figures("stop", cpu, peak)})
        finally:
            if self.watching.get((user, server)) is w:
                del self.watching[(user, server)]


def _figures(event: str, cpu: float, peak: int) -> dict:
    return {"event": event, "t": time.time(), "cpu_s": round(cpu, 3), "peak_rss": peak}


async def _call(hook, spawner) -> None:
    if hook is not None:
        result = hook(spawner)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            await result


def install(c, collector: UsageCollector) -> None:
    """Chain the collector after the configured ``pre_spawn_hook`` and before the
    configured ``post_stop_hook`` (plain functions: traitlets copies config values)."""
    pre = c.Spawner.pre_spawn_hook if "pre_spawn_hook" in c.Spawner else None
    post = c.Spawner.post_stop_hook if "post_stop_hook" in c.Spawner else None

    async def lakehub_usage_pre_spawn_hook(spawner) -> None:
        await _call(pre, spawner)
        collector.watch(spawner)

    async def lakehub_usage_post_stop_hook(spawner) -> None:
        collector.stopped(spawner)
        await _call(post, spawner)

    c.Spawner.pre_spawn_hook = lakehub_usage_pre_spawn_hook
    c.Spawner.post_stop_hook = lakehub_usage_post_stop_hook
