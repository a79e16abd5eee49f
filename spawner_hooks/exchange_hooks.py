"""OIDC sites: the session's Rucio token comes from an RFC 8693 token exchange at the
identity provider (:class:`tokens.exchange.TokenExchange`), not from the hub's issuer."""

from __future__ import annotations

import logging

from sitefile import Site
from spawner_hooks import session
from spawner_hooks.hooks import SessionBundle, SessionHooks
from spawner_hooks.kube_delivery import KubeSecretDelivery
from spawner_hooks.names import rucio_account
from tokens.exchange import TokenExchange, TokenExchangeFailed

log = logging.getLogger("JupyterHub").getChild("lakehub")


class TokenExchangeHooks(SessionHooks):
    """OIDC sites: the bundle's token comes from a token exchange, not the hub's issuer.

    Without what an OIDC site does not give the hub (a signing key, a Rucio admin
    password) no Rucio accounts are created here: the identity provider's identities map
    to the site's accounts.
    """

    def __init__(
        self,
        site: Site,
        exchange: TokenExchange,
        delivery: KubeSecretDelivery,
        cache: session.ReplicaMode | None = None,
        cache_url: str | None = None,
        token_url: str | None = None,
    ):
        super().__init__(site, delivery, cache=cache, cache_url=cache_url, token_url=token_url)
        self.exchange = exchange

    async def build(self, spawner, paths: session.SessionPaths) -> SessionBundle:
        username = spawner.user.name
        default = self.site.rucio.default
        account = rucio_account(username, default.account_mapping.prefix)
        problems: list[str] = []
        token: str | None = None
        expires: int | None = None
        try:
            got = await self.exchange.exchange(spawner)
            token, expires = got.token, got.expires
        except TokenExchangeFailed as exc:
            log.warning("lakehub: Rucio token for %s: %s", username, exc)
            problems.append(f"Rucio token: {exc}")
        return self.bundle(paths, account, token, expires, problems, self.courses_of(spawner))
