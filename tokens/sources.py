"""Where the token service gets a user's new Rucio token (``tokens.broker``).

* :class:`IssuerSource` (``hub_issuer``, the embedded default and native-login clusters):
  the hub's own key signs a new JWT that Rucio trusts through ``idpsecrets``.
* :class:`ExchangeSource` (``token_exchange``, OIDC sites): first the hub refreshes the
  user's login, which is oauthenticator's ``refresh_user`` (refresh token grant at the
  identity provider) run by the hub itself when a request carries the user's token and
  the last refresh is older than ``auth_refresh_age``; then the service reads the access
  token from the user's auth_state (its own token has ``admin:auth_state``) and
  exchanges it at the identity provider for a ``rucio``-audience token (RFC 8693, the
  same :class:`tokens.exchange.TokenExchange` the spawn uses).

Both are asynchronous; the only CPU work is signing (about a millisecond).
"""

from __future__ import annotations

import time
from urllib.parse import quote

from tokens.broker import Cached, Caller, RenewalFailed
from tokens.exchange import TokenExchange, TokenExchangeFailed
from tokens.mint import Issuer


class IssuerSource:
    def __init__(self, issuer: Issuer, clock=time.time):
        self.issuer = issuer
        self.clock = clock

    async def fresh(self, caller: Caller) -> Cached:
        issued = int(self.clock())
        token = self.issuer.mint(caller.name, issued)
        return Cached(token, issued, issued + self.issuer.lifetime)


class ExchangeSource:
    """OIDC sites: the hub refreshes the login, the identity provider exchanges."""

    def __init__(
        self,
        exchange: TokenExchange,
        hub_api_url: str,
        service_token: str,
        timeout: float = 15.0,
        clock=time.time,
    ):
        self.exchange = exchange
        self.hub_api_url = hub_api_url.rstrip("/")
        self.service_token = service_token
        self.timeout = timeout
        self.clock = clock
        self._http = None

    def _client(self):
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout)
        return self._http

    async def _hub_get(self, path: str, token: str) -> dict:
        try:
            r = await self._client().get(
                self.hub_api_url + path, headers={"Authorization": f"token {token}"}
            )
        except Exception as exc:  # httpx transport errors come in many types
            raise RenewalFailed(f"the hub did not answer ({type(exc).__name__})") from None
        if r.status_code == 403 and path == "/user":
            # refresh_user said the login cannot be refreshed (refresh token revoked)
            raise RenewalFailed("your login has expired: log out of the hub and in again", 401)
        if r.status_code != 200:
            raise RenewalFailed(f"the hub answered HTTP {r.status_code} for {path}")
        return r.json()

    async def subject_token(self, caller: Caller) -> str:
        # the session's own request lets the hub run oauthenticator's refresh_user
        await self._hub_get("/user", caller.hub_token)
        model = await self._hub_get(f"/users/{quote(caller.name, safe='')}", self.service_token)
        token = (model.get("auth_state") or {}).get("access_token")
        if not token:
            raise RenewalFailed(
                "the hub holds no access token for you (auth state is off or you logged in"
                " before it was on): log out and in again",
                401,
            )
        return token

    async def fresh(self, caller: Caller) -> Cached:
        subject = await self.subject_token(caller)
        try:
            got = await self.exchange.exchange_subject(subject)
        except TokenExchangeFailed as exc:
            raise RenewalFailed(str(exc)) from None
        now = int(self.clock())
        return Cached(got.token, now, got.expires or now + 300)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        await self.exchange.aclose()
