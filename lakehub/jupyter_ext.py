"""Jupyter server extension: keep the session's Rucio token fresh
(lakehub.token_refresher), make rucio-jupyterlab use the hub-issued token at once, and
report the home's course revisions (lakehub.courses).

rucio-jupyterlab only calls Rucio for an instance after credentials for it were stored
in its own small database (normally when a person picks an auth method in its settings
panel).  With ``oidc_auth: file`` there is nothing to enter: the token file the hub
wrote is the credential.  So at server start this extension records, through the
extension's own database API, that each such instance uses OIDC; the file itself is
read by rucio-jupyterlab whenever it needs a token.
"""

from __future__ import annotations


def instances_using_token_file(server_config: dict) -> list[str]:
    """Names of the RucioConfig instances that authenticate with a token file (pure)."""
    rucio = server_config.get("RucioConfig", {}) or {}
    if rucio.get("default_auth_type") != "oidc":
        return []
    return [i["name"] for i in rucio.get("instances", []) if i.get("oidc_auth") == "file"]


def _start_token_refresher(server_app) -> None:
    from tornado.ioloop import IOLoop

    from lakehub.token_refresher import adopt_seed_from_environment, from_environment

    try:  # Kubernetes: the token file exists before any kernel or terminal starts
        adopt_seed_from_environment()
    except OSError as exc:
        server_app.log.warning("lakehub: could not copy the session token: %s", exc)
    refresher = from_environment(server_app.log)
    if refresher is None:
        return

    async def keep_fresh() -> None:
        try:
            await refresher.run()
        except Exception:  # the refresher must never take the server down
            server_app.log.exception("lakehub: the token refresher stopped")

    # the loop that the server is about to run; the task lives as long as the server
    IOLoop.current().add_callback(keep_fresh)
    server_app.log.info("lakehub: keeping %s fresh", refresher.token_file)


def _load_jupyter_server_extension(server_app) -> None:
    _start_token_refresher(server_app)
    _configure_rucio_jupyterlab(server_app)
    _add_course_report(server_app)


def _add_course_report(server_app) -> None:
    """``GET <server>/lakehub/courses``: the course revisions in this home
    (lakehub.courses), for ``make course-status`` on a cluster."""
    from pathlib import Path

    from jupyter_server.base.handlers import APIHandler
    from jupyter_server.utils import url_path_join
    from tornado import web

    from lakehub.contract import COURSE_REPORT_PATH
    from lakehub.courses import report

    class CourseReport(APIHandler):
        @web.authenticated
        async def get(self) -> None:
            self.finish(await report(Path.home()))

    base = server_app.web_app.settings["base_url"]
    server_app.web_app.add_handlers(
        ".*$", [(url_path_join(base, COURSE_REPORT_PATH), CourseReport)]
    )


def _configure_rucio_jupyterlab(server_app) -> None:
    names = instances_using_token_file(server_app.config)
    if not names:
        return
    try:
        from rucio_jupyterlab.db import get_db
    except ImportError:
        server_app.log.warning("lakehub: rucio-jupyterlab is not installed; nothing to set up")
        return
    db = get_db()
    for name in names:
        if not db.has_any_auth_credentials(namespace=name):
            db.set_rucio_auth_credentials(namespace=name, auth_type="oidc", params={})
    if not db.get_active_auth_method():
        db.set_active_auth_method("oidc")
    server_app.log.info("lakehub: rucio-jupyterlab uses the hub's token for %s", ", ".join(names))
