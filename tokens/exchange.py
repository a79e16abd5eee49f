"""RFC 8693 token exchange at the site's identity provider (OIDC sites).

The user's access token (oauthenticator's auth_state) is exchanged for a token whose
audience is Rucio.  The grant is one form POST, authenticated as the hub's OAuth client
(HTTP Basic, RFC 6749 2.3.1), sent with aiohttp, the asynchronous HTTP client that
KubeSpawner's Kubernetes calls already use in the hub.  It runs at every spawn, so its
cost is the hub's: aiohttp keeps connections to the provider open and spends about a
quarter of the CPU per exchange that authlib's httpx client did (0.6 ms against 2.3 ms
measured once on the CI machine, docs/capacity.md).  This module names the grant's
parameters and turns the answers into :class:`ExchangedToken` or a readable
:class:`TokenExchangeFailed`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote_plus

import aiohttp

from tokens.jwt import expiry as jwt_expiry

# RFC 8693 identifiers (names, not secrets)
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105


class TokenExchangeFailed(RuntimeError):
    """The exchange did not give a token; the message is safe to show the user."""


@dataclass(frozen=True)
class ExchangedToken:
    token: str
    expires: int | None


def client_auth(client_id: str, secret: str) -> str:
    """The Authorization header of an OAuth client (HTTP Basic; RFC 6749 2.3.1
    form-encodes both parts first)."""
    return aiohttp.encode_basic_auth(quote_plus(client_id, safe=""), quote_plus(secret, safe=""))


def refusal(status: int, body: object) -> TokenExchangeFailed:
    """An answer without a token, as the user reads it: the HTTP status and the
    provider's own reason (RFC 6749 5.2), cut to a readable length (pure)."""
    detail = ""
    if isinstance(body, dict):
        detail = f"{body.get('error') or ''} {body.get('error_description') or ''}".strip()
    if status >= 400:
        return TokenExchangeFailed(
            f"the identity provider refused the token exchange (HTTP {status}"
            + (f": {detail[:300]})" if detail else ")")
        )
    return TokenExchangeFailed(
        "the identity provider refused the token exchange"
        + (f" ({detail[:300]})" if detail else "")
    )


def exchange_form(subject_token: str, audience: str, scope: str | None) -> dict[str, str]:
    """The grant: the user's access token for one with ``audience`` (pure)."""
    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "requested_token_type": ACCESS_TOKEN_TYPE,
        "audience": audience,
    }
    if scope:
        form["scope"] = scope
    return form


class TokenExchange:
    """Exchange a user's access token at the identity provider's token endpoint for a
    Rucio-audience token (RFC 8693).

    The endpoint and the client credentials default to those of the hub's
    GenericOAuthenticator (``spawner.authenticator``): the hub's own OAuth client makes
    the request, so the IdP must allow that client to exchange for ``audience``.  At
    most ``max_parallel`` exchanges are in flight at once (z2jh's default
    ``hub.concurrentSpawnLimit``), so a burst of logins stays a bounded load on the IdP.
    """

    def __init__(
        self,
        audience: str = "rucio",
        scope: str | None = "openid profile",
        token_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        ca_cert: str | None = None,
        timeout: float = 15.0,
        max_parallel: int = 64,
        clock=time.time,
    ):
        self.audience = audience
        self.scope = scope
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.ca_cert = ca_cert
        self.timeout = timeout
        self.max_parallel = max_parallel
        self.clock = clock
        self._clients: dict[asyncio.AbstractEventLoop, tuple] = {}  # loop -> (session, limit)
        self._ssl: ssl.SSLContext | None = None

    def _client(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        """One session and one limit per event loop (the hub has one loop; tests have
        several): connections are reused, TLS is set up once."""
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            if self._ssl is None:
                self._ssl = ssl.create_default_context(cafile=self.ca_cert)
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self.max_parallel),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
            entry = (session, asyncio.Semaphore(self.max_parallel))
            self._clients = {k: e for k, e in self._clients.items() if not k.is_closed()}
            self._clients[loop] = entry
        return entry

    def endpoint(self, spawner) -> tuple[str, str, str]:
        auth = getattr(spawner, "authenticator", None)
        url = self.token_url or getattr(auth, "token_url", None)
        client_id = self.client_id or getattr(auth, "client_id", None)
        secret = self.client_secret or getattr(auth, "client_secret", None)
        if not (url and client_id and secret):
            raise TokenExchangeFailed(
                "no token endpoint or OAuth client for the exchange (is the hub's"
                " authenticator a GenericOAuthenticator?)"
            )
        return url, client_id, secret

    async def subject_token(self, spawner) -> str:
        state = await spawner.user.get_auth_state()
        token = (state or {}).get("access_token")
        if not token:
            raise TokenExchangeFailed(
                "the hub has no access token for this user (enable_auth_state and a"
                " JUPYTERHUB_CRYPT_KEY are needed); log out and in again"
            )
        return token

    async def exchange(self, spawner) -> ExchangedToken:
        endpoint = self.endpoint(spawner)
        return await self.exchange_subject(await self.subject_token(spawner), endpoint)

    async def exchange_subject(
        self, subject: str, endpoint: tuple[str, str, str] | None = None
    ) -> ExchangedToken:
        """Exchange ``subject`` (a user's access token); without ``endpoint`` the
        configured token URL and client are used (the token service has no spawner)."""
        url, client_id, secret = endpoint or self.endpoint(None)
        session, limit = self._client()
        try:
            async with (
                limit,
                session.post(
                    url,
                    data=exchange_form(subject, self.audience, self.scope),
                    headers={
                        "Authorization": client_auth(client_id, secret),
                        "Accept": "application/json",
                    },
                ) as response,
            ):
                status = response.status
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = None
        except Exception as exc:  # transport errors and timeouts
            raise TokenExchangeFailed(
                f"the identity provider did not answer usably ({type(exc).__name__})"
            ) from None
        if status >= 400 or (isinstance(answer, dict) and answer.get("error")):
            raise refusal(status, answer)
        if not isinstance(answer, dict):
            raise TokenExchangeFailed(
                "the identity provider did not answer usably (not a JSON object)"
            )
        token = answer.get("access_token")
        if not isinstance(token, str) or not token.strip():
            raise TokenExchangeFailed("the token exchange answer holds no access_token")
        expires = jwt_expiry(token)
        if expires is None:
            try:
                expires = int(self.clock()) + int(answer["expires_in"])
            except (KeyError, TypeError, ValueError):
                expires = None
        return ExchangedToken(token, expires)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for session, _ in clients.values():
            await session.close()
