"""Renewing a user's Rucio token: a per-user cache in front of a *source*, with one
renewal in flight per user (the heart of the token service, ``hub_services.issuer``).

A session asks for its user's token (``hub_services.token_api``).  While the user's
current token is comfortably valid (more than half of its lifetime left) the same token
is returned, so a thousand sessions refreshing every few minutes cost almost nothing: a
dictionary read.  Where a new token comes from is a source (:mod:`tokens.sources`): the
hub's own signing key (``hub_issuer``), or the identity provider by token exchange after
the hub refreshed the user's login (``token_exchange``).  After a renewal the *renewers*
run (on Kubernetes: the user's session Secrets are rewritten, :mod:`tokens.secret_renewal`);
a renewer that fails is logged, it never costs the session its token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("lakehub.tokens")


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
