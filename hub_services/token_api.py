"""The token service's HTTP API: ``GET /api/token`` answers a session with a fresh Rucio
token for its own user (the renewal logic is :class:`tokens.broker.TokenBroker`).

A session calls it with its own JupyterHub API token; the service learns from the hub
who is asking and there is no way to name another user.  Served by
``hub_services.issuer`` (the JupyterHub service ``lakehub-issuer``).
"""

from __future__ import annotations

import logging

from tornado import web

from hub_services.hub_auth import HubJSONHandler
from lakehub.contract import ISSUER_SERVICE
from tokens.broker import Caller, RenewalFailed

log = logging.getLogger("lakehub.tokens")


class TokenHandler(HubJSONHandler):
    """``GET /api/token``: a fresh Rucio token for the calling session's own user."""

    service_name = ISSUER_SERVICE

    @web.authenticated
    async def get(self) -> None:
        user = self.current_user
        if user.get("kind", "user") != "user":
            raise web.HTTPError(403, "tokens are only issued to users' sessions")
        asked = self.get_query_argument("user", user["name"])
        if asked != user["name"]:
            log.warning("%s asked for another user's token; refused", user["name"])
            raise web.HTTPError(403, "a session may only ask for its own user's token")
        caller = Caller(user["name"], self.get_auth_token())
        try:
            entry = await self.settings["broker"].token_for(caller)
        except RenewalFailed as exc:
            log.warning("no token for %s: %s", caller.name, exc)
            raise web.HTTPError(exc.status, str(exc)) from None
        self.set_header("Cache-Control", "no-store")
        self.finish({"token": entry.token, "expires": entry.expires})

    def get_auth_token(self) -> str:
        """The token the session authenticated with (header or query; never logged)."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("token", "bearer") and value:
            return value.strip()
        return self.get_argument("token", "")
