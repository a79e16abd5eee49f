"""Jupyter server extension: make rucio-jupyterlab use the hub-issued token at once.

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


def _load_jupyter_server_extension(server_app) -> None:
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
