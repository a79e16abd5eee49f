"""What users' and servers' tokens may do, the same for the local hub and the chart.

JupyterHub's defaults (a user's own things; a server's activity and access to itself)
plus lakehub's services: the shared cache, the token service and, when the site has one,
the Dask Gateway; and sharing one's own server with one's courses' instructors
(``hub_config.course_access``).
"""

from __future__ import annotations

from lakehub.contract import (
    CACHE_SERVICE,
    COURSE_SHARE_SCOPE,
    DASK_SERVICE,
    ISSUER_SERVICE,
    access_scope,
)
from sitefile import Site

CACHE_ACCESS = access_scope(CACHE_SERVICE)
TOKEN_ACCESS = access_scope(ISSUER_SERVICE)
DASK_ACCESS = access_scope(DASK_SERVICE)
COURSE_SHARE = f"{COURSE_SHARE_SCOPE}!user"


def service_scopes(site: Site) -> list[str]:
    """The lakehub services every user and every server token may call."""
    return [CACHE_ACCESS, TOKEN_ACCESS] + ([DASK_ACCESS] if site.dask.enabled else [])


def user_scopes(site: Site) -> list[str]:
    """The ``user`` role."""
    return ["self", COURSE_SHARE, *service_scopes(site)]


def server_token_scopes(site: Site) -> list[str]:
    """A session's ``$JUPYTERHUB_API_TOKEN``."""
    return [
        "users:activity!user",
        "access:servers!server",
        COURSE_SHARE,
        *service_scopes(site),
    ]
