"""A class arriving at once: what `make bench classroom` found and what was fixed.

* NativeAuthenticator's bcrypt no longer holds the hub's event loop: other work runs
  while a password is checked (measured by what ran in between, not by time).
* Rucio on PostgreSQL (``local.rucio_database: postgresql``) starts and takes accounts;
  each new student costs a constant number of Rucio requests, an existing one two, a
  known one none (counted in the Rucio server's own access log).
* An account a stopped spawn left without its identity is completed by the next spawn;
  a spawn that failed can be retried and the student gets a working token.

Real components throughout: JupyterHub with configurable-http-proxy, the Rucio server
(SQLite and PostgreSQL), NativeAuthenticator on a real JupyterHub database.  The
single-user servers are :mod:`testkit.light_server` (the tests are about the hub side).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess

import bcrypt
import httpx
import pytest

from hub_config.local import issuer_url
from hub_config.native_auth import LakehubNativeAuthenticator
from localstack import postgres, rucio_server
from localstack.bootstrap import admin_client
from localstack.hubclient import HubError
from localstack.procs import wait_until
from sitefile.state import REPO
from spawner_hooks.names import rucio_account
from spawner_hooks.rucio import AdminCredentials, RucioAccounts
from testkit.harness import stack_folder, start_stack, stop_stack, unique_user, write_site
from tokens.mint import oidc_identity

COURSE = {"name": "demo", "source": str(REPO / "examples/courses/demo"), "target": "course-demo"}
_REQUEST = re.compile(r'"(GET|POST|PUT|DELETE) (/[^ "]*) HTTP')


# --- the password check ---------------------------------------------------------------


def _authenticator(tmp_path, cls, name: str, password: str):
    """``cls`` on a real JupyterHub database holding one approved NativeAuthenticator user."""
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    tmp_path.mkdir(parents=True, exist_ok=True)
    db = orm.new_session_factory(f"sqlite:///{tmp_path / 'hub.sqlite'}")()
    auth = cls(db=db)
    db.add(
        UserInfo(
            username=name,
            password=bcrypt.hashpw(password.encode(), bcrypt.gensalt()),
            is_authorized=True,
        )
    )
    db.commit()
    return auth


async def _steps_while_authenticating(auth, data: dict) -> tuple[str | None, int]:
    """Authenticate once while another task counts its own steps; (result, steps)."""
    steps = 0
    stop = asyncio.Event()

    async def other_work() -> None:
        nonlocal steps
        while not stop.is_set():
            steps += 1
            await asyncio.sleep(0)  # one step, then let the loop run anything else

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)  # the other task is running before the login starts
    before = steps
    result = await auth.authenticate(None, data)
    during = steps - before
    stop.set()
    await other
    return result, during


async def test_the_password_check_leaves_the_event_loop_to_other_requests(tmp_path):
    from nativeauthenticator import NativeAuthenticator

    name, password = "ada", "a long enough password"
    ours = _authenticator(tmp_path / "ours", LakehubNativeAuthenticator, name, password)
    result, steps = await _steps_while_authenticating(
        ours, {"username": name, "password": password}
    )
    assert result == name
    assert steps > 1, "nothing else ran while the password was checked"

    # the upstream class holds the loop for the whole bcrypt check: nothing runs between
    upstream = _authenticator(tmp_path / "upstream", NativeAuthenticator, name, password)
    result, steps = await _steps_while_authenticating(
        upstream, {"username": name, "password": password}
    )
    assert result == name
    assert steps <= 1


async def test_a_wrong_password_is_refused_and_counted(tmp_path):
    auth = _authenticator(tmp_path / "db", LakehubNativeAuthenticator, "ada", "the right one!")
    auth.allowed_failed_logins = 2
    for _ in range(2):
        assert await auth.authenticate(None, {"username": "ada", "password": "wrong"}) is None
    assert await auth.authenticate(None, {"username": "nobody", "password": "x"}) is None
    # blocked after the allowed failures, even with the right password now
    assert await auth.authenticate(None, {"username": "ada", "password": "the right one!"}) is None


# --- Rucio: PostgreSQL, request counts, repairs ---------------------------------------


@pytest.fixture(scope="module")
def pg_stack():
    folder = stack_folder()
    site = write_site(folder, rucio_database="postgresql")
    try:
        yield start_stack(folder / "state", site, light_servers=True)
    finally:
        stop_stack(folder / "state")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def sqlite_stack():
    """SQLite Rucio, with the demo course published."""
    from courses.local import push

    folder = stack_folder()
    site = write_site(folder, courses=[COURSE])
    try:
        stack = start_stack(folder / "state", site, light_servers=True)
        push(stack.site, stack.paths, COURSE["name"])
        yield stack
    finally:
        stop_stack(folder / "state")
        shutil.rmtree(folder, ignore_errors=True)


def _accounts(stack) -> RucioAccounts:
    default = stack.site.rucio.default
    return RucioAccounts(
        default,
        AdminCredentials("root", "root", stack.paths.rucio_root_password),
        issuer_url(stack.site),
        (stack.site.cache.rse, 10**9),
    )


def _requests(stack) -> list[str]:
    """The Rucio server's access log, without token logins and the cache's rule poll."""
    lines = (stack.paths.logs / rucio_server.ACCESS_LOG).read_text().splitlines()
    return [
        f"{m.group(1)} {m.group(2)}"
        for line in lines
        if (m := _REQUEST.search(line))
        and not m.group(2).startswith(("/auth", "/rules/?rse_expression="))
    ]


MARK = "mark"  # the name prefix of _settled's requests


def _settled(stack) -> list[str]:
    """The requests logged so far, once a request asked now has its line (see above)."""
    marker = f"/accounts/{unique_user(MARK)}"
    httpx.get(stack.site.rucio.default.rucio_host + marker, timeout=30)
    wait_until(
        lambda: any(marker in r for r in _requests(stack)),
        timeout=60,
        what="the Rucio access log's line of a request just answered",
    )
    return _requests(stack)


def _unmarked(requests: list[str]) -> list[str]:
    return [r for r in requests if f"/accounts/{MARK}" not in r]


def _ensure(accounts: RucioAccounts, stack, username: str) -> bool:
    account = rucio_account(username)
    identity = oidc_identity(username, issuer_url(stack.site))
    return asyncio.run(accounts.ensure_account(account, identity, f"{account}@x.invalid"))


def _whoami(stack, username: str) -> str:
    """The account Rucio maps the student's token file to."""
    token = (stack.home(username) / ".lakehub" / "rucio-token").read_text().strip()
    r = httpx.get(
        f"{stack.site.rucio.default.rucio_host}/accounts/whoami",
        headers={"X-Rucio-Auth-Token": token},
        follow_redirects=True,
        timeout=30,
    )
    r.raise_for_status()
    return r.json()["account"]


@pytest.mark.classroom
def test_rucio_on_postgresql_creates_accounts_with_a_constant_number_of_requests(pg_stack):
    stack = pg_stack
    cfg = (stack.paths.rucio / "rucio.cfg").read_text()
    assert "postgresql+psycopg://" in cfg and "sqlite" not in cfg
    # its password is in 0600 files only, and in no log
    for private in (stack.paths.rucio / "rucio.cfg", stack.paths.rucio / "alembic.ini"):
        assert private.stat().st_mode & 0o077 == 0, private
    secret = postgres.password(stack.paths)
    for log in stack.paths.logs.iterdir():
        assert secret not in log.read_text(errors="replace"), log
    accounts = _accounts(stack)
    try:
        students = [unique_user("pg") for _ in range(3)]
        for student in students:
            assert _ensure(accounts, stack, student) is True
        # gunicorn's workers write a request's line after answering it, so a line may
        # come late: ask once more and read the log once that request's line is there
        # (it was asked after every student's last answer)
        settled = _settled(stack)
        per_student = [[r for r in settled if f"/{rucio_account(s)}" in r] for s in students]
        # one lookup, then the account, its identity and its quota: the same for each
        assert [len(r) for r in per_student] == [4, 4, 4], per_student
        name = unique_user("pg")
        _ensure(accounts, stack, name)
        before = len(_settled(stack))
        assert _ensure(accounts, stack, name) is False  # this hub knows it: no request
        assert _unmarked(_settled(stack)[before:]) == []
    finally:
        accounts.close()
    restarted = _accounts(stack)  # a restarted hub checks it once: two requests
    try:
        before = len(_settled(stack))
        assert _ensure(restarted, stack, name) is False
        assert len(_unmarked(_settled(stack)[before:])) == 2
    finally:
        restarted.close()
    # the accounts are really in PostgreSQL, bound to the hub identity
    client = admin_client(stack.site.rucio.default, stack.paths)
    identities = [i["identity"] for i in client.list_identities(rucio_account(name))]
    assert identities == [oidc_identity(name, issuer_url(stack.site))]


@pytest.mark.classroom
def test_a_student_on_postgresql_rucio_gets_a_working_token(pg_stack):
    name = unique_user("pgs")
    pg_stack.admin.ensure_user(name)
    pg_stack.admin.start_server(name)
    assert _whoami(pg_stack, name) == rucio_account(name)


@pytest.mark.classroom
def test_an_account_left_without_its_identity_is_completed_by_the_next_spawn(sqlite_stack):
    stack = sqlite_stack
    name = unique_user("half")
    account = rucio_account(name)
    client = admin_client(stack.site.rucio.default, stack.paths)
    client.add_account(account, "USER", f"{account}@x.invalid")  # what a stopped spawn leaves
    stack.admin.ensure_user(name)
    stack.admin.start_server(name)
    assert _whoami(stack, name) == account
    identities = [i["identity"] for i in client.list_identities(account)]
    assert identities == [oidc_identity(name, issuer_url(stack.site))]
    limits = client.get_local_account_limits(account)
    assert limits.get(stack.site.cache.rse) == stack.site.cache.quota_bytes


@pytest.mark.classroom
def test_a_failed_spawn_can_be_retried_and_the_student_gets_a_working_token(sqlite_stack):
    stack = sqlite_stack
    name = unique_user("retry")
    home = stack.home(name)
    home.write_text("not a folder\n")  # the home cannot be made: the spawn fails
    stack.admin.ensure_user(name)
    with pytest.raises(HubError, match="HTTP 500|stopped while starting"):
        stack.admin.start_server(name)
    home.unlink()  # the admin repairs it; the student tries again
    stack.admin.start_server(name)
    assert _whoami(stack, name) == rucio_account(name)
    client = admin_client(stack.site.rucio.default, stack.paths)
    assert len(list(client.list_identities(rucio_account(name)))) == 1
    # the course is there, fetched as a shallow clone (one commit, not the history)
    course = stack.home(name) / COURSE["target"]
    assert any(p.suffix == ".ipynb" for p in course.rglob("*")), sorted(course.iterdir())
    shallow = subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(course)]
        + ["rev-parse", "--is-shallow-repository"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shallow.stdout.strip() == "true"
