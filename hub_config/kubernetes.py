"""lakehub's KubeSpawner hooks in a zero-to-jupyterhub hub.

The chart drops ``jupyterhub_config.d/lakehub.py`` into the hub, which only does::

    from hub_config.kubernetes import configure
    configure(c)

:func:`configure` reads the site file (``$LAKEHUB_SITE``, default
``/etc/lakehub/site.yaml``) and sets ``pre_spawn_hook``, ``modify_pod_hook`` and
``post_stop_hook`` on ``c.KubeSpawner``.  Everything else about the pod (image, storage,
the read-only cache volume, profiles) comes from the chart values.

Where the Rucio token comes from:

* ``token_exchange`` (OIDC sites, the default when the site logs in through OIDC): the
  hub exchanges the user's access token from oauthenticator's auth_state for a
  ``rucio``-audience token at the identity provider (RFC 8693).  The hub holds no
  Rucio or signing secret.
* ``hub_issuer`` (the local default): the hub signs the token with its own key and
  creates the user's Rucio account with the Rucio admin password, exactly as in local
  mode.  Both secrets are files mounted into the hub pod (see the ``ENV_*`` names).

This module must not import ``localstack`` or ``hub_config.local``: the hub image has
neither the embedded stack nor its dependencies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from hub_config.kube import DEFAULT_CACHE_MOUNT
from hub_config.site import Site, load_site
from spawner_hooks.hooks import LakehubHooks
from spawner_hooks.kube import (
    DEFAULT_HOME,
    SESSION_MOUNT,
    KubeSecretDelivery,
    KubeSession,
    TokenExchange,
    TokenExchangeHooks,
)
from spawner_hooks.session import ReplicaMode

DEFAULT_SITE = "/etc/lakehub/site.yaml"
SECRETS = "/etc/lakehub/secrets"

# The hub's environment (set by the chart: hub.extraEnv); every one has a default.
ENV_SITE = "LAKEHUB_SITE"
# token_exchange | hub_issuer (default: token_exchange for OIDC sites)
ENV_TOKEN_SOURCE = "LAKEHUB_TOKEN_SOURCE"  # noqa: S105 (a name, not a secret)
ENV_SESSION_MOUNT = "LAKEHUB_SESSION_MOUNT"  # where pods see the Secret (/var/run/lakehub)
ENV_SESSION_HOME = "LAKEHUB_SESSION_HOME"  # the user's home in the pod (/home/jovyan)
ENV_CACHE_URL = "LAKEHUB_CACHE_URL"  # the cache service; unset: no replica mode
ENV_CACHE_MOUNT = "LAKEHUB_CACHE_MOUNT"  # where pods see the cache (read-only)
ENV_CACHE_PFN_PREFIX = "LAKEHUB_CACHE_PFN_PREFIX"  # the cache RSE's path prefix
# the token service as pods reach it (hub_services.issuer); unset: tokens are not renewed
ENV_TOKEN_SERVICE_URL = "LAKEHUB_TOKEN_URL"  # noqa: S105 (a name, not a secret)
# the Dask Gateway's API as the hub reaches it; set: a user's clusters stop with the server
ENV_DASK_API_URL = "LAKEHUB_DASK_API_URL"
# token_exchange
ENV_EXCHANGE_AUDIENCE = "LAKEHUB_EXCHANGE_AUDIENCE"  # rucio
ENV_EXCHANGE_SCOPE = "LAKEHUB_EXCHANGE_SCOPE"  # "openid profile"; empty: send no scope
# the IdP's token endpoint; default: the authenticator's token_url
ENV_EXCHANGE_TOKEN_URL = "LAKEHUB_EXCHANGE_TOKEN_URL"  # noqa: S105 (a name, not a secret)
ENV_EXCHANGE_CA_CERT = "LAKEHUB_EXCHANGE_CA_CERT"  # default: the system's CAs
# hub_issuer
ENV_ISSUER_URL = "LAKEHUB_ISSUER_URL"  # required: the issuer Rucio trusts
ENV_ISSUER_KEY_FILE = "LAKEHUB_ISSUER_KEY_FILE"
ENV_RUCIO_ADMIN_USERNAME = "LAKEHUB_RUCIO_ADMIN_USERNAME"
ENV_RUCIO_ADMIN_PASSWORD_FILE = "LAKEHUB_RUCIO_ADMIN_PASSWORD_FILE"  # noqa: S105

TOKEN_EXCHANGE = "token_exchange"  # noqa: S105 (a name, not a secret)
HUB_ISSUER = "hub_issuer"


class ConfigError(ValueError):
    pass


def token_source(site: Site, environ: Mapping[str, str]) -> str:
    """``token_exchange`` for OIDC sites, ``hub_issuer`` otherwise; the environment or
    a site ``tokens.source`` of ``token_exchange`` can say so explicitly."""
    explicit = environ.get(ENV_TOKEN_SOURCE)
    if explicit:
        if explicit not in (TOKEN_EXCHANGE, HUB_ISSUER):
            raise ConfigError(
                f"{ENV_TOKEN_SOURCE}={explicit!r}: expected {TOKEN_EXCHANGE} or {HUB_ISSUER}"
            )
        return explicit
    if getattr(site.tokens, "source", None) == TOKEN_EXCHANGE:
        return TOKEN_EXCHANGE
    return TOKEN_EXCHANGE if getattr(site.auth, "type", None) == "oidc" else HUB_ISSUER


def replica_mode(site: Site, environ: Mapping[str, str]) -> ReplicaMode | None:
    """rucio-jupyterlab's replica mode on the shared cache, when the cache service runs."""
    if not environ.get(ENV_CACHE_URL):
        return None
    mount = environ.get(ENV_CACHE_MOUNT, DEFAULT_CACHE_MOUNT)
    return ReplicaMode(
        rse=site.cache.rse,
        mount_path=mount,
        pfn_prefix=environ.get(ENV_CACHE_PFN_PREFIX, mount),
    )


def on_stop(environ: Mapping[str, str]) -> tuple:
    """Post-stop steps besides removing the session Secrets: stopping the user's Dask
    clusters when the chart runs a gateway (``LAKEHUB_DASK_API_URL``)."""
    url = environ.get(ENV_DASK_API_URL)
    if not url:
        return ()
    from hub_services.dask_gateway.config import ACCESS
    from spawner_hooks.dask import ClusterStopper

    return (ClusterStopper(url, ACCESS).post_stop,)


def make_session(site: Site, environ: Mapping[str, str] | None = None) -> KubeSession:
    """The hooks for this site (pure apart from reading the hub_issuer's key file)."""
    environ = os.environ if environ is None else environ
    delivery = KubeSecretDelivery(
        mount_path=environ.get(ENV_SESSION_MOUNT, SESSION_MOUNT),
        home=environ.get(ENV_SESSION_HOME, DEFAULT_HOME),
    )
    cache = replica_mode(site, environ)
    cache_url = environ.get(ENV_CACHE_URL) or None
    token_service_url = environ.get(ENV_TOKEN_SERVICE_URL) or None
    if token_source(site, environ) == TOKEN_EXCHANGE:
        scope = environ.get(ENV_EXCHANGE_SCOPE, "openid profile")
        auth = site.auth  # an OIDC site names its token endpoint and the audience
        exchange = TokenExchange(
            audience=environ.get(ENV_EXCHANGE_AUDIENCE)
            or getattr(auth, "token_exchange_audience", None)
            or "rucio",
            scope=scope or None,
            token_url=environ.get(ENV_EXCHANGE_TOKEN_URL) or getattr(auth, "token_url", None),
            ca_cert=environ.get(ENV_EXCHANGE_CA_CERT) or None,
        )
        hooks = TokenExchangeHooks(
            site,
            exchange,
            delivery,
            cache=cache,
            cache_url=cache_url,
            token_service_url=token_service_url,
        )
        return KubeSession(hooks, delivery, on_stop(environ))

    # hub_issuer: the same hooks as local mode, with the Secret delivery
    from spawner_hooks.rucio import AdminCredentials
    from spawner_hooks.tokens import Issuer, load_signing_key

    issuer_url = environ.get(ENV_ISSUER_URL)
    if not issuer_url:
        raise ConfigError(
            f"{ENV_ISSUER_URL} is not set: a hub_issuer site needs the URL of the issuer"
            " that its Rucio server trusts"
        )
    issuer = Issuer(
        url=issuer_url.rstrip("/"),
        key=load_signing_key(Path(environ.get(ENV_ISSUER_KEY_FILE, f"{SECRETS}/issuer-key.json"))),
        lifetime=site.tokens.lifetime_seconds,
    )
    admin = AdminCredentials(
        account=site.rucio.default.admin_account,
        username=environ.get(ENV_RUCIO_ADMIN_USERNAME, "root"),
        password_file=Path(
            environ.get(ENV_RUCIO_ADMIN_PASSWORD_FILE, f"{SECRETS}/rucio-admin-password")
        ),
    )
    hooks = LakehubHooks(
        site,
        issuer,
        admin,
        delivery,
        cache=cache,
        cache_url=cache_url,
        cache_quota_bytes=int(site.cache.quota_gb * 1e9),
        token_url=token_service_url,
    )
    return KubeSession(hooks, delivery, on_stop(environ))


def configure(c, site: Site | None = None, environ: Mapping[str, str] | None = None):
    """Set lakehub's hooks on ``c.KubeSpawner``; returns the KubeSession (for tests)."""
    environ = os.environ if environ is None else environ
    if site is None:
        site = load_site(environ.get(ENV_SITE, DEFAULT_SITE))
    session = make_session(site, environ)
    session.install(c.KubeSpawner)
    if isinstance(session.hooks, TokenExchangeHooks):
        from spawner_hooks.oidc_refresh import refresh_ahead

        c.GenericOAuthenticator.refresh_user_hook = refresh_ahead
    return session
