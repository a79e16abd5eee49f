"""The embedded Rucio server's PostgreSQL (``local.rucio_database: postgresql``).

Debian's PostgreSQL (``apt-get install postgresql``: the programs under
``/usr/lib/postgresql/<version>/bin``) runs a cluster of its own in the state folder,
listening on 127.0.0.1 only, with a password login for the ``rucio`` role, as a site
runs Rucio's database.  When the stack runs as root, the server runs as Debian's
``postgres`` account (PostgreSQL refuses root); otherwise as the developer.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

from lakehub.files import write_private
from localstack import procs
from sitefile.state import StackPaths

PROCESS = "postgresql"
ROLE = "rucio"
DATABASE = "rucio"
OWNER = "postgres"  # Debian's account for PostgreSQL servers


def bin_dir() -> Path:
    """The newest installed ``/usr/lib/postgresql/<version>/bin``."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise procs.StartError(
            "local.rucio_database is postgresql but PostgreSQL is not installed"
            " (run `sudo apt-get install postgresql` or `make system-deps`)"
        )
    return found[-1].parent


def data_dir(paths: StackPaths) -> Path:
    return paths.state / "postgresql"


def password_file(paths: StackPaths) -> Path:
    return paths.secrets / "rucio-db-password"


def password(paths: StackPaths) -> str:
    return password_file(paths).read_text().strip()


def url(paths: StackPaths, port: int) -> str:
    """SQLAlchemy's URL of Rucio's database (holds the password: write it 0600)."""
    return f"postgresql+psycopg://{ROLE}:{password(paths)}@127.0.0.1:{port}/{DATABASE}"


def _owner() -> tuple[int, int] | None:
    """(uid, gid) of the account the server runs as, or None: the current one."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(OWNER)
    except KeyError:
        raise procs.StartError(
            f"PostgreSQL refuses to run as root and there is no {OWNER!r} account"
            " (Debian's postgresql package makes it)"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _as_owner(argv: list[str]) -> list[str]:
    """``argv`` run as the server's account (setpriv execs: the PID stays the server's)."""
    if _owner() is None:
        return argv
    return ["setpriv", f"--reuid={OWNER}", f"--regid={OWNER}", "--init-groups", *argv]


def _client_env(paths: StackPaths) -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": password(paths), "PGCONNECT_TIMEOUT": "5"}


def init_cluster(paths: StackPaths) -> bool:
    """``initdb`` once (a superuser ``rucio`` with a password); True if made now."""
    data = data_dir(paths)
    if (data / "PG_VERSION").exists():
        return False
    if not password_file(paths).exists():
        write_private(password_file(paths), secrets.token_urlsafe(24))
    shutil.rmtree(data, ignore_errors=True)  # a half-made cluster of an interrupted run
    data.mkdir(parents=True, mode=0o700)
    owner = _owner()
    pwfile = data.parent / f".{data.name}-pw"
    write_private(pwfile, password(paths) + "\n")
    try:
        if owner is not None:
            os.chown(data, *owner)
            os.chown(pwfile, *owner)
        result = subprocess.run(
            _as_owner(
                [
                    str(bin_dir() / "initdb"),
                    "--pgdata",
                    str(data),
                    "--username",
                    ROLE,
                    "--pwfile",
                    str(pwfile),
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                ]
            ),
            capture_output=True,
            text=True,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise procs.StartError(f"initdb failed:\n{(result.stdout + result.stderr)[-2000:]}")
    return True


def start(paths: StackPaths, port: int) -> int:
    """Start the server on 127.0.0.1:``port`` (its socket files inside its data folder)
    and wait until it accepts logins; returns its PID."""
    init_cluster(paths)
    pid = procs.running(PROCESS, paths.run)
    if pid is not None:
        return pid
    log_path = paths.logs / "postgresql.log"  # opened by us, handed to the server
    argv = [
        str(bin_dir() / "postgres"),
        "-D",
        str(data_dir(paths)),
        "-c",
        "listen_addresses=127.0.0.1",
        "-p",
        str(port),
        "-c",
        f"unix_socket_directories={data_dir(paths)}",
        "-c",
        "max_connections=100",
    ]
    pid = procs.start(PROCESS, _as_owner(argv), run_dir=paths.run, log_path=log_path)
    try:
        procs.wait_until(
            lambda: _accepts(paths, port),
            timeout=60,
            what=f"PostgreSQL on 127.0.0.1:{port}",
            alive=lambda: procs.running(PROCESS, paths.run) is not None,
            log_path=log_path,
        )
    except BaseException:
        procs.stop(PROCESS, paths.run)
        raise
    return pid


def _accepts(paths: StackPaths, port: int) -> bool:
    result = subprocess.run(
        [str(bin_dir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
        + ["-U", ROLE, "-d", "postgres"],
        env=_client_env(paths),
        capture_output=True,
    )
    return result.returncode == 0


def fresh_database(paths: StackPaths, port: int) -> None:
    """Drop and create Rucio's database (before Rucio builds its schema in it)."""
    for program in ("dropdb", "createdb"):
        argv = [str(bin_dir() / program), "-h", "127.0.0.1", "-p", str(port), "-U", ROLE]
        if program == "dropdb":
            argv.append("--if-exists")
        result = subprocess.run(
            [*argv, DATABASE], env=_client_env(paths), capture_output=True, text=True
        )
        if result.returncode != 0:
            raise procs.StartError(f"{program} {DATABASE} failed: {result.stderr.strip()[-500:]}")


def stop(paths: StackPaths) -> bool:
    return procs.stop(PROCESS, paths.run, timeout=30)
