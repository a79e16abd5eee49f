"""`make up`, `make down`, `make clean`, `make status`: the embedded single-machine stack.

    python -m localstack.stack up [--site examples/site.local.yaml]

``up`` starts a real Rucio server (if the site asks for the embedded one), fills it
with demo data, starts JupyterHub (with configurable-http-proxy and the token issuer as
its managed service) and returns once the hub answers.  A second ``up`` reuses
everything that exists.  ``down`` stops what ``up`` started, by PID, and keeps the data.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lakehub.contract import (
    ENV_HOOKS,
    ENV_MOCK_SERVERS,
    ENV_SERVER_CMD,
    ENV_SINGLEUSER_ENV,
    ENV_SITE,
    ENV_STATE,
    IDP_GROUP_PREFIX,
    LOCAL_COURSE_GROUP_PREFIX,
)
from lakehub.files import write_private
from localstack import postgres, procs, rucio_server
from localstack.bootstrap import DemoDataChanged
from localstack.hubclient import HubAdmin, HubError, approve_signup, signup
from sitefile import Site, SiteError, load_site
from sitefile.state import REPO, StackPaths, chp_binary, venv_bin
from spawner_hooks.local_spawner import SYSTEM_USER_PREFIX
from tokens.mint import create_signing_key

HUB = "jupyterhub"
DEFAULT_SITE = REPO / "examples" / "site.local.yaml"
DEMO_STUDENT = "student"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def prepare_secrets(paths: StackPaths) -> None:
    """Create the state's private folders (only the hub's account may enter them: the
    Rucio database holds validated tokens, the hub database hashed ones) and the secrets."""
    for folder in (
        paths.secrets,
        paths.rucio,
        paths.hub,
        paths.logs,
        paths.run,
        paths.cache_service,
        paths.dask_gateway,
    ):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
    create_signing_key(paths.issuer_key)
    if not paths.admin_token.exists():
        write_private(paths.admin_token, secrets.token_hex(32))


def hub_env(
    site_file: Path,
    paths: StackPaths,
    *,
    with_hooks: bool = True,
    mock_servers: bool = False,
    single_user_env: str = "analysis",
    server_cmd: list[str] | None = None,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUCIO_", "JUPYTER"))}
    env.update(
        {
            ENV_SITE: str(site_file.resolve()),
            ENV_STATE: str(paths.state),
            ENV_HOOKS: "1" if with_hooks else "0",
            ENV_MOCK_SERVERS: "1" if mock_servers else "0",
            ENV_SINGLEUSER_ENV: single_user_env,
            "PYTHONPATH": str(REPO),
            "TMPDIR": str(paths.hub / "tmp"),
        }
    )
    if server_cmd:
        env[ENV_SERVER_CMD] = json.dumps(server_cmd)
    return env


def rucio_database(site: Site) -> rucio_server.Database:
    assert site.local is not None
    if site.local.rucio_database == "postgresql":
        return rucio_server.Database("postgresql", site.local.rucio_database_port)
    return rucio_server.SQLITE


def start_rucio(site: Site, paths: StackPaths, issuer_url: str) -> None:
    port = site.embedded_rucio_port
    if port is None:
        return
    database = rucio_database(site)
    if database.kind == "postgresql":
        say(
            f"starting PostgreSQL for Rucio on 127.0.0.1:{database.port}"
            f" (log: {paths.logs / 'postgresql.log'})"
        )
        postgres.start(paths, database.port)
    rucio_server.configure(paths, issuer_url, database)
    if rucio_server.init_database(paths, database):
        say(f"created the Rucio database ({database.kind}) and its root account")
    say(f"starting Rucio on http://127.0.0.1:{port} (log: {paths.logs / 'rucio.log'})")
    rucio_server.start(paths, port, database=database)


def load_demo_data(site: Site, paths: StackPaths, progress: bool = True) -> None:
    from hub_config.local import cache_root
    from localstack.bootstrap import ensure_cache_rse, ensure_demo_datasets

    assert site.local is not None
    demo = site.local.demo_data
    say(
        f"registering demo data in scope {demo.scope}: {', '.join(demo.layouts)}"
        f" ({demo.files} files x {demo.events} events each)"
    )
    done = ensure_demo_datasets(site.rucio.default, paths, demo, progress=progress)
    total = sum(f.bytes for files in done.values() for f in files)
    say(f"demo datasets ready: {', '.join(done)} ({total / 1e6:.1f} MB)")
    ensure_cache_rse(site.rucio.default, paths, site.cache.rse, cache_root(site, paths))


def start_hub(
    site_file: Path,
    paths: StackPaths,
    site: Site,
    *,
    with_hooks: bool = True,
    mock_servers: bool = False,
    single_user_env: str = "analysis",
    server_cmd: list[str] | None = None,
) -> int:
    assert site.local is not None
    if not chp_binary().exists():
        raise procs.StartError(
            f"configurable-http-proxy is missing at {chp_binary()}; run `make up`"
        )
    (paths.hub / "tmp").mkdir(parents=True, exist_ok=True)
    paths.homes.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.homes, 0o755)  # noqa: S103  each home inside is 0700
    pid = procs.running(HUB, paths.run)
    url = f"http://127.0.0.1:{site.local.hub_port}"
    if pid is not None:
        return pid
    log_path = paths.logs / "hub.log"
    say(f"starting JupyterHub on {url} (log: {log_path})")
    return procs.serve(
        HUB,
        [
            str(venv_bin("dev", "jupyterhub")),
            "-f",
            str(REPO / "hub_config" / "jupyterhub_config.py"),
        ],
        ready_url=f"{url}/hub/api",
        ready=lambda r: r.status_code == 200,
        what=f"JupyterHub on {url}",
        run_dir=paths.run,
        log_path=log_path,
        env=hub_env(
            site_file,
            paths,
            with_hooks=with_hooks,
            mock_servers=mock_servers,
            single_user_env=single_user_env,
            server_cmd=server_cmd,
        ),
        cwd=paths.hub,
    )


def ensure_demo_logins(site: Site, paths: StackPaths) -> list[str]:
    """Sign up the site's first admin, a demo student and the courses' instructors named
    in the site file once; passwords in a 0600 file."""
    assert site.local is not None
    if paths.demo_logins.exists():
        return [line.split(":", 1)[0] for line in paths.demo_logins.read_text().splitlines()]
    base = f"http://127.0.0.1:{site.local.hub_port}"
    admin = site.auth.admin_users[0]
    admin_password = secrets.token_urlsafe(12)
    signup(base, admin, admin_password)  # admins are approved on sign-up
    student_password = secrets.token_urlsafe(12)
    signup(base, DEMO_STUDENT, student_password)
    approve_signup(base, admin, admin_password, DEMO_STUDENT)
    lines = [f"{admin}:{admin_password}", f"{DEMO_STUDENT}:{student_password}"]
    listed = [n for c in site.courses for n in c.instructors if not n.startswith(IDP_GROUP_PREFIX)]
    for name in dict.fromkeys(n for n in listed if n not in (admin, DEMO_STUDENT)):
        password = secrets.token_urlsafe(12)
        signup(base, name, password)
        approve_signup(base, admin, admin_password, name)
        lines.append(f"{name}:{password}")
    hub = HubAdmin(base, paths.admin_token.read_text().strip())
    for line in lines:  # so they show in the admin panel before their first login
        hub.ensure_user(line.split(":", 1)[0])
    write_private(paths.demo_logins, "\n".join(lines) + "\n")
    return [line.split(":", 1)[0] for line in lines]


def demo_did(site: Site) -> str:
    assert site.local is not None
    demo = site.local.demo_data
    return f"{demo.scope}:{demo.dataset_name(demo.layouts[0])}"


def publish_first_revisions(site: Site, paths: StackPaths) -> None:
    """Courses never published get their first revision, so students have it at once;
    later revisions are the instructor's call (`make push-notebooks`)."""
    from courses.git import CourseError
    from courses.local import mirror, push

    for course in site.courses:
        if (mirror(paths, course.name) / "HEAD").exists():
            continue
        try:
            print(push(site, paths, course.name).text(), flush=True)
        except CourseError as exc:
            say(f"course {course.name} not published: {exc}")


def up(site_file: Path, paths: StackPaths) -> int:
    started = time.monotonic()
    site = load_site(site_file)
    if site.local is None:
        raise SiteError(str(site_file), ["local: the local stack needs a 'local' section"])
    paths.state.mkdir(parents=True, exist_ok=True)
    prepare_secrets(paths)
    from hub_config.local import issuer_url

    start_rucio(site, paths, issuer_url(site))
    load_demo_data(site, paths)
    publish_first_revisions(site, paths)
    start_hub(site_file, paths, site)
    users = ensure_demo_logins(site, paths)
    url = f"http://127.0.0.1:{site.local.hub_port}"
    print(
        f"""
lakehub is up ({time.monotonic() - started:.0f} s): {url}

  Log in as one of: {", ".join(users)}
  Passwords:        cat {paths.demo_logins}
  Students sign up at {url}/hub/signup; admins approve them at {url}/hub/authorize
  Rucio:            {site.rucio.default.rucio_host}  (datasets like {demo_did(site)})
  Logs:             {paths.logs}/
  Stop:             make down      (keeps data)     Remove all: make clean
""",
        flush=True,
    )
    return 0


def down(paths: StackPaths) -> int:
    stopped = []
    if procs.stop(HUB, paths.run, timeout=30):
        stopped.append("JupyterHub (and the servers it started)")
    if rucio_server.stop(paths):
        stopped.append("Rucio")
    say("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def remove_system_users(paths: StackPaths) -> list[str]:
    if not paths.system_users.exists():
        return []
    removed = []
    for name in sorted(set(paths.system_users.read_text().split())):
        if name.startswith(SYSTEM_USER_PREFIX) and shutil.which("userdel"):
            subprocess.run(["userdel", name], capture_output=True)
            removed.append(name)
    if paths.system_groups.exists():  # the courses' groups, once their members are gone
        for name in sorted(set(paths.system_groups.read_text().split())):
            if name.startswith(LOCAL_COURSE_GROUP_PREFIX) and shutil.which("groupdel"):
                subprocess.run(["groupdel", name], capture_output=True)
                removed.append(name)
    return removed


def clean(paths: StackPaths) -> int:
    down(paths)
    removed = remove_system_users(paths)
    if removed:
        say(f"removed {len(removed)} system account(s) created for hub users")
    if paths.state.exists():
        shutil.rmtree(paths.state)
        say(f"removed {paths.state}")
    return 0


def status(paths: StackPaths) -> int:
    for name in (HUB, rucio_server.PROCESS, postgres.PROCESS):
        pid = procs.running(name, paths.run)
        print(f"{name:12} {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localstack.stack", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["up", "down", "clean", "status"])
    parser.add_argument(
        "--site", type=Path, default=DEFAULT_SITE, help="site file (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    paths = StackPaths.default()
    try:
        if args.command == "up":
            return up(args.site, paths)
        return {"down": down, "clean": clean, "status": status}[args.command](paths)
    except SiteError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (procs.StartError, HubError, DemoDataChanged) as exc:
        print(f"lakehub: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
