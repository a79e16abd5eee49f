"""One student's wait: from pressing "Sign in" to JupyterLab listing their home.

login_to_lab_s
    Debian's Chromium (Playwright) opens the hub's login page, fills in a student who
    signed up and was approved beforehand (never logged in: no Rucio account, no home, no
    course clone yet), presses "Sign in" (and Start on the spawn form, when the site
    offers profiles to choose from) and waits until JupyterLab's file browser lists
    the home.  The median over ``--login-users`` students (one browser context each,
    after a warm-up login), on the local stack with every lakehub hook and extension and
    real JupyterLab servers.  Goal < 5 s.  Context, per student: authentication (the login
    form's answer), the hub's spawn (from its log: lakehub's hook steps and the server
    process start) and JupyterLab's first page until the listing.
login_to_lab_ratio_vs_vanilla
    The same measure on a bare hub beside it: no lakehub hooks, servers from a plain
    JupyterLab environment (``requirements/vanilla.txt``: the same JupyterHub and
    JupyterLab, no extensions of lakehub's, no Rucio panel, no Dask); the two hubs take
    turns, and the value is the median of the pairs' ratios.  Goal <= 1.2.
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import subprocess
import time
from typing import IO

from benchmarks.common import Family, count, emit, log, running_stack
from localstack.hubclient import approve_signup, signup
from sitefile.state import REPO
from testkit.browser import chromium, start_from_the_spawn_form
from testkit.harness import Stack, unique_user

LOGIN = "login_to_lab_s"
RATIO = "login_to_lab_ratio_vs_vanilla"
GOAL_S = 5.0
RATIO_GOAL = 1.2
LISTING = ".jp-DirListing-content"
_STARTED = re.compile(r"User (\S+) took ([0-9.]+) seconds to start")
_STEPS = re.compile(r"lakehub: (\S+) ready in ([0-9.]+) s \((.*)\)")
_STEP = re.compile(r"([^,;]+?) ([0-9.]+) s\b")


def students(stack: Stack, n: int) -> list[tuple[str, str]]:
    """``n`` students signed up on the real form and approved by the site's admin."""
    admin, admin_password = stack.site.auth.admin_users[0], secrets.token_urlsafe(12)
    signup(stack.url, admin, admin_password)
    made = []
    for _ in range(n):
        name, password = unique_user("login"), secrets.token_urlsafe(12)
        signup(stack.url, name, password)
        approve_signup(stack.url, admin, admin_password, name)
        made.append((name, password))
    return made


def log_in(browser, url: str, name: str, password: str, limit_s: float) -> dict:
    """Seconds from "Sign in" to: the login form's answer, and the home's listing."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{url}/hub/login")
        page.fill("#username_input", name)
        page.fill("#password_input", password)
        start = time.perf_counter()
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.click("#login_submit")
        authenticated = time.perf_counter() - start
        if posted.value.status >= 400:
            raise RuntimeError(f"login of {name}: HTTP {posted.value.status}")
        start_from_the_spawn_form(page, limit_s * 1000)  # the site's profiles: Start at once
        home = re.compile(rf"/user/{re.escape(name)}/api/contents/?\?")  # the home's listing
        with page.expect_response(
            lambda r: home.search(r.url) and r.status == 200, timeout=limit_s * 1000
        ):
            page.wait_for_url(re.compile(rf"/user/{re.escape(name)}/lab"), timeout=limit_s * 1000)
            in_lab = time.perf_counter() - start
        page.locator(LISTING).wait_for(state="visible", timeout=limit_s * 1000)
        listed = time.perf_counter() - start
    finally:
        context.close()
    return {"authenticated_s": authenticated, "lab_url_s": in_lab, "listed_s": listed}


def hub_log_facts(stack: Stack, name: str) -> dict:
    """What the hub's log says about ``name``'s spawn: the whole spawn, lakehub's hook
    and each of its steps (absent on a hub without lakehub's hooks), and the server
    process's start (the spawn without the hook)."""
    text = (stack.paths.logs / "hub.log").read_text(errors="replace")
    facts: dict = {}
    for m in _STARTED.finditer(text):
        if m.group(1) == name:
            facts["spawn_s"] = float(m.group(2))
    for m in _STEPS.finditer(text):
        if m.group(1) == name:
            facts["hooks_s"] = float(m.group(2))
            facts["hook_steps"] = {k.strip(): float(v) for k, v in _STEP.findall(m.group(3))}
    if "spawn_s" in facts:
        facts["server_start_s"] = facts["spawn_s"] - facts.get("hooks_s", 0.0)
    return facts


def breakdown(runs: list[dict]) -> dict:
    """The median of each part of the wait over the students (seconds): authentication,
    lakehub's hook and its steps (overlapping steps may add up to more than the hook),
    the server process's start, and JupyterLab's page from its address to the listing."""
    parts: dict[str, list[float]] = {}
    for r in runs:
        flat = {k: v for k, v in r.items() if isinstance(v, float)}
        flat["lab_page_s"] = r["listed_s"] - r["lab_url_s"]
        flat.update({f"hook {k}": v for k, v in r.get("hook_steps", {}).items()})
        for k, v in flat.items():
            parts.setdefault(k, []).append(v)
    return {k: round(statistics.median(v), 3) for k, v in parts.items()}


def stop_server(stack: Stack, name: str) -> None:
    stack.admin.stop_server(name)


def login_figures(args: argparse.Namespace, out: IO[str]) -> None:
    subprocess.run(["bash", str(REPO / "scripts" / "ensure-env.sh"), "vanilla"], check=True)
    n = args.login_users
    site = {
        "courses": [
            {"name": "demo", "source": str(REPO / "examples/courses/demo"), "target": "course-demo"}
        ]
    }
    with (
        running_stack("login-lakehub", args.keep_logs, site) as lakehub,
        running_stack(
            "login-vanilla",
            args.keep_logs,
            with_hooks=False,
            with_rucio=False,
            single_user_env="vanilla",
        ) as vanilla,
        chromium() as browser,
    ):
        from courses.local import push

        push(lakehub.site, lakehub.paths, "demo")  # the course's first revision
        hubs = {"lakehub": lakehub, "vanilla": vanilla}
        people = {label: students(stack, n + 1) for label, stack in hubs.items()}
        runs: dict[str, list[dict]] = {"lakehub": [], "vanilla": []}
        for i in range(n + 1):  # the first round warms both up and is not counted
            order = ("lakehub", "vanilla") if i % 2 == 0 else ("vanilla", "lakehub")
            for label in order:
                stack = hubs[label]
                name, password = people[label][i]
                result = log_in(browser, stack.url, name, password, args.login_timeout)
                result.update(hub_log_facts(stack, name))
                stop_server(stack, name)
                log(f"login {label} {'warm-up' if i == 0 else i}: {result}")
                if i:
                    runs[label].append(result)
    mine = [r["listed_s"] for r in runs["lakehub"]]
    bare = [r["listed_s"] for r in runs["vanilla"]]
    context = {
        "students": n,
        "single_user": "JupyterLab (real servers)",
        "lakehub_p50": breakdown(runs["lakehub"]),
        "vanilla_p50": breakdown(runs["vanilla"]),
        "vanilla_p50_s": round(statistics.median(bare), 3),
        "breakdown": "authenticated_s: the login form's answer; spawn_s: the hub's own"
        " 'took N seconds to start' (hooks_s: lakehub's hook, its steps as 'hook NAME',"
        " which overlap; server_start_s: the server process until it answers);"
        " lab_url_s: until the browser is at /lab; lab_page_s: from there until the file"
        " browser lists the home; listed_s: the whole wait",
    }
    value = statistics.median(mine)
    emit(out, LOGIN, round(value, 3), goal=f"< {GOAL_S}", goal_met=value < GOAL_S, **context)
    ratio = statistics.median(a / b for a, b in zip(mine, bare, strict=True))
    emit(
        out,
        RATIO,
        round(ratio, 3),
        goal=f"<= {RATIO_GOAL}",
        goal_met=ratio <= RATIO_GOAL,
        lakehub_p50_s=round(value, 3),
        **context,
    )


def login_arguments(parser: argparse.ArgumentParser) -> None:
    count(parser, "--login-users", 5, "students timed on each hub")
    count(parser, "--login-timeout", 180, "seconds one login may take")


FAMILIES = (Family((LOGIN, RATIO), login_figures, login_arguments),)
