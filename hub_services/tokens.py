"""The token service: a running session asks it for a fresh Rucio token for its user.

Served by the hub's issuer process (``hub_services.issuer``, managed service
``lakehub-issuer``), which holds the signing key anyway.  A session calls
``GET /api/token`` with its own JupyterHub API token; the service learns from the hub
who is asking and answers with a token **for that user only** (there is no way to name
another user).  While a user's current token is comfortably valid (more than half of
its lifetime left) the same token is returned, so a thousand sessions refreshing every
few minutes cost the hub almost nothing: one cached hub lookup and a dictionary read.

Token sources: ``hub_issuer`` (the embedded default) signs a new JWT with the hub's key.
Sites whose tokens come from an OIDC provider by token exchange plug in there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from jupyterhub.services.auth import HubAuth, HubAuthenticated
from tornado import web

from spawner_hooks.tokens import Issuer

log = logging.getLogger("lakehub.tokens")
SERVICE_NAME = "lakehub-issuer"


@dataclass
class Cached:
    token: str
    issued: int
    expires: int


def still_good(entry: Cached | None, now: float) -> bool:
    """Reuse a token while more than half of its lifetime is left (pure)."""
    if entry is None:
        return False
    return entry.expires - now > (entry.expires - entry.issued) / 2


class TokenBroker:
    def __init__(self, issuer: Issuer, clock=time.time):
        self.issuer = issuer
        self.clock = clock
        self.cache: dict[str, Cached] = {}
        self.minted = 0

    def token_for(self, username: str) -> Cached:
        now = self.clock()
        entry = self.cache.get(username)
        if still_good(entry, now):
            return entry
        issued = int(now)
        entry = Cached(self.issuer.mint(username, issued), issued, issued + self.issuer.lifetime)
        self.cache[username] = entry
        self.minted += 1
        return entry


class TokenHandler(HubAuthenticated, web.RequestHandler):
    @property
    def hub_auth(self) -> HubAuth:
        return self.settings["hub_auth"]

    def get_login_url(self) -> str:
        raise web.HTTPError(403, "a JupyterHub token with access to lakehub-issuer is required")

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else None
        self.finish({"error": reason or self._reason})

    @web.authenticated
    def get(self) -> None:
        user = self.current_user
        if user.get("kind", "user") != "user":
            raise web.HTTPError(403, "tokens are only issued to users' sessions")
        asked = self.get_query_argument("user", user["name"])
        if asked != user["name"]:
            log.warning("%s asked for another user's token; refused", user["name"])
            raise web.HTTPError(403, "a session may only ask for its own user's token")
        entry = self.settings["broker"].token_for(user["name"])
        self.set_header("Cache-Control", "no-store")
        self.finish({"token": entry.token, "expires": entry.expires})
