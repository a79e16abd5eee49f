"""The class arrives: N students who never logged in before, within two minutes.

Each student (signed up and approved beforehand, as a class is before its first
lesson) arrives at a random moment of ``--classroom-window`` seconds (fixed seed),
through the real hub and configurable-http-proxy of the local stack: fetches the login
page, presses "Sign in" (NativeAuthenticator's form), follows the hub to the spawn
(every lakehub hook: system account and home, Rucio account, token, course pull, cache
settings), waits on the spawn's progress stream as the spawn page does, until the
server answers through the proxy, then asks the cache service for the course's dataset
with the session's own hub token and the Rucio token the spawn wrote.  Light servers
stand in for JupyterLab (:mod:`testkit.light_server`: it answers the hub's checks and
shows its environment, and starts in hundredths of a second), since 200 JupyterLabs do
not fit on 2 cores; what the figures measure is the hub, its hooks and its services.  Run once with
Rucio on SQLite and once on PostgreSQL (``--classroom-database``).

classroom_failures
    Students without a ready server, a non-empty token, the course material and the
    dataset from the cache at the end of their first attempt.  Goal 0.  A student whose
    spawn failed tries again as a person would: after the wait the hub's page names when
    throttled, else once more (context: ``ok_after_retry``, within the timeout).
classroom_login_to_ready_p99_s
    Seconds from pressing "Sign in" until the server answered through the proxy, p99
    over the students.  Goal < 10.
classroom_hub_cpu_mean
    The hub process's CPU (cores, from /proc/PID/stat) over the storm, from the first
    arrival until the last student is done.  Goal < 1.0.
classroom_hub_api_p99_ms
    An admin listing the users (``GET /hub/api/users``) every second during the storm:
    p99 of its answers.  Goal < 1000.
classroom_rucio_requests_per_login
    Requests the Rucio server logged (its access log) during the storm, per student whose
    spawn ran the hooks (a home was made), without the cache service's periodic rule
    poll.  Goal: a small constant, the same for 20 and 200 students.
classroom_cache_source_bytes_ratio
    Bytes the cache service read from the source RSE during the storm over the
    dataset's size.  Goal 1.0: the class downloads it once.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import random
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import quote

import httpx

from benchmarks.common import Family, count, emit, hub_log_problems, log, option, running_stack
from lakehub.contract import ENV_CACHE_URL, SESSION_DIR, TOKEN_FILE
from localstack import postgres, procs, rucio_server
from localstack.hubclient import login, signup
from localstack.stack import HUB, demo_did
from sitefile.state import REPO
from spawner_hooks.profiles import OPTION as PROFILE_OPTION
from testkit.harness import Stack, cache_stats, unique_user

FAILURES = "classroom_failures"
P99 = "classroom_login_to_ready_p99_s"
CPU = "classroom_hub_cpu_mean"
API = "classroom_hub_api_p99_ms"
RUCIO = "classroom_rucio_requests_per_login"
SOURCE = "classroom_cache_source_bytes_ratio"
OTHERS = (rucio_server.PROCESS, postgres.PROCESS)  # measured with the hub: Rucio, its database
FIGURES = (FAILURES, P99, CPU, API, RUCIO, SOURCE)
READY_GOAL_S = 10.0
CPU_GOAL = 1.0
API_GOAL_MS = 1000.0
SERVER = "light: testkit/light_server.py (answers the hub's checks and /env), not JupyterLab"
COURSE = {"name": "demo", "source": str(REPO / "examples/courses/demo"), "target": "course-demo"}
_XSRF = re.compile(r'name="_xsrf"\s+value="([^"]+)"')
_CHECKED = re.compile(rf'name="{PROFILE_OPTION}" value="([^"]*)" checked')
_ACCESS = re.compile(r'"(GET|POST|PUT|DELETE|HEAD|PATCH) (/[^/ ?"]*)([^ "]*) HTTP')
_RULE_POLL = "/rules/?rse_expression="  # the cache service's poll, whoever logs in


@dataclass
class Student:
    name: str
    password: str
    arrival_s: float
    steps: dict[str, float] = field(default_factory=dict)
    failure: str | None = None
    ok_after_retry: bool = False


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile by the nearest rank (p99 of 20 values is the largest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


# --- before the lesson: the class signs up, the instructor approves --------------------


async def form_xsrf(client: httpx.AsyncClient, path: str) -> str:
    page = await client.get(path)
    page.raise_for_status()
    match = _XSRF.search(page.text)
    if not match:
        raise RuntimeError(f"no _xsrf field on {path}")
    return match.group(1)


async def log_in(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    xsrf = await form_xsrf(client, "/hub/login")
    return await client.post(
        "/hub/login",
        data={"username": name, "password": password, "_xsrf": xsrf},
        follow_redirects=False,
    )


def enrol(stack: Stack, students: list[Student]) -> None:
    """Sign every student up on the real form; the admin approves each (one session)."""
    admin, admin_password = stack.site.auth.admin_users[0], unique_user("pw") + "Xy7!"
    signup(stack.url, admin, admin_password)
    client = login(stack.url, admin, admin_password)
    try:
        for i, s in enumerate(students):
            signup(stack.url, s.name, s.password)
            r = client.get(f"/hub/authorize/{quote(s.name, safe='')}")  # 302: approved
            if r.status_code >= 400:
                raise RuntimeError(f"approving {s.name}: HTTP {r.status_code}")
            if (i + 1) % 50 == 0:
                log(f"classroom: {i + 1}/{len(students)} students enrolled")
    finally:
        client.close()


# --- the lesson -----------------------------------------------------------------------


async def wait_for_spawn(client: httpx.AsyncClient, name: str, limit_s: float) -> None:
    """Follow the spawn's progress stream (what the spawn page shows) until ready."""
    xsrf = client.cookies.get("_xsrf", "")
    async with client.stream(
        "GET",
        f"/hub/api/users/{quote(name, safe='')}/server/progress",
        params={"_xsrf": xsrf},
        headers={"X-XSRFToken": xsrf, "Accept": "text/event-stream"},
        timeout=httpx.Timeout(limit_s, connect=30),
    ) as stream:
        if stream.status_code != 200:
            raise RuntimeError(f"progress stream: HTTP {stream.status_code}")
        async for line in stream.aiter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event.get("failed"):
                raise RuntimeError(f"spawn failed: {event.get('message', '')[:200]}")
            if event.get("ready"):
                return
    raise RuntimeError("the progress stream ended before the server was ready")


class Throttled(RuntimeError):
    """JupyterHub's "Too many users trying to log in right now. Try again in N seconds"."""

    def __init__(self, retry_after_s: float):
        super().__init__(f"throttled by the hub (429), try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


async def press_start(
    client: httpx.AsyncClient, name: str, form: str, limit_s: float
) -> httpx.Response:
    """The spawn form (a site with more than one profile): Start with the profile it
    preselects, as a student would."""
    xsrf = _XSRF.search(form)
    chosen = _CHECKED.search(form)
    token = xsrf.group(1) if xsrf else client.cookies.get("_xsrf", "")
    data = {"_xsrf": token}
    if chosen:
        data[PROFILE_OPTION] = html.unescape(chosen.group(1))
    r = await client.post(
        f"/hub/spawn/{quote(name, safe='')}",
        data=data,
        headers={
            "X-XSRFToken": token,
            "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Site": "same-origin",
        },
        follow_redirects=True,
        timeout=limit_s,
    )
    if r.status_code == 429:
        raise Throttled(float(r.headers.get("Retry-After") or 30))
    return r


async def spawn_until_answered(client: httpx.AsyncClient, name: str, limit_s: float) -> dict:
    """From the hub's home page to the server answering through the proxy: its env."""
    r = await client.get("/hub/", follow_redirects=True, timeout=limit_s)
    if r.status_code == 429:
        raise Throttled(float(r.headers.get("Retry-After") or 30))
    if r.url.path.rstrip("/").endswith("/hub/spawn") and r.status_code == 200:
        r = await press_start(client, name, r.text, limit_s)
    if not r.url.path.startswith(f"/user/{name}/") or r.status_code != 200:
        if "/hub/spawn-pending/" not in r.url.path:
            raise RuntimeError(f"the hub sent the student to {r.url.path} (HTTP {r.status_code})")
        await wait_for_spawn(client, name, limit_s)
    r = await client.get(f"/user/{quote(name, safe='')}/env", follow_redirects=False)
    if r.status_code != 200:
        raise RuntimeError(f"the server did not answer through the proxy: HTTP {r.status_code}")
    return r.json()


async def server_gone(admin: httpx.AsyncClient, name: str, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        r = await admin.get(f"/hub/api/users/{quote(name, safe='')}")
        if r.status_code == 200 and "" not in (r.json().get("servers") or {}):
            return
        await asyncio.sleep(0.5)


def fetch_dataset(stack: Stack, did: str, env: dict, home: Path) -> list[dict]:
    """The session's call: ``lakehub.fetch`` with its hub token and its Rucio token."""
    from lakehub.cache import fetch

    token = (home / SESSION_DIR / TOKEN_FILE).read_text().strip()
    if not token:
        raise RuntimeError("the token file is empty")
    paths = fetch(
        did,
        progress=False,
        timeout=300,
        url=env[ENV_CACHE_URL],
        token=env["JUPYTERHUB_API_TOKEN"],
        rucio_token=token,
    )
    return [{"path": p, "bytes": Path(p).stat().st_size} for p in paths]


async def retry(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    name: str,
    first: Exception,
    deadline: float,
) -> dict:
    """What a student does after a failed start: wait as long as the hub's page says
    (when throttled) or until the failed server is gone, and try again, until the
    deadline (``time.perf_counter()``)."""
    problem: Exception = first
    while True:
        if isinstance(problem, Throttled):
            await asyncio.sleep(problem.retry_after_s)
        else:
            await server_gone(admin, name)
        left = deadline - time.perf_counter()
        if left <= 0:
            raise problem
        try:
            return await spawn_until_answered(client, name, left)
        except Throttled as exc:
            problem = exc
        except (RuntimeError, httpx.HTTPError):
            await server_gone(admin, name)  # one more plain try, then give up
            left = max(1.0, deadline - time.perf_counter())
            return await spawn_until_answered(client, name, left)


async def attend(
    stack: Stack,
    s: Student,
    did: str,
    began: float,
    limit_s: float,
    admin: httpx.AsyncClient,
    sizes: dict[str, int],
) -> None:
    await asyncio.sleep(max(0.0, began + s.arrival_s - time.monotonic()))
    home = stack.home(s.name)
    async with httpx.AsyncClient(base_url=stack.url, timeout=limit_s) as client:
        try:
            t0 = time.perf_counter()
            r = await log_in(client, s.name, s.password)
            if r.status_code != 302:
                raise RuntimeError(f"login answered HTTP {r.status_code}")
            s.steps["authenticated_s"] = time.perf_counter() - t0
            try:
                env = await spawn_until_answered(client, s.name, limit_s)
            except (RuntimeError, httpx.HTTPError) as exc:
                s.failure = f"first spawn: {exc}"
                env = await retry(client, admin, s.name, exc, t0 + limit_s)
                s.ok_after_retry = True
            s.steps["ready_s"] = time.perf_counter() - t0
            course = home / COURSE["target"]
            if not course.is_dir() or not any(course.iterdir()):
                raise RuntimeError(f"no course material in {course}")
            files = await asyncio.to_thread(fetch_dataset, stack, did, env, home)
            sizes.update({f["path"]: f["bytes"] for f in files})
            s.steps["dataset_s"] = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001  every failure is counted and named
            s.failure = (s.failure + "; then " if s.failure else "") + (
                f"{type(exc).__name__}: {str(exc)[:300]}"
            )
            s.ok_after_retry = False


def stack_cpu_seconds(roots: list[int]) -> float:
    """CPU seconds of every process under ``roots`` (the hub, Rucio, PostgreSQL), each
    with its finished children's (the hooks' helpers, git, useradd); the light servers
    are left out: they stand in for what is not measured here."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, float, bool]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            light = b"light_server.py" in (entry / "cmdline").read_bytes()
        except OSError:
            continue
        used = sum(int(f) for f in fields[11:15]) / tick
        table[int(entry.name)] = (int(fields[1]), used, light)
    total = 0.0
    for pid, (_parent, used, light) in table.items():
        node = pid
        while node not in roots and node in table and node > 1:
            node = table[node][0]
        if node in roots and not light:
            total += used
    return total


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the process's own CPU seconds, with its waited-for children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tick
    return own, own + (int(fields[13]) + int(fields[14])) / tick


async def watch_hub(
    admin: httpx.AsyncClient, pid: int, done: asyncio.Event, api_ms: list[float], cpu: list
) -> None:
    """Every second: the admin's user listing (timed) and the hub's CPU."""
    last = (time.monotonic(), cpu_seconds(pid)[0])
    while not done.is_set():
        t = time.perf_counter()
        r = await admin.get("/hub/api/users")
        r.raise_for_status()
        api_ms.append((time.perf_counter() - t) * 1000)
        now, used = time.monotonic(), cpu_seconds(pid)[0]
        cpu.append((used - last[1]) / (now - last[0]))
        last = (now, used)
        try:
            await asyncio.wait_for(done.wait(), 1.0)
        except TimeoutError:
            pass


def rucio_requests(stack: Stack) -> list[str]:
    path = stack.paths.logs / rucio_server.ACCESS_LOG
    return path.read_text(errors="replace").splitlines() if path.exists() else []


async def storm(stack: Stack, students: list[Student], did: str, limit_s: float) -> dict:
    pid = procs.running(HUB, stack.paths.run)
    assert pid is not None, "the hub is not running"
    api_ms: list[float] = []
    cpu_per_s: list[float] = []
    sizes: dict[str, int] = {}
    done = asyncio.Event()
    async with httpx.AsyncClient(
        base_url=stack.url, headers={"Authorization": f"token {stack.admin_token}"}, timeout=120
    ) as admin:
        roots = [pid, *(p for p in (procs.running(n, stack.paths.run) for n in OTHERS) if p)]
        cpu0, stack0 = cpu_seconds(pid), stack_cpu_seconds(roots)
        began = time.monotonic()
        watcher = asyncio.create_task(watch_hub(admin, pid, done, api_ms, cpu_per_s))
        await asyncio.gather(
            *(attend(stack, s, did, began, limit_s, admin, sizes) for s in students)
        )
        wall = time.monotonic() - began
        cpu1, stack1 = cpu_seconds(pid), stack_cpu_seconds(roots)
        done.set()
        await watcher
    return {
        "wall_s": wall,
        "hub_cpu": (cpu1[0] - cpu0[0]) / wall,
        "hub_cpu_with_children": (cpu1[1] - cpu0[1]) / wall,
        "hub_cpu_peak_1s": max(cpu_per_s, default=0.0),
        "stack_cpu_s_per_login": (stack1 - stack0) / len(students),
        "api_ms": api_ms,
        "dataset_bytes": sum(sizes.values()),
    }


def classroom_run(args: argparse.Namespace, out: IO[str], database: str) -> None:
    n = args.students
    rng = random.Random(args.classroom_seed)
    arrivals = sorted(rng.uniform(0, args.classroom_window) for _ in range(n))
    students = [Student(unique_user("st"), unique_user("pw") + "Q9!", a) for a in arrivals]
    site = {"courses": [COURSE], "rucio_database": database}
    with running_stack(f"classroom-{database}", args.keep_logs, site, light_servers=True) as stack:
        from courses.local import push

        push(stack.site, stack.paths, COURSE["name"])  # the course's first revision
        did = demo_did(stack.site)
        log(f"classroom-{database}: enrolling {n} students")
        enrol(stack, students)
        source_before = cache_stats(stack)["source_bytes"]
        requests_before = len(rucio_requests(stack))
        log(f"classroom-{database}: {n} students arrive over {args.classroom_window:.0f} s")
        load_before = os.getloadavg()[0]
        facts = asyncio.run(storm(stack, students, did, args.classroom_timeout))
        load_after = os.getloadavg()[0]
        requests = rucio_requests(stack)[requests_before:]
        source = cache_stats(stack)["source_bytes"] - source_before
        log_errors = len(hub_log_problems(stack.paths.state))
        # students whose spawn ran the hooks (a home was made); a throttled one never did
        spawned = sum(stack.home(s.name).exists() for s in students)
    failed = [s for s in students if s.failure and not s.ok_after_retry]
    retried = [s for s in students if s.ok_after_retry]
    for s in failed + retried:
        log(f"classroom-{database}: {s.name}: {s.failure}{' (ok after retry)' * s.ok_after_retry}")
    ready = [s.steps["ready_s"] for s in students if "ready_s" in s.steps]
    counted = [ln for ln in requests if _RULE_POLL not in ln]
    kinds = Counter(
        f"{m.group(1)} /{m.group(2).strip('/')}" for ln in counted if (m := _ACCESS.search(ln))
    )
    context = {
        "n": n,
        "database": database,
        "seed": args.classroom_seed,
        "window_s": args.classroom_window,
        "server": SERVER,
        "hooks": "every lakehub hook: system account, home, Rucio account, token, course, cache",
        "wall_s": round(facts["wall_s"], 1),
        "cpus": os.cpu_count(),
        "loadavg_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        "hub_log_error_lines": log_errors,
        "date": time.strftime("%Y-%m-%d"),
    }
    steps = {
        k: round(statistics.median(s.steps[k] for s in students if k in s.steps), 3)
        for k in ("authenticated_s", "ready_s", "dataset_s")
        if any(k in s.steps for s in students)
    }
    emit(
        out,
        FAILURES,
        len(failed) + len(retried),
        goal=0,
        goal_met=not failed and not retried,
        failed_for_good=len(failed),
        ok_after_retry=len(retried),
        reasons=sorted({(s.failure or "")[:160] for s in failed + retried})[:10],
        note="a failure: no ready server, token, course material or dataset at the end of"
        " the first attempt; such a student tries again (after the wait the hub names when"
        " it throttles) within the timeout",
        **context,
    )
    p99 = quantile(ready, 0.99) if ready else float("inf")
    emit(
        out,
        P99,
        round(p99, 3),
        goal=f"< {READY_GOAL_S}",
        goal_met=p99 < READY_GOAL_S,
        p50_s=round(statistics.median(ready), 3) if ready else None,
        max_s=round(max(ready), 3) if ready else None,
        median_steps_s=steps,
        **context,
    )
    emit(
        out,
        CPU,
        round(facts["hub_cpu"], 3),
        goal=f"< {CPU_GOAL}",
        goal_met=facts["hub_cpu"] < CPU_GOAL,
        unit="cores",
        peak_1s=round(facts["hub_cpu_peak_1s"], 3),
        with_children=round(facts["hub_cpu_with_children"], 3),
        stack_cpu_s_per_login=round(facts["stack_cpu_s_per_login"], 3),
        logins_per_minute_per_core=round(60 / facts["stack_cpu_s_per_login"], 1),
        note="the hub process's utime+stime from /proc over the storm's wall time;"
        " with_children adds its finished children (hook helpers, useradd);"
        " stack_cpu_s_per_login: CPU of the hub, its helpers and services, Rucio and its"
        " database per student (light servers left out), whatever else loads the machine;"
        " logins_per_minute_per_core: 60 / that, what one dedicated core sustains",
        **context,
    )
    api = facts["api_ms"]
    api_p99 = quantile(api, 0.99) if api else float("inf")
    emit(
        out,
        API,
        round(api_p99, 1),
        goal=f"< {API_GOAL_MS:.0f}",
        goal_met=api_p99 < API_GOAL_MS,
        unit="ms",
        samples=len(api),
        p50_ms=round(statistics.median(api), 1) if api else None,
        note="an admin's GET /hub/api/users every second during the storm",
        **context,
    )
    per_login = len(counted) / spawned if spawned else float("inf")
    emit(
        out,
        RUCIO,
        round(per_login, 2),
        goal="a small constant, the same for 20 and 200 students",
        requests=len(counted),
        students_spawned=spawned,
        per_student_of_the_class=round(len(counted) / n, 2),
        by_kind=dict(kinds.most_common()),
        rule_polls_left_out=len(requests) - len(counted),
        note="lines of the Rucio server's access log during the storm: the hub's account"
        " set-up, the cache service's checks and transfers",
        **context,
    )
    size = facts["dataset_bytes"]
    ratio = source / size if size else float("inf")
    emit(
        out,
        SOURCE,
        round(ratio, 3),
        goal=1.0,
        goal_met=abs(ratio - 1.0) < 1e-9,
        did=did,
        dataset_bytes=size,
        source_bytes=source,
        **context,
    )


def classroom_figures(args: argparse.Namespace, out: IO[str]) -> None:
    for database in args.classroom_database:
        classroom_run(args, out, database)


def classroom_arguments(parser: argparse.ArgumentParser) -> None:
    count(parser, "--students", 200, "students arriving for the classroom figures")
    option(parser, "--classroom-window", 120.0, "seconds over which they arrive")
    count(parser, "--classroom-seed", 16, "seed of their arrival times")
    option(parser, "--classroom-timeout", 300.0, "seconds one student's spawn may take")
    parser.add_argument(
        "--classroom-database",
        nargs="+",
        choices=("sqlite", "postgresql"),
        default=["sqlite", "postgresql"],
        help="Rucio's database in the classroom runs, one run each (default: both)",
    )


FAMILIES = (Family(FIGURES, classroom_figures, classroom_arguments),)
