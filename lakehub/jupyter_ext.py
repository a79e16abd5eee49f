"""Jupyter server extension: keep the session's Rucio token fresh
(lakehub.token_refresher), make rucio-jupyterlab use the hub-issued token at once,
report the home's course revisions (lakehub.courses), serve the icon font of the
Rucio panel from the server itself, and load the Dask panel's server side after the
server started (its import is slow).

rucio-jupyterlab only calls Rucio for an instance after credentials for it were stored
in its own small database (normally when a person picks an auth method in its settings
panel).  With ``oidc_auth: file`` there is nothing to enter: the token file the hub
wrote is the credential.  So at server start this extension records, through the
extension's own database API, that each such instance uses OIDC; the file itself is
read by rucio-jupyterlab whenever it needs a token.

rucio-jupyterlab draws its icons as ligatures of the "Material Icons" font
(``<i class="material-icons">folder_open</i>``) and imports that font from a public
font service, which a browser on an offline or privacy-minded network cannot reach:
the panel then shows the icon names as words and squeezes every dataset name.  The
same font ships in the Debian package ``fonts-material-design-icons-iconfont`` (in the
single-user image and on a local host).  JupyterLab links ``<base>/custom/custom.css``
into its page when ``LabApp.custom_css`` is on (the analysis environment's
``jupyter_server_config.json``) and serves it from the server's custom path; this
extension adds two folders to that path: ``lab_custom/`` beside this module (its
``custom.css`` declares the font face and the ``material-icons`` class) and the font
package's folder.  Nothing is fetched from outside at run time.  A student's own
``~/.jupyter/custom/custom.css`` comes first on that path and so replaces lakehub's.
"""

from __future__ import annotations

from pathlib import Path

# the Debian package with the font and where it puts the web font files
ICON_FONT_PACKAGE = "fonts-material-design-icons-iconfont"
ICON_FONT_DIR = Path("/usr/share/fonts/woff/material-design-icons-iconfont")
ICON_FONT_FILES = ("MaterialIcons-Regular.woff2", "MaterialIcons-Regular.woff")
# custom.css naming those files (relative URLs: they are served beside it)
LAB_CUSTOM_DIR = Path(__file__).with_name("lab_custom")


def instances_using_token_file(server_config: dict) -> list[str]:
    """Names of the RucioConfig instances that authenticate with a token file (pure)."""
    rucio = server_config.get("RucioConfig", {}) or {}
    if rucio.get("default_auth_type") != "oidc":
        return []
    return [i["name"] for i in rucio.get("instances", []) if i.get("oidc_auth") == "file"]


def icon_font_folders(font_dir: Path = ICON_FONT_DIR) -> list[str]:
    """The folders to add to the server's custom path, or [] when the font is missing."""
    if not all((font_dir / name).is_file() for name in ICON_FONT_FILES):
        return []
    return [str(LAB_CUSTOM_DIR), str(font_dir)]


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
    _serve_icon_font(server_app)
    _load_dask_panel_later(server_app)


# Server extensions that a session needs only once JupyterLab is up, and the slow
# import each waits for; switched off in jupyter_server_config.json, loaded here.
LATER_EXTENSIONS = {"dask_labextension": "distributed"}


def _load_dask_panel_later(server_app) -> None:
    """Load dask-labextension's server side once the server runs: the server answers
    the hub and JupyterLab's first page without waiting for it.  Its slow part, the
    import of ``distributed`` (most of a second), runs in a thread; the extension itself
    is then imported on the server's loop (its cluster manager binds to that loop).  The
    Dask panel's first look for clusters may come too early; it asks again on its own."""
    import asyncio
    import importlib

    from tornado.ioloop import IOLoop

    async def load(name: str, slow: str) -> None:
        try:
            await asyncio.to_thread(importlib.import_module, slow)
            importlib.import_module(name).load_jupyter_server_extension(server_app)
        except Exception:  # a missing panel must never take the server down
            server_app.log.exception("lakehub: could not load the server extension %s", name)
            return
        server_app.log.info("lakehub: loaded the server extension %s", name)

    for name, slow in LATER_EXTENSIONS.items():
        if server_app.jpserver_extensions.get(name) is False:
            IOLoop.current().add_callback(load, name, slow)


def _serve_icon_font(server_app) -> None:
    """Put lakehub's custom.css and the icon font on the path JupyterLab serves
    ``<base>/custom/`` from (jupyter_server's ``static_custom_path`` setting, the list
    JupyterLab's handler searches on every request)."""
    folders = icon_font_folders()
    if not folders:
        server_app.log.warning(
            "lakehub: %s is missing (no %s): the Rucio panel shows its icons as words;"
            " install the Debian package %s",
            ICON_FONT_DIR,
            ICON_FONT_FILES[0],
            ICON_FONT_PACKAGE,
        )
        return
    custom_path = server_app.web_app.settings["static_custom_path"]
    custom_path.extend(f for f in folders if f not in custom_path)
    if not server_app.config.get("LabApp", {}).get("custom_css"):
        server_app.log.warning(
            "lakehub: LabApp.custom_css is off, so JupyterLab does not load the icon font"
            " for the Rucio panel"
        )
    server_app.log.info("lakehub: the Rucio panel's icon font is served from %s", folders[-1])


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
