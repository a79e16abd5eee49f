"""The token service: a running session asks it for a fresh Rucio token for its user.

Served by the issuer process (``hub_services.issuer``; the JupyterHub service
``lakehub-issuer``: a hub-managed process locally, a Deployment of the chart on
Kubernetes).  A session calls ``GET /api/token`` with its own JupyterHub API token; the
service learns from the hub who is asking and answers with a token **for that user
only** (there is no way to name another user).  While a user's current token is
comfortably valid (more than half of its lifetime left) the same token is returned, so a
thousand sessions refreshing every few minutes cost almost nothing: one cached hub
lookup and a dictionary read.

Where a new token comes from is a *source* (``hub_services.token_sources``): the hub's
own signing key (``hub_issuer``), or the identity provider by token exchange after the
hub refreshed the user's login (``token_exchange``).  After a renewal the *renewers* run
(on Kubernetes: the user's session Secrets are rewritten, ``hub_services.secret_renewal``);
a renewer that fails is logged, it never costs the session its token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from jupyterhub.services.auth import HubAuth, HubAuthenticated
from tornado import web

log = logging.getLogger("lakehub.tokens")
SERVICE_NAME = "lakehub-issuer"


@dataclass(frozen=True)
class Cached:
    token: str
    issued: int
    expires: int


class RenewalFailed(RuntimeError):
    """A source could not make a token; the message is safe to show the user."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    """Who asks: the user's name and the session's own hub token (which a source may
    need to act for the user at the hub, e.g. to have the hub refresh the login)."""

    name: str
    hub_token: str


class TokenSource(Protocol):
    async def fresh(self, caller: Caller) -> Cached: ...


Renewer = Callable[[str, Cached], Awaitable[None]]


def still_good(entry: Cached | None, now: float) -> bool:
    """Reuse a token while more than half of its lifetime is left (pure)."""
    if entry is None:
        return False
    return entry.expires - now > (entry.expires - entry.issued) / 2


class TokenBroker:
    """Per-user cache in front of a source, with one renewal in flight per user."""

    def __init__(self, source: TokenSource, renewers: tuple[Renewer, ...] = (), clock=time.time):
        self.source = source
        self.renewers = renewers
        self.clock = clock
        self.cache: dict[str, Cached] = {}
        self.minted = 0
        self._inflight: dict[str, asyncio.Future] = {}

    async def token_for(self, caller: Caller) -> Cached:
        entry = self.cache.get(caller.name)
        if still_good(entry, self.clock()):
            return entry
        running = self._inflight.get(caller.name)
        if running is not None:  # a renewal for this user is under way: share it
            return await asyncio.shield(running)
        future = asyncio.get_running_loop().create_future()
        self._inflight[caller.name] = future
        try:
            entry = await self.source.fresh(caller)
            self.cache[caller.name] = entry
            self.minted += 1
            future.set_result(entry)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._inflight[caller.name]
        for renew in self.renewers:
            try:
                await renew(caller.name, entry)
            except Exception as exc:  # the session still gets its token
                log.warning("renewing %s's stored token failed: %s", caller.name, exc)
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
