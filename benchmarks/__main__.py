"""``python -m benchmarks`` (``make bench``): figures of the real embedded stack.

Every figure is one JSON object on its own line on stdout,
``{"figure": NAME, "value": NUMBER, ...context}``; nothing else is written there.
Progress and diagnostics go to stderr.

spawn_p50_ratio_hooks_vs_vanilla
    Median time to spawn a JupyterLab server on a hub with lakehub's pre-spawn hook,
    divided by the median on the same hub without the hook.  The two hubs run side by
    side and the spawns alternate between them, so whatever else loads the machine
    loads both.  Each spawn is a fresh user, timed from the POST to the hub reporting
    the server ready; the server is stopped before the next spawn.
spawn_hook_overhead_p50_s
    The difference of those two medians, in seconds.
concurrent_spawn_failures
    Many users started at once on a hub with the hook and JupyterHub's light test
    server (``jupyterhub.tests.mocksu``).  A user counts as failed when the spawn
    failed, was not ready in time, or left no Rucio token file in the home.
cache_source_bytes_ratio
    Bytes the cache service read from the source RSE (its ``source_bytes`` statistic,
    after minus before) over the dataset's size, when 20 distinct hub users, each with
    the tokens a session gets (``user_tokens``), call ``lakehub.fetch`` on one fresh
    dataset at the same moment, one thread each.  1.0 means one transfer per file.
cache_wall_ratio_n20_vs_1
    Wall time until all 20 users have the fresh dataset, over the time one user needs
    for another fresh dataset of the same size (4 x 20 MB of random bytes by default),
    on the same stack, rounds alternating.  The site's ``transfer_rate_limit_mbps`` is
    set (40 Mbit/s per transfer by default) so that the transfer, not the local disk or
    the load of the machine, sets the time, as it would against a remote lake.
cache_read_ratio_vs_local_disk
    uproot events/s reading generated GamGam files from the cache over events/s
    reading copies of them in an ordinary folder, the same branches, both dropped from
    the page cache before every read (warm figures in the context).  Both folders are
    on the same disk here.
hyy_throughput_ratio_vs_raw_read, hyy_events_per_s
    events/s of the H->yy notebook's own reading-and-selection cell (executed from
    ``notebooks/HyyAnalysis.ipynb`` with ``DATA_FILES`` injected) on generated files,
    over events/s of reading the same branches with uproot and nothing else.  No
    stack.  ``benchmarks/analysis_driver.py`` does the reading in the analysis
    environment.
dask_speedup_2_workers
    Wall time of the H->yy notebook's single-process selection over the wall time of
    the same selection (its optional Dask section's ``uproot.dask`` work) on a Dask
    Gateway cluster of 2 workers, same files from the shared cache, back-to-back pairs
    in one real session's kernel (``benchmarks/dask_scaleout.py``).

The ratios of timed runs come from pairs of runs made back to back, which goes first
alternating; the value is the median of the pairs' ratios (``rate_ratios``).

Every stack started here is stopped (by PID, through ``stop_stack``) on the way out,
also on an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO
from urllib.parse import quote

import httpx

from benchmarks import k8s as k8s_bench
from hub_config.local import cache_url
from lakehub.cache import fetch
from localstack.procs import wait_until
from sitefile.state import REPO, venv_bin
from spawner_hooks.local_spawner import SYSTEM_USER_PREFIX
from testkit.harness import (
    Stack,
    cache_stats,
    make_dataset,
    stack_folder,
    start_stack,
    stop_stack,
    unique_user,
    user_tokens,
    write_site,
)

RATIO = "spawn_p50_ratio_hooks_vs_vanilla"
OVERHEAD = "spawn_hook_overhead_p50_s"
CONCURRENT = "concurrent_spawn_failures"
CACHE_SOURCE = "cache_source_bytes_ratio"
CACHE_WALL = "cache_wall_ratio_n20_vs_1"
CACHE_READ = "cache_read_ratio_vs_local_disk"
HYY_RATIO = "hyy_throughput_ratio_vs_raw_read"
HYY_RATE = "hyy_events_per_s"
RENEWAL_CPU = "token_service_hub_cpu_fraction"
RENEWAL_P99 = "token_refresh_p99_ms"
DASK_SPEEDUP = "dask_speedup_2_workers"
FIGURES = (
    RATIO,
    OVERHEAD,
    CONCURRENT,
    CACHE_SOURCE,
    CACHE_WALL,
    CACHE_READ,
    HYY_RATIO,
    HYY_RATE,
    RENEWAL_CPU,
    RENEWAL_P99,
    DASK_SPEEDUP,
    k8s_bench.P99,
    k8s_bench.FAILURES,
)

JUPYTERLAB = "jupyterlab"
MOCKSU = "jupyterhub.tests.mocksu"
RATIO_GOAL = 1.10
POLL_S = 0.25


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- output ---------------------------------------------------------------------------


def claim_stdout() -> IO[str]:
    """Keep the real stdout for the figures and send everything else written to fd 1
    (the stack's own progress lines, child processes) to stderr."""
    sys.stdout.flush()
    figures = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return figures


def emit(out: IO[str], figure: str, value: float | int, **context) -> None:
    out.write(json.dumps({"figure": figure, "value": value, **context}) + "\n")
    out.flush()


# --- signals --------------------------------------------------------------------------


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a stack is being stopped; re-raise them afterwards."""
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            raise KeyboardInterrupt(f"signal {received[0]} during cleanup")


# --- stacks ---------------------------------------------------------------------------


def hub_log_problems(state: Path) -> list[str]:
    """Error lines of the hub log (hub and single-user servers), and lakehub warnings.

    The hook's logger has no handler of its own, so its warnings may reach the log
    through Python's last-resort handler as bare ``lakehub: ...`` lines.
    """
    path = state / "logs" / "hub.log"
    if not path.exists():
        return []
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("[E ", "[C ", "Traceback", "lakehub:")):
            found.append(line)
        elif line.startswith("[W ") and "lakehub:" in line:
            found.append(line)
    return found


def report_hub_log(label: str, state: Path) -> None:
    problems = hub_log_problems(state)
    if not problems:
        log(f"{label}: hub log has no errors")
        return
    log(f"{label}: hub log has {len(problems)} error/warning line(s); first ones:")
    for line in problems[:8]:
        print(f"    {line[:300]}", file=sys.stderr)


def leftover_processes(folder: Path) -> list[str]:
    """Processes still working in or on the stack folder (there should be none)."""
    prefix = str(folder)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(prefix) or prefix in cmd:
            found.append(f"pid {entry.name}: {cmd.strip()[:160]}")
    return found


def leftover_accounts(folder: Path) -> list[str]:
    """Per-user system accounts with a home in the stack folder that are still there
    after ``stop_stack`` (there should be none: the spawner records each account
    before making it, and ``stop_stack`` removes the recorded ones)."""
    return [
        entry.pw_name
        for entry in pwd.getpwall()
        if entry.pw_name.startswith(SYSTEM_USER_PREFIX)
        and Path(entry.pw_dir).is_relative_to(folder)
    ]


@contextlib.contextmanager
def running_stack(
    label: str, keep_logs: Path | None, site: dict | None = None, **options
) -> Iterator[Stack]:
    """A stack of its own in a fresh folder, stopped and removed on the way out.

    ``site`` holds keyword arguments of ``write_site`` (demo ``events``, ``cache``
    settings); ``options`` those of ``start_stack``.
    """
    folder = stack_folder()
    state = folder / "state"
    began = time.monotonic()
    log(f"{label}: starting a stack in {folder} ({options}, site {site or {}})")
    try:
        site_file = write_site(folder, **(site or {}))
        stack = start_stack(state, site_file, **options)
        log(f"{label}: up at {stack.url} after {time.monotonic() - began:.1f} s")
        yield stack
    finally:
        with signals_held():
            try:
                report_hub_log(label, state)
                if keep_logs is not None and (state / "logs").is_dir():
                    target = keep_logs / f"{label}-{folder.name}"
                    shutil.copytree(state / "logs", target, dirs_exist_ok=True)
                    log(f"{label}: logs copied to {target}")
            finally:
                log(f"{label}: stopping the stack")
                stop_stack(state)
                for account in leftover_accounts(folder):
                    log(f"{label}: WARNING system account {account} survived stop_stack")
                shutil.rmtree(folder, ignore_errors=True)
                for line in leftover_processes(folder):
                    log(f"{label}: WARNING still running after stop: {line}")


# --- figure 1: spawn time with and without the hooks ------------------------------------

_HUB_LINE = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) JupyterHub ")


def pre_start_gaps(state: Path) -> list[float]:
    """Seconds between the hub making a user's OAuth client and launching the server
    process, from the hub log: the pre-spawn hook runs in between.  Only meaningful
    for spawns one at a time (the launch line does not name the user)."""
    path = state / "logs" / "hub.log"
    if not path.exists():
        return []
    gaps = []
    opened: datetime | None = None
    for line in path.read_text(errors="replace").splitlines():
        m = _HUB_LINE.match(line)
        if not m:
            continue
        when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
        if "Creating oauth client jupyterhub-user-" in line:
            opened = when
        elif opened is not None and " spawner:" in line and "] Spawning " in line:
            gaps.append((when - opened).total_seconds())
            opened = None
    return gaps


def timed_spawn(stack: Stack, prefix: str, timeout: float) -> float:
    """Seconds from the POST until the hub reports a fresh user's server ready."""
    admin = stack.admin
    name = unique_user(prefix)
    admin.ensure_user(name)
    began = time.perf_counter()
    admin.start_server(name, timeout=timeout)
    elapsed = time.perf_counter() - began
    admin.stop_server(name)
    return elapsed


def spawn_ratio(args: argparse.Namespace, out: IO[str]) -> None:
    with contextlib.ExitStack() as stacks:
        vanilla = stacks.enter_context(
            running_stack("vanilla", args.keep_logs, with_hooks=False, with_rucio=False)
        )
        hooked = stacks.enter_context(running_stack("hooks", args.keep_logs, with_hooks=True))
        # label: (stack, user name prefix)
        hubs = {"hooks": (hooked, "h"), "vanilla": (vanilla, "v")}
        times: dict[str, list[float]] = {"hooks": [], "vanilla": []}
        load_before = os.getloadavg()[0]
        rounds = args.warmup + args.spawns
        for i in range(rounds):
            warm = i < args.warmup
            for label, (stack, prefix) in hubs.items():
                elapsed = timed_spawn(stack, prefix, args.spawn_timeout)
                if not warm:
                    times[label].append(elapsed)
                kind = "warm-up" if warm else f"{i - args.warmup + 1}/{args.spawns}"
                log(f"spawn {kind} {label}: {elapsed:.2f} s")
        load_after = os.getloadavg()[0]
        with_hooks = statistics.median(times["hooks"])
        without = statistics.median(times["vanilla"])
        gaps = {
            label: pre_start_gaps(stack.paths.state)[args.warmup :]
            for label, (stack, _) in hubs.items()
        }
        log_errors = {
            "hooks": len(hub_log_problems(hooked.paths.state)),
            "vanilla": len(hub_log_problems(vanilla.paths.state)),
        }
    ratio = with_hooks / without
    common = {
        "n": args.spawns,
        "warmup_per_hub": args.warmup,
        "single_user": JUPYTERLAB,
        "spawn_times_with_hooks_s": [round(t, 3) for t in times["hooks"]],
        "spawn_times_without_s": [round(t, 3) for t in times["vanilla"]],
        "hub_log_error_lines": log_errors,
        "hub_log_pre_start_p50_s": {
            label: round(statistics.median(g), 3) if g else None for label, g in gaps.items()
        },
        "hub_log_pre_start_note": (
            "from the hub log: OAuth client made -> server process launched, where the "
            "pre-spawn hook runs; unlike the spawn times it excludes JupyterLab's start-up"
        ),
        "loadavg_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
    }
    emit(
        out,
        RATIO,
        round(ratio, 4),
        p50_with_hooks_s=round(with_hooks, 3),
        p50_without_s=round(without, 3),
        goal=f"<= {RATIO_GOAL:.2f}",
        goal_met=ratio <= RATIO_GOAL,
        **common,
    )
    emit(
        out,
        OVERHEAD,
        round(with_hooks - without, 3),
        unit="s",
        note=f"p50 with hooks minus p50 without, same spawns as {RATIO}",
        **common,
    )


# --- figure 2: many spawns at once --------------------------------------------------------


@dataclass
class Outcome:
    ready_s: float | None = None
    failure: str | None = None
    post_error: str | None = None


async def list_servers(client: httpx.AsyncClient) -> dict[str, dict]:
    """Every user's servers, one paginated listing (cheaper for the hub than one GET
    per user while it is busy spawning)."""
    servers: dict[str, dict] = {}
    offset = 0
    while True:
        r = await client.get(
            "/hub/api/users",
            params={"offset": offset, "limit": 200},
            headers={"Accept": "application/jupyterhub-pagination+json"},
        )
        r.raise_for_status()
        page = r.json()
        for user in page["items"]:
            servers[user["name"]] = user.get("servers") or {}
        following = page["_pagination"].get("next")
        if not following:
            return servers
        offset = following["offset"]


async def start_all(
    base_url: str, token: str, names: list[str], limit_s: float
) -> tuple[dict[str, Outcome], float]:
    """POST every user's server at once, then poll until each is ready or gone."""
    outcomes = {name: Outcome() for name in names}
    limits = httpx.Limits(max_connections=len(names) + 4)
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"token {token}"},
        timeout=httpx.Timeout(120),
        limits=limits,
    ) as client:
        began = time.perf_counter()

        async def post(name: str) -> None:
            try:
                r = await client.post(f"/hub/api/users/{quote(name, safe='')}/server")
            except httpx.HTTPError as exc:
                # the hub may still have started it: the polling below decides
                outcomes[name].post_error = f"{type(exc).__name__}: {exc}"
                return
            if r.status_code == 201:  # finished within the hub's slow_spawn_timeout
                outcomes[name].ready_s = time.perf_counter() - began
            elif r.status_code != 202:
                outcomes[name].failure = f"POST answered HTTP {r.status_code}: {r.text[:200]}"

        await asyncio.gather(*(post(name) for name in names))
        log(f"all {len(names)} POSTs answered after {time.perf_counter() - began:.1f} s")

        pending = {n for n, o in outcomes.items() if o.ready_s is None and o.failure is None}
        while pending:
            servers = await list_servers(client)
            now = time.perf_counter() - began
            for name in sorted(pending):
                server = servers.get(name, {}).get("")
                if server is None:
                    reason = "the spawn failed (the hub dropped the server)"
                    if outcomes[name].post_error:
                        reason += f"; POST error {outcomes[name].post_error}"
                    outcomes[name].failure = reason
                    pending.discard(name)
                elif server.get("ready"):
                    outcomes[name].ready_s = now
                    pending.discard(name)
            if not pending:
                break
            if now > limit_s:
                for name in pending:
                    outcomes[name].failure = f"not ready after {limit_s:.0f} s"
                break
            await asyncio.sleep(POLL_S)
        wall = time.perf_counter() - began
    return outcomes, wall


async def stop_all(base_url: str, token: str, names: list[str], limit_s: float = 120) -> None:
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"token {token}"}, timeout=60
    ) as client:
        await asyncio.gather(
            *(client.delete(f"/hub/api/users/{quote(n, safe='')}/server") for n in names),
            return_exceptions=True,
        )
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            servers = await list_servers(client)
            if not any("" in servers.get(n, {}) for n in names):
                return
            await asyncio.sleep(POLL_S)
    log(f"some servers did not stop within {limit_s:.0f} s; stop_stack will end them")


def token_problem(stack: Stack, name: str) -> str | None:
    token = stack.home(name) / ".lakehub" / "rucio-token"
    try:
        if token.stat().st_size == 0:
            return f"{token} is empty"
    except OSError as exc:
        return f"no token file ({type(exc).__name__})"
    return None


def rucio_problems(stack: Stack, name: str) -> list[str]:
    """What the hook wrote into status.json as problems (it never fails the spawn)."""
    try:
        status = json.loads((stack.home(name) / ".lakehub" / "status.json").read_text())
    except (OSError, ValueError):
        return ["no readable status.json"]
    return list(status.get("problems") or [])


def concurrent_failures(args: argparse.Namespace, out: IO[str]) -> None:
    with running_stack("concurrent", args.keep_logs, with_hooks=True, mock_servers=True) as stack:
        names = [unique_user("c") for _ in range(args.concurrent)]
        r = stack.admin.api("POST", "/users", json={"usernames": names})
        if r.status_code != 201:
            raise RuntimeError(f"creating the users failed: HTTP {r.status_code} {r.text[:200]}")
        log(f"starting {len(names)} servers at once")
        load_before = os.getloadavg()[0]
        try:
            outcomes, wall = asyncio.run(
                start_all(stack.url, stack.admin_token, names, args.concurrent_timeout)
            )
            spawn_failed = {n: o.failure for n, o in outcomes.items() if o.failure}
            ready = {n: o for n, o in outcomes.items() if not o.failure}
            missing_token = {
                n: problem for n in ready if (problem := token_problem(stack, n)) is not None
            }
            with_rucio_problems = {n: p for n in ready if (p := rucio_problems(stack, n))}
            log_errors = len(hub_log_problems(stack.paths.state))
        finally:
            asyncio.run(stop_all(stack.url, stack.admin_token, names))
    for name, reason in {**spawn_failed, **missing_token}.items():
        log(f"failed: {name}: {reason}")
    for name, problems in with_rucio_problems.items():
        log(f"rucio problem reported to {name}: {problems}")
    ready_times = sorted(o.ready_s for o in ready.values() if o.ready_s is not None)
    failures = len(spawn_failed) + len(missing_token)
    emit(
        out,
        CONCURRENT,
        failures,
        users=len(names),
        wall_s=round(wall, 3),
        wall_note="from the first POST until every server was ready or had failed",
        ready_p50_s=round(statistics.median(ready_times), 3) if ready_times else None,
        ready_max_s=round(ready_times[-1], 3) if ready_times else None,
        spawn_failures=len(spawn_failed),
        missing_token_files=len(missing_token),
        failures_note=(
            "failures = spawns that failed or were not ready in time, plus ready servers "
            "without a non-empty <home>/.lakehub/rucio-token"
        ),
        post_errors=sum(o.post_error is not None for o in outcomes.values()),
        users_with_rucio_problems=len(with_rucio_problems),
        hub_log_error_lines=log_errors,
        loadavg_1m_before=round(load_before, 2),
        cpus=os.cpu_count(),
        single_user=MOCKSU,
        goal=0,
        goal_met=failures == 0,
    )


# --- figures 3-5: the shared dataset cache --------------------------------------------------

SOURCE_GOAL = 1.0
WALL_GOAL = 1.3
READ_GOAL = 0.95
HYY_GOAL = 0.85
GAMGAM_SEED = 20_250
DRIVER = Path(__file__).with_name("analysis_driver.py")
SAME_DISK_NOTE = (
    "the cache folder (<stack state>/cache) and the local copy (the benchmark's own folder "
    "under /tmp) are on the same file system and disk here, so this compares where the "
    "files live, not two kinds of storage"
)


class BenchData:
    """Generated GamGam files for the figures that read ROOT files, made on first use in
    the benchmark's own folder (removed at the end)."""

    def __init__(self, folder: Path, files: int, events: int) -> None:
        self.folder = folder
        self.files = files
        self.events = events
        self._gamgam: list[Path] | None = None

    def gamgam(self) -> list[Path]:
        if self._gamgam is None:
            from localstack.demo_data import generate_dataset

            began = time.monotonic()
            self._gamgam = generate_dataset(
                self.folder / "gamgam",
                n_files=self.files,
                n_events=self.events,
                seed=GAMGAM_SEED,
                progress=False,
                layout="GamGam",
            )
            log(
                f"generated {self.files} GamGam files x {self.events} events "
                f"in {time.monotonic() - began:.1f} s"
            )
        return self._gamgam


def analysis_driver(arguments: list[str], limit_s: float) -> dict:
    """Run ``analysis_driver.py`` in the analysis environment; return its JSON answer."""
    python = venv_bin("analysis", "python")
    if not python.is_file():
        raise RuntimeError(f"no analysis environment at {python} (scripts/ensure-env.sh)")
    done = subprocess.run(
        [str(python), str(DRIVER), *arguments],
        stdout=subprocess.PIPE,
        text=True,
        timeout=limit_s,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the analysis driver exited with {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def rate_ratios(events: list[int], top_s: list[float], bottom_s: list[float]) -> dict:
    """events/s of the ``top`` runs over events/s of the ``bottom`` runs, from runs
    made in pairs: ``top_s[i]`` and ``bottom_s[i]`` back to back, over ``events[i]``
    each.  ``paired_p50``, the median of the pairs' ratios, is the reported value: on
    two loaded cores the times jump between levels, and a pair shares its moment's load
    while two separate medians may land on different levels."""
    top = [e / t for e, t in zip(events, top_s, strict=True)]
    bottom = [e / t for e, t in zip(events, bottom_s, strict=True)]
    return {
        "paired_p50": statistics.median(a / b for a, b in zip(top, bottom, strict=True)),
        "of_medians": statistics.median(top) / statistics.median(bottom),
        "of_best": max(top) / max(bottom),
        "top_events_per_s_p50": statistics.median(top),
        "bottom_events_per_s_p50": statistics.median(bottom),
    }


PAIRED_NOTE = (
    "value = median over the repetitions of the ratio of the two runs made back to back "
    "in that repetition (which goes first alternates); of_medians = ratio of the two median "
    "rates, of_best = ratio of the two best runs"
)


@dataclass
class FetchRound:
    users: int
    did: str
    dataset_bytes: int
    files: int
    wall_s: float
    latencies_s: list[float]
    source_bytes: int
    max_transfers_per_file: int


def fresh_dataset(
    stack: Stack, label: str, contents: dict[str, bytes]
) -> tuple[str, dict[str, bytes]]:
    """Register ``contents`` under new, unique file names as a new dataset; return its
    DID and the files as registered."""
    tag = unique_user(label)
    renamed = {f"bench-{tag}-{name}": data for name, data in contents.items()}
    return make_dataset(stack, f"bench.{tag}", renamed), renamed


def fetch_at_once(stack: Stack, did: str, tokens: list[tuple[str, str]], limit_s: float):
    """Every holder of ``tokens`` calls ``lakehub.fetch(did)`` at the same moment, each in
    a thread of its own; returns (wall seconds, each caller's seconds, each one's paths)."""
    url = cache_url(stack.site)
    barrier = threading.Barrier(len(tokens))

    def ask(pair: tuple[str, str]) -> tuple[float, float, list[str]]:
        hub_token, rucio_token = pair
        barrier.wait(timeout=60)
        began = time.perf_counter()
        paths = fetch(
            did,
            progress=False,
            timeout=limit_s,
            url=url,
            token=hub_token,
            rucio_token=rucio_token,
        )
        return began, time.perf_counter(), sorted(paths)

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        answers = list(pool.map(ask, tokens))
    wall = max(a[1] for a in answers) - min(a[0] for a in answers)
    return wall, sorted(a[1] - a[0] for a in answers), [a[2] for a in answers]


def fetch_round(
    stack: Stack, tokens: list[tuple[str, str]], files: int, file_bytes: int, limit_s: float
) -> FetchRound:
    """A fresh dataset of random bytes fetched by everybody in ``tokens`` at once; the
    answers are checked (same paths for all, the registered bytes) after the timing."""
    did, contents = fresh_dataset(
        stack, f"n{len(tokens)}x", {f"{i:02d}.root": os.urandom(file_bytes) for i in range(files)}
    )
    scope = did.split(":")[0]
    expected = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    names = list(contents)
    del contents
    before = cache_stats(stack)
    wall, latencies, answers = fetch_at_once(stack, did, tokens, limit_s)
    after = cache_stats(stack)
    if any(a != answers[0] for a in answers):
        raise RuntimeError(f"{did}: the users were given different paths")
    published = {Path(p).name: sha256(p) for p in answers[0]}
    if published != expected:
        raise RuntimeError(f"{did}: the cached files are not the registered bytes")
    transfers = [after["transfers"].get(f"{scope}:{n}", 0) for n in names]
    return FetchRound(
        users=len(tokens),
        did=did,
        dataset_bytes=files * file_bytes,
        files=files,
        wall_s=wall,
        latencies_s=latencies,
        source_bytes=after["source_bytes"] - before["source_bytes"],
        max_transfers_per_file=max(transfers),
    )


def make_tokens(stack: Stack, prefix: str, n: int) -> list[tuple[str, str]]:
    began = time.monotonic()
    tokens = [user_tokens(stack, unique_user(prefix)) for _ in range(n)]
    log(f"{n} hub user(s) with their own tokens in {time.monotonic() - began:.1f} s")
    return tokens


def cache_figures(args: argparse.Namespace, out: IO[str], data: BenchData) -> None:
    wanted = [f for f in (CACHE_SOURCE, CACHE_WALL, CACHE_READ) if args.only in (None, f)]
    rate = args.cache_rate_mbps
    site = {"cache": {"transfer_rate_limit_mbps": rate}}
    with running_stack("cache", args.keep_logs, site=site) as stack:
        wait_until(lambda: _cache_answers(stack), timeout=60, what="the cache service")
        single = make_tokens(stack, "one", 1)
        load_before = os.getloadavg()[0]
        rounds: list[FetchRound] = []
        if CACHE_SOURCE in wanted or CACHE_WALL in wanted:
            crowd = make_tokens(stack, "many", args.cache_users)
            for i in range(args.cache_rounds):
                order = [single, crowd] if i % 2 == 0 else [crowd, single]
                if CACHE_WALL not in wanted:
                    order = [crowd]
                for tokens in order:
                    r = fetch_round(
                        stack, tokens, args.cache_files, args.cache_file_mb * 1_000_000, 600
                    )
                    rounds.append(r)
                    log(
                        f"round {i + 1}/{args.cache_rounds}, {r.users} user(s): "
                        f"{r.wall_s:.2f} s (per user {r.latencies_s[0]:.2f}-"
                        f"{r.latencies_s[-1]:.2f} s), {r.source_bytes} source bytes for "
                        f"{r.dataset_bytes}, at most {r.max_transfers_per_file} transfer(s)/file"
                    )
        read = None
        if CACHE_READ in wanted:
            read = read_cached_vs_local(stack, single[0], data, args)
        load_after = os.getloadavg()[0]
        log_errors = len(hub_log_problems(stack.paths.state))

    crowds = [r for r in rounds if r.users == args.cache_users]
    singles = [r for r in rounds if r.users == 1]
    setup = {
        "file_bytes": args.cache_file_mb * 1_000_000,
        "transfer_rate_limit_mbps": rate,
        "transfer_time_at_limit_s": round(args.cache_file_mb * 8 / rate, 2),
        "rate_note": (
            f"site cache.transfer_rate_limit_mbps = {rate}: each transfer process is held to "
            f"{rate} Mbit/s (a plausible single stream from a remote lake; it also keeps the "
            "transfer time independent of the local disk and of the other work on the machine); "
            "max_parallel_transfers stays at its default (4), so the files of a dataset move "
            "in parallel"
        ),
        "source": "file:// replicas on the stack's demo RSE (local disk)",
        "client": "lakehub.fetch in one thread per user (polls the job every 0.5 s)",
        "hub_log_error_lines": log_errors,
        "loadavg_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
    }
    if CACHE_SOURCE in wanted:
        source = sum(r.source_bytes for r in crowds)
        size = sum(r.dataset_bytes for r in crowds)
        ratio = source / size
        emit(
            out,
            CACHE_SOURCE,
            round(ratio, 4),
            users=args.cache_users,
            dataset_bytes=crowds[0].dataset_bytes,
            files=args.cache_files,
            datasets=len(crowds),
            source_bytes_per_dataset=[r.source_bytes for r in crowds],
            max_transfers_per_file=max(r.max_transfers_per_file for r in crowds),
            note=(
                "cache_stats source_bytes after minus before, over the dataset's size, when "
                f"{args.cache_users} distinct hub users (own JupyterHub + Rucio tokens from "
                "user_tokens) fetch one fresh dataset at once; summed over the rounds"
            ),
            goal=f"== {SOURCE_GOAL:.1f}",
            goal_met=ratio == SOURCE_GOAL,
            **setup,
        )
    if CACHE_WALL in wanted:
        crowd_wall = statistics.median(r.wall_s for r in crowds)
        single_wall = statistics.median(r.wall_s for r in singles)
        ratio = crowd_wall / single_wall
        emit(
            out,
            CACHE_WALL,
            round(ratio, 4),
            users=args.cache_users,
            rounds=args.cache_rounds,
            wall_n_users_s=[round(r.wall_s, 3) for r in crowds],
            wall_1_user_s=[round(r.wall_s, 3) for r in singles],
            p50_wall_n_users_s=round(crowd_wall, 3),
            p50_wall_1_user_s=round(single_wall, 3),
            extra_s_n_users=round(crowd_wall - single_wall, 3),
            extra_note=(
                "p50 n-user wall minus p50 1-user wall: time the crowd costs beyond the "
                "transfer itself; it does not depend on the rate limit, the ratio does"
            ),
            n_users_latency_p50_max_s=[
                [round(statistics.median(r.latencies_s), 3), round(r.latencies_s[-1], 3)]
                for r in crowds
            ],
            dataset_bytes=args.cache_files * args.cache_file_mb * 1_000_000,
            files=args.cache_files,
            note=(
                "median wall time (first fetch call to last answer) of the n-user rounds over "
                "that of the 1-user rounds; every round a fresh dataset of the same size, "
                "rounds alternate which goes first, one stack"
            ),
            goal=f"<= {WALL_GOAL:.2f}",
            goal_met=ratio <= WALL_GOAL,
            **setup,
        )
    if CACHE_READ in wanted and read is not None:
        ratios = {
            mode: rate_ratios(*zip(*read["pairs"][mode], strict=True)) for mode in ("cold", "warm")
        }
        ratio = ratios["cold"]["paired_p50"]
        emit(
            out,
            CACHE_READ,
            round(ratio, 4),
            events=read["events"],
            files=len(read["cached_files"]),
            file_bytes=read["file_bytes"],
            repetitions=args.read_reps,
            pairs=len(read["pairs"]["cold"]),
            branches=read["branches"],
            cached_events_per_s=round(ratios["cold"]["top_events_per_s_p50"]),
            local_events_per_s=round(ratios["cold"]["bottom_events_per_s_p50"]),
            ratio_of_medians=round(ratios["cold"]["of_medians"], 4),
            ratio_of_best=round(ratios["cold"]["of_best"], 4),
            paired_note=(
                "value = median over all files and repetitions of the ratio of the two reads "
                "of a file and its copy, made back to back (which goes first alternates); "
                "of_medians = ratio of the two median rates, of_best = of the two best"
            ),
            rates_note="events/s of single-file reads (medians over files and repetitions)",
            warm_ratio=round(ratios["warm"]["paired_p50"], 4),
            warm_ratio_of_medians=round(ratios["warm"]["of_medians"], 4),
            warm_ratio_of_best=round(ratios["warm"]["of_best"], 4),
            warm_cached_events_per_s=round(ratios["warm"]["top_events_per_s_p50"]),
            warm_local_events_per_s=round(ratios["warm"]["bottom_events_per_s_p50"]),
            resident_bytes_before_cold_read=read["resident_bytes_before_cold_read"],
            page_cache_note=(
                "value: both copies dropped from this machine's page cache (fsync + "
                "posix_fadvise DONTNEED, checked with fincore) before every read, so each "
                "read goes to the disk (a virtual disk here: the host may still cache it); "
                "warm_*: the same reads with both copies in the page cache"
            ),
            same_disk_note=SAME_DISK_NOTE,
            reader=f"uproot {read['uproot']} (analysis Python {read['python']}), "
            "uproot.iterate step_size 25 MB, one file at a time, each file back to back with "
            "its copy, alternating which goes first",
            data=f"GamGam files generated by localstack.demo_data (seed {GAMGAM_SEED}), "
            "registered as a fresh dataset and fetched through the cache",
            goal=f">= {READ_GOAL:.2f}",
            goal_met=ratio >= READ_GOAL,
        )


def _cache_answers(stack: Stack) -> bool:
    try:
        cache_stats(stack)
    except httpx.HTTPError:
        return False
    return True


def read_cached_vs_local(
    stack: Stack, tokens: tuple[str, str], data: BenchData, args: argparse.Namespace
) -> dict:
    generated = data.gamgam()
    did, _ = fresh_dataset(stack, "read", {p.name: p.read_bytes() for p in generated})
    hub_token, rucio_token = tokens
    cached = fetch(
        did, progress=False, url=cache_url(stack.site), token=hub_token, rucio_token=rucio_token
    )
    cached = sorted(cached)
    local_dir = data.folder / f"local-copy-{unique_user('')}"
    local_dir.mkdir()
    local = []
    for path in cached:
        target = local_dir / Path(path).name
        shutil.copyfile(path, target)
        local.append(str(target))
    if [sha256(p) for p in cached] != [sha256(p) for p in local]:
        raise RuntimeError("the local copy differs from the cached files")
    log(f"reading {len(cached)} cached files and their copies in {local_dir}")
    result = analysis_driver(
        ["read", "--reps", str(args.read_reps), "--cached", *cached, "--local", *local],
        limit_s=600,
    )
    result["cached_files"] = cached
    result["file_bytes"] = [os.path.getsize(p) for p in cached]
    return result


# --- figure 6: the H->yy notebook's selection against a raw read ----------------------------


def hyy_figures(args: argparse.Namespace, out: IO[str], data: BenchData) -> None:
    files = [str(p) for p in data.gamgam()]
    notebook = REPO / "notebooks" / "HyyAnalysis.ipynb"
    load_before = os.getloadavg()[0]
    result = analysis_driver(
        ["hyy", "--notebook", str(notebook), "--reps", str(args.hyy_reps), *files], limit_s=600
    )
    load_after = os.getloadavg()[0]
    seconds = result["seconds"]
    ratios = rate_ratios(
        [result["events"]] * len(seconds["selection"]), seconds["selection"], seconds["raw_read"]
    )
    ratio = ratios["paired_p50"]
    selection_rate = ratios["top_events_per_s_p50"]
    common = {
        "events": result["events"],
        "files": len(files),
        "events_per_file": args.gamgam_events,
        "repetitions": args.hyy_reps,
        "selection_events_per_s": round(selection_rate),
        "raw_read_events_per_s": round(ratios["bottom_events_per_s_p50"]),
        "ratio_of_medians": round(ratios["of_medians"], 4),
        "ratio_of_best": round(ratios["of_best"], 4),
        "paired_note": PAIRED_NOTE,
        "selection_s": [round(t, 4) for t in result["seconds"]["selection"]],
        "raw_read_s": [round(t, 4) for t in result["seconds"]["raw_read"]],
        "branches": result["branches"],
        "step_size": result["step_size"],
        "timed": (
            f"notebook cell {result['selection_cell']} of HyyAnalysis.ipynb as it stands "
            "(uproot.iterate through the notebook's iterate_chunks, select_diphotons, "
            "histogram fill, cut-flow sums and printout), executed after cells "
            f"{result['cells_run_before']} with DATA_FILES injected after the parameters cell; "
            "against uproot.iterate of the same files, branches and step size, doing nothing "
            "with the chunks; files in the page cache for both"
        ),
        "selected_in_mass_window": result["selected_in_window"],
        "data": f"localstack.demo_data GamGam, seed {GAMGAM_SEED}",
        "reader": f"uproot {result['uproot']} (analysis Python {result['python']})",
        "loadavg_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
    }
    emit(
        out,
        HYY_RATIO,
        round(ratio, 4),
        goal=f">= {HYY_GOAL:.2f}",
        goal_met=ratio >= HYY_GOAL,
        **common,
    )
    emit(
        out,
        HYY_RATE,
        round(selection_rate),
        unit="events/s",
        note="median rate of the notebook's selection cell, same runs as " + HYY_RATIO,
        **common,
    )


# --- command line -----------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--only", choices=FIGURES, help="run only what this figure needs")
    parser.add_argument(
        "--spawns", type=int, default=8, help="timed spawns per hub (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed spawns per hub before the timed ones (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrent", type=int, default=20, help="users started at once (default: %(default)s)"
    )
    parser.add_argument(
        "--spawn-timeout", type=float, default=180, help="seconds per spawn (default: 180)"
    )
    parser.add_argument(
        "--concurrent-timeout",
        type=float,
        default=300,
        help="seconds for all concurrent spawns (default: 300)",
    )
    parser.add_argument(
        "--cache-users",
        type=int,
        default=20,
        help="users fetching one fresh dataset at once (default: %(default)s)",
    )
    parser.add_argument(
        "--cache-rounds",
        type=int,
        default=3,
        help="rounds of (1 user, --cache-users users), each on fresh datasets "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--cache-files", type=int, default=4, help="files per dataset (default: %(default)s)"
    )
    parser.add_argument(
        "--cache-file-mb", type=int, default=20, help="MB per file (default: %(default)s)"
    )
    parser.add_argument(
        "--cache-rate-mbps",
        type=float,
        default=40.0,
        help="site cache.transfer_rate_limit_mbps (Mbit/s per transfer; default: %(default)s)",
    )
    parser.add_argument(
        "--read-reps",
        type=int,
        default=15,
        help="timed reads of each copy per page-cache mode (default: %(default)s)",
    )
    parser.add_argument(
        "--hyy-reps",
        type=int,
        default=11,
        help="timed runs of the selection and of the raw read (default: %(default)s)",
    )
    parser.add_argument(
        "--gamgam-files", type=int, default=4, help="generated GamGam files (default: 4)"
    )
    parser.add_argument(
        "--gamgam-events",
        type=int,
        default=100_000,
        help="events per generated GamGam file (default: %(default)s)",
    )
    parser.add_argument(
        "--dask-files", type=int, default=4, help="GamGam files for the Dask figure (default: 4)"
    )
    parser.add_argument(
        "--dask-events",
        type=int,
        default=500_000,
        help="events per file for the Dask figure (default: %(default)s)",
    )
    parser.add_argument(
        "--dask-reps", type=int, default=5, help="timed pairs for the Dask figure (default: 5)"
    )
    parser.add_argument(
        "--keep-logs", type=Path, help="copy each stack's logs here before removing it"
    )
    args = parser.parse_args(argv)
    counts = ("spawns", "concurrent", "cache_users", "cache_rounds", "cache_files")
    counts += ("cache_file_mb", "read_reps", "hyy_reps", "gamgam_files", "gamgam_events")
    counts += ("dask_files", "dask_events", "dask_reps")
    if any(getattr(args, name) < 1 for name in counts) or args.warmup < 0:
        parser.error("counts must be >= 1, --warmup >= 0")
    if args.cache_rate_mbps <= 0:
        parser.error("--cache-rate-mbps must be > 0")
    if args.cache_users < 2:
        parser.error("--cache-users must be >= 2 (the 1-user rounds are the reference)")
    return args


def token_group(args: argparse.Namespace, out: IO[str]) -> None:
    from benchmarks.tokens import token_figures

    with running_stack("tokens", args.keep_logs) as stack:
        token_figures(stack, lambda figure, value, **c: emit(out, figure, value, **c), log)


def dask_group(args: argparse.Namespace, out: IO[str]) -> None:
    from benchmarks import dask_scaleout

    site = {
        "events": args.dask_events,
        "dask": {"enabled": True, "max_workers_per_user": dask_scaleout.WORKERS},
        "demo_data": {"layouts": ["GamGam"], "files": args.dask_files},
    }
    with running_stack("dask", args.keep_logs, site) as stack:
        user = "bench-dask"
        stack.admin.ensure_user(user)
        stack.admin.start_server(user)
        result = dask_scaleout.run(stack, user, args.dask_reps)
        emit(out, DASK_SPEEDUP, result.pop("value"), **result)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = claim_stdout()
    signal.signal(signal.SIGTERM, _terminate)
    folder = Path(tempfile.mkdtemp(prefix="lakehub-bench-", dir="/tmp"))
    data = BenchData(folder, args.gamgam_files, args.gamgam_events)
    groups = [
        ((RATIO, OVERHEAD), spawn_ratio),
        ((CONCURRENT,), concurrent_failures),
        ((CACHE_SOURCE, CACHE_WALL, CACHE_READ), lambda a, o: cache_figures(a, o, data)),
        ((HYY_RATIO, HYY_RATE), lambda a, o: hyy_figures(a, o, data)),
        ((RENEWAL_CPU, RENEWAL_P99), token_group),
        ((DASK_SPEEDUP,), dask_group),
        ((k8s_bench.P99, k8s_bench.FAILURES), lambda a, o: k8s_bench.run(out=o)),
    ]
    began = time.monotonic()
    failed = []
    try:
        for figures, run in groups:
            if args.only and args.only not in figures:
                continue
            wanted = [f for f in figures if args.only in (None, f)]
            log(f"measuring {', '.join(wanted)}")
            group_began = time.monotonic()
            try:
                run(args, out)
            except Exception:
                traceback.print_exc(file=sys.stderr)
                failed.extend(wanted)
            log(f"{', '.join(wanted)}: {time.monotonic() - group_began:.0f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log(f"done in {time.monotonic() - began:.0f} s")
    if failed:
        log(f"no value for: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        log("interrupted; the stacks were stopped")
        raise SystemExit(130) from None
