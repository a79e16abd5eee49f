"""OIDC sites: the session's Rucio token comes from an RFC 8693 token exchange at the
identity provider (:class:`tokens.exchange.TokenExchange`), not from the hub's issuer."""

from __future__ import annotations

import logging

from sitefile import Site
from spawner_hooks import session
from spawner_hooks.hooks import SessionBundle, assemble_bundle, deliver
from spawner_hooks.kube_delivery import KubeSecretDelivery
from spawner_hooks.names import rucio_account
from tokens.exchange import TokenExchange, TokenExchangeFailed

log = logging.getLogger("JupyterHub").getChild("lakehub")


class TokenExchangeHooks:
    """OIDC sites: the bundle's token comes from a token exchange, not the hub's issuer.

    The same shape as :class:`LakehubHooks` (``build`` a SessionBundle from the shared
    builders, ``pre_spawn`` = build, deliver, set the environment) without what an OIDC
    site does not give the hub: no signing key, no Rucio admin password, so no Rucio
    accounts are created here (the identity provider's identities map to the site's
    accounts).  Deliberately not a subclass: LakehubHooks' constructor and spawn steps
    belong to the hub_issuer path (and to local mode) and change with it.
    """

    def __init__(
        self,
        site: Site,
        exchange: TokenExchange,
        delivery: KubeSecretDelivery,
        cache: session.ReplicaMode | None = None,
        cache_url: str | None = None,
        token_service_url: str | None = None,
    ):
        self.site = site
        self.exchange = exchange
        self.delivery = delivery
        self.cache = cache
        self.cache_url = cache_url
        self.token_service_url = token_service_url  # where sessions renew (lakehub.token_refresher)

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
        return assemble_bundle(
            self.site,
            paths,
            account,
            token,
            expires,
            problems,
            cache=self.cache,
            cache_url=self.cache_url,
            token_url=self.token_service_url,
        )

    async def pre_spawn(self, spawner) -> None:
        bundle = await self.build(spawner, self.delivery.paths(spawner))
        await deliver(self.delivery, spawner, bundle)
