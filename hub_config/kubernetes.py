"""lakehub's KubeSpawner hooks in a zero-to-jupyterhub hub.

The chart drops ``jupyterhub_config.d/lakehub.py`` into the hub, which only does::

    from hub_config.kubernetes import configure
    configure(c)

:func:`configure` reads the site file (``$LAKEHUB_SITE``, default
``/etc/lakehub/site.yaml``) and sets ``pre_spawn_hook``, ``modify_pod_hook`` and
``post_stop_hook`` on ``c.KubeSpawner``, and each user's own ``profile_list`` (their
courses may grant more profiles).  The usage collector
(:mod:`spawner_hooks.kube_usage`) follows each server's pod through its node's kubelet
into the sessions record on the hub's volume (``lakehub.contract.HUB_USAGE_DIR``), which
``GET /hub/api/lakehub/usage`` serves to the usage report.  Everything else about the
pod (image, storage, the read-only cache volume) comes from the chart values; a member's
course folders and home size are set at spawn from their hub groups.

Where the Rucio token comes from:

* ``token_exchange`` (OIDC sites, the default when the site logs in through OIDC): the
  hub exchanges the user's access token from oauthenticator's auth_state for a
  ``rucio``-audience token at the identity provider (RFC 8693).  The hub holds no
  Rucio or signing secret.
* ``hub_issuer`` (the local default): the hub signs the token with its own key and
  creates the user's Rucio account with the Rucio admin password, exactly as in local
  mode.  Both secrets are files mounted into the hub pod (see the ``ENV_*`` names).

The hub's environment (``hub.extraEnv``, rendered by :mod:`hub_config.values`) uses the
``ENV_*`` names of :mod:`lakehub.contract`; each has a default here.  This module must not
import ``hub_config.local``: the hub image has no local stack.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from hub_config import course_access
from lakehub.contract import (
    CACHE_MOUNT,
    DASK_SERVICE,
    ENV_CACHE_MOUNT,
    ENV_CACHE_PFN_PREFIX,
    ENV_CACHE_URL,
    ENV_DASK_API_URL,
    ENV_EXCHANGE_AUDIENCE,
    ENV_EXCHANGE_CA_CERT,
    ENV_EXCHANGE_SCOPE,
    ENV_EXCHANGE_TOKEN_URL,
    ENV_ISSUER_KEY_FILE,
    ENV_ISSUER_URL,
    ENV_RUCIO_ADMIN_PASSWORD_FILE,
    ENV_RUCIO_ADMIN_USERNAME,
    ENV_SESSION_HOME,
    ENV_SESSION_MOUNT,
    ENV_SITE,
    ENV_TOKEN_SOURCE,
    ENV_TOKEN_URL,
    HUB_ISSUER,
    HUB_USAGE_DIR,
    ISSUER_KEY_DIR,
    ISSUER_KEY_KEY,
    POD_HOME,
    RUCIO_ADMIN_DIR,
    RUCIO_ADMIN_KEY,
    SESSION_MOUNT,
    SESSIONS_FILE,
    SITE_MOUNT,
    TOKEN_EXCHANGE,
    access_scope,
)
from sitefile import Site, load_site
from spawner_hooks import usage as usage_hooks
from spawner_hooks.exchange_hooks import TokenExchangeHooks
from spawner_hooks.hooks import LakehubHooks
from spawner_hooks.kube_courses import KubeCourseFolders
from spawner_hooks.kube_delivery import KubeSecretDelivery
from spawner_hooks.kube_session import KubeSession
from spawner_hooks.kube_usage import KubeUsageCollector
from spawner_hooks.profiles import ProfileCheck, kube_profile_list
from spawner_hooks.session import ReplicaMode
from tokens.exchange import TokenExchange


class ConfigError(ValueError):
    pass


def token_source(site: Site, environ: Mapping[str, str]) -> str:
    """``token_exchange`` for OIDC sites, ``hub_issuer`` otherwise; the environment can
    say so explicitly."""
    explicit = environ.get(ENV_TOKEN_SOURCE)
    if explicit:
        if explicit not in (TOKEN_EXCHANGE, HUB_ISSUER):
            raise ConfigError(
                f"{ENV_TOKEN_SOURCE}={explicit!r}: expected {TOKEN_EXCHANGE} or {HUB_ISSUER}"
            )
        return explicit
    return TOKEN_EXCHANGE if site.auth.type == "oidc" else HUB_ISSUER


def replica_mode(site: Site, environ: Mapping[str, str]) -> ReplicaMode | None:
    """rucio-jupyterlab's replica mode on the shared cache, when the cache service runs."""
    if not environ.get(ENV_CACHE_URL):
        return None
    mount = environ.get(ENV_CACHE_MOUNT, CACHE_MOUNT)
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
    from spawner_hooks.dask import ClusterStopper

    return (ClusterStopper(url, access_scope(DASK_SERVICE)).post_stop,)


def make_session(site: Site, environ: Mapping[str, str] | None = None) -> KubeSession:
    """The hooks for this site (pure apart from reading the hub_issuer's key file)."""
    environ = os.environ if environ is None else environ
    delivery = KubeSecretDelivery(
        mount_path=environ.get(ENV_SESSION_MOUNT, SESSION_MOUNT),
        home=environ.get(ENV_SESSION_HOME, POD_HOME),
        user_token_secret=site.dask.enabled,  # only the user's Dask workers read it
    )
    cache = replica_mode(site, environ)
    cache_url = environ.get(ENV_CACHE_URL) or None
    token_service_url = environ.get(ENV_TOKEN_URL) or None
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
            token_url=token_service_url,
        )
        return KubeSession(hooks, delivery, on_stop(environ))

    # hub_issuer: the same hooks as local mode, with the Secret delivery
    from spawner_hooks.rucio import AdminCredentials
    from tokens.mint import Issuer, load_signing_key

    issuer_url = environ.get(ENV_ISSUER_URL)
    if not issuer_url:
        raise ConfigError(
            f"{ENV_ISSUER_URL} is not set: a hub_issuer site needs the URL of the issuer"
            " that its Rucio server trusts"
        )
    issuer = Issuer(
        url=issuer_url.rstrip("/"),
        key=load_signing_key(
            Path(environ.get(ENV_ISSUER_KEY_FILE, f"{ISSUER_KEY_DIR}/{ISSUER_KEY_KEY}"))
        ),
        lifetime=site.tokens.lifetime_seconds,
    )
    admin = AdminCredentials(
        account=site.rucio.default.admin_account,
        username=environ.get(ENV_RUCIO_ADMIN_USERNAME, "root"),
        password_file=Path(
            environ.get(ENV_RUCIO_ADMIN_PASSWORD_FILE, f"{RUCIO_ADMIN_DIR}/{RUCIO_ADMIN_KEY}")
        ),
    )
    hooks = LakehubHooks(
        site,
        issuer,
        admin,
        delivery,
        cache=cache,
        cache_url=cache_url,
        cache_quota_bytes=site.cache.quota_bytes,
        token_url=token_service_url,
    )
    return KubeSession(hooks, delivery, on_stop(environ))


def configure(c, site: Site | None = None, environ: Mapping[str, str] | None = None):
    """Set lakehub's hooks on ``c.KubeSpawner``; returns the KubeSession (for tests)."""
    environ = os.environ if environ is None else environ
    if site is None:
        site = load_site(environ.get(ENV_SITE, SITE_MOUNT))
    session = make_session(site, environ)
    # per-course profiles, home sizes and shared folders, from the user's hub groups
    session.before_spawn = (
        ProfileCheck(site, local=False),
        KubeCourseFolders(site, environ.get(ENV_SESSION_HOME, POD_HOME)),
    )
    if len(site.profiles) > 1:  # one profile: no form (the chart's values size the pods)
        c.KubeSpawner.profile_list = kube_profile_list(site)
    session.install(c.KubeSpawner)
    # servers' hours, CPU time and peak memory for `make course-report`, from the kubelets
    record = Path(HUB_USAGE_DIR) / SESSIONS_FILE
    usage_hooks.install(c.KubeSpawner, KubeUsageCollector(record))
    # groups, instructors' roles, sharing, OIDC groups, a course's sessions for its report
    course_access.configure(c, site, record)
    if isinstance(session.hooks, TokenExchangeHooks):
        from spawner_hooks.oidc_refresh import refresh_ahead

        c.GenericOAuthenticator.refresh_user_hook = refresh_ahead
    return session
