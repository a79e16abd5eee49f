"""The embedded Rucio server: configuration, database, and a gunicorn process.

Its database is SQLite (one gunicorn worker with one thread: SQLite locks under
concurrent writers) or, with ``local.rucio_database: postgresql``, a PostgreSQL of the
stack's own (:mod:`localstack.postgres`) and several workers, as a site runs Rucio.
The server lives in its own environment (``venvs/rucio-server``) because the server
package pins its own dependencies; this module only writes files and starts processes,
so it runs from the hub/dev environment.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lakehub.files import atomic_write, write_private
from localstack import postgres, procs
from sitefile.state import StackPaths, venv_bin

ROOT_USERNAME = "root"
PROCESS = "rucio"
ACCESS_LOG = "rucio-access.log"  # one line per request (the classroom benchmark counts them)


@dataclass(frozen=True)
class Database:
    """Where the server keeps its data: ``sqlite`` (a file) or ``postgresql`` (the
    stack's own server on 127.0.0.1:``port``)."""

    kind: str = "sqlite"
    port: int | None = None

    @property
    def workers(self) -> tuple[int, int]:
        """gunicorn's (workers, threads): SQLite takes one writer at a time."""
        return (1, 1) if self.kind == "sqlite" else (2, 4)


SQLITE = Database()


def server_cfg(
    paths: StackPaths, root_password: str, issuer_url: str, database: Database = SQLITE
) -> str:
    """The server's rucio.cfg (kept apart from any client config)."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg["common"] = {"logdir": str(paths.logs), "loglevel": "WARNING", "mailtemplatedir": ""}
    cfg["database"] = {"default": db_url(paths, database)}
    cfg["bootstrap"] = {
        "userpass_identity": ROOT_USERNAME,
        "userpass_pwd": root_password,
        "userpass_email": "root@lakehub.invalid",
    }
    cfg["alembic"] = {"cfg": str(paths.rucio / "alembic.ini")}
    cfg["monitor"] = {"enable_metrics": "False"}
    cfg["oidc"] = {"idpsecrets": str(paths.rucio / "idpsecrets.json")}
    cfg["policy"] = {"permission": "generic", "schema": "generic"}
    buf = io.StringIO()
    cfg.write(buf)
    return buf.getvalue()


def db_url(paths: StackPaths, database: Database = SQLITE) -> str:
    if database.kind == "postgresql":
        assert database.port is not None
        return postgres.url(paths, database.port)
    return f"sqlite:///{paths.rucio / 'rucio.db'}"


def alembic_ini(script_location: Path, db_url: str) -> str:
    # alembic insists on the logging sections even though Rucio configures logging itself
    return f"""[alembic]
script_location = {script_location}
sqlalchemy.url = {db_url}

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""


def idpsecrets(issuer_url: str) -> dict:
    """Tell Rucio to trust JWTs from the hub's issuer (the SCIM part is required)."""
    return {"lakehub": {"issuer": issuer_url, "client_id": "rucio", "SCIM": {"client_id": "rucio"}}}


def _server_env(paths: StackPaths) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUCIO_")}
    env["RUCIO_CONFIG"] = str(paths.rucio / "rucio.cfg")
    env["TMPDIR"] = str(paths.rucio / "tmp")
    return env


def configure(paths: StackPaths, issuer_url: str, database: Database = SQLITE) -> None:
    """Write the server's files; keeps an existing root password (idempotent).  For
    PostgreSQL, its server must be running (:func:`localstack.postgres.start`)."""
    paths.rucio.mkdir(parents=True, exist_ok=True)
    (paths.rucio / "tmp").mkdir(exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not paths.rucio_root_password.exists():
        write_private(paths.rucio_root_password, secrets.token_urlsafe(24))
    password = paths.rucio_root_password.read_text().strip()
    site_packages = subprocess.run(
        [
            str(venv_bin("rucio-server", "python")),
            "-c",
            "import rucio, os; print(os.path.dirname(rucio.__file__))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    write_private(paths.rucio / "rucio.cfg", server_cfg(paths, password, issuer_url, database))
    write_private(  # the database URL may hold its password
        paths.rucio / "alembic.ini",
        alembic_ini(Path(site_packages) / "db/sqla/migrate_repo", db_url(paths, database)),
    )
    atomic_write(paths.rucio / "idpsecrets.json", json.dumps(idpsecrets(issuer_url), indent=2))


_INIT_DB = """
from rucio.db.sqla.util import build_database, create_base_vo, create_root_account
build_database()
create_base_vo()
create_root_account()
"""


def init_database(paths: StackPaths, database: Database = SQLITE) -> bool:
    """Create the schema and the root account once; True if it was created now."""
    marker = paths.rucio / "db-initialised"
    if marker.exists():
        return False
    # a half-made database from an interrupted run is made again
    if database.kind == "postgresql":
        assert database.port is not None
        postgres.fresh_database(paths, database.port)
    else:
        (paths.rucio / "rucio.db").unlink(missing_ok=True)
    result = subprocess.run(
        [str(venv_bin("rucio-server", "python")), "-c", _INIT_DB],
        env=_server_env(paths),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise procs.StartError(f"creating the Rucio database failed:\n{result.stderr[-2000:]}")
    marker.write_text("ok\n")
    return True


def start(
    paths: StackPaths, port: int, host: str = "127.0.0.1", database: Database = SQLITE
) -> int:
    """Start gunicorn on host:port and wait for /ping.  The host is the loopback
    address, or the address of a one-node cluster's node for its pods.  Every request
    gets a line in ``logs/rucio-access.log``."""
    pid = procs.running(PROCESS, paths.run)
    url = f"http://{host}:{port}"
    workers, threads = database.workers
    if pid is None:
        log_path = paths.logs / "rucio.log"
        pid = procs.serve(
            PROCESS,
            [
                str(venv_bin("rucio-server", "gunicorn")),
                "--no-control-socket",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--access-logfile",
                str(paths.logs / ACCESS_LOG),
                "--bind",
                f"{host}:{port}",
                "--timeout",
                "120",
                "rucio.web.rest.flaskapi.v1.main:application",
            ],
            ready_url=f"{url}/ping",
            ready=lambda r: r.status_code == 200,
            what=f"the Rucio server on {url}",
            run_dir=paths.run,
            log_path=log_path,
            env=_server_env(paths),
        )
    return pid


def stop(paths: StackPaths) -> bool:
    """Stop the server, then its PostgreSQL if it has one; True if either ran."""
    stopped = procs.stop(PROCESS, paths.run)
    return postgres.stop(paths) or stopped
