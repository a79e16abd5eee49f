"""The base of every hub-authenticated JSON handler of lakehub's services.

Callers send a JupyterHub API token (``Authorization: token ...``); JupyterHub's
``HubAuth`` (in the application's settings) checks it and its scopes.  Errors are JSON
objects ``{"error": reason}`` whose reason is safe to show a student; a request without
an accepted token is refused with 403 naming the service, never redirected to a login
page (these are APIs).
"""

from __future__ import annotations

import os

from jupyterhub.services.auth import HubAuth, HubAuthenticated
from tornado import web

from lakehub.contract import access_scope


class HubJSONHandler(HubAuthenticated, web.RequestHandler):
    #: the JupyterHub service a token must have access to (subclasses set it)
    service_name = "this service"

    @property
    def hub_auth(self) -> HubAuth:
        return self.settings["hub_auth"]

    def get_login_url(self) -> str:
        raise web.HTTPError(
            403, f"a JupyterHub token with access to {self.service_name} is required"
        )

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else None
        self.finish({"error": reason or self._reason})


def service_hub_auth(service: str, cache_max_age: int) -> HubAuth:
    """HubAuth for a hub-run service: the hub hands the process its own token and API
    URL; only tokens with access to ``service`` are accepted."""
    hub_auth = HubAuth(
        api_token=os.environ["JUPYTERHUB_API_TOKEN"],
        api_url=os.environ["JUPYTERHUB_API_URL"],
        cache_max_age=cache_max_age,
    )
    hub_auth.access_scopes = {access_scope(service)}
    return hub_auth
