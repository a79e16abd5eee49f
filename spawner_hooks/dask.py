"""Stop a user's Dask clusters when their server stops (``Spawner.post_stop_hook``).

The gateway knows clusters by the hub user who created them and lists or stops them
only for that user.  JupyterHub has already revoked the server's own token when the
post-stop hook runs, so the hook asks the hub for a new token of the user that may do
nothing but reach the gateway, lives two minutes, and is deleted as soon as the
clusters are stopped.  It speaks the gateway's public REST API (the one dask-gateway's
client uses) asynchronously; nothing blocks the hub's event loop but the two small
database writes JupyterHub itself makes for every token.  A gateway that does not
answer is logged and left to its idle timeout.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import httpx

log = logging.getLogger("JupyterHub").getChild("lakehub")

TOKEN_LIFETIME = 120
TOKEN_NOTE = "lakehub: stop Dask clusters at server stop"  # noqa: S105  (a note, not a secret)


def gateway_headers(token: str) -> dict[str, str]:
    """dask-gateway's JupyterHub authentication scheme (pure)."""
    return {"Authorization": f"jupyterhub {token}"}


async def stop_clusters(client: httpx.AsyncClient, api_url: str, token: str) -> list[str]:
    """Stop every cluster the token's user has that is not stopped yet; return names."""
    headers = gateway_headers(token)
    listed = await client.get(
        f"{api_url}/api/v1/clusters/", params={"status": "pending,running"}, headers=headers
    )
    listed.raise_for_status()
    names = sorted(listed.json())
    for name in names:
        done = await client.delete(f"{api_url}/api/v1/clusters/{quote(name)}", headers=headers)
        done.raise_for_status()
    return names


class ClusterStopper:
    """The post-stop hook: ``ClusterStopper(url, access_scope).post_stop(spawner)``."""

    def __init__(self, api_url: str, access_scope: str, timeout: float = 30.0):
        self.api_url = api_url.rstrip("/")
        self.access_scope = access_scope
        self.timeout = timeout

    async def post_stop(self, spawner) -> None:
        user = spawner.user
        token = user.new_api_token(
            note=TOKEN_NOTE, expires_in=TOKEN_LIFETIME, scopes=[self.access_scope]
        )
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                stopped = await stop_clusters(client, self.api_url, token)
        except httpx.HTTPError as exc:
            log.warning(
                "lakehub: could not stop %s's Dask clusters (%s); the gateway's idle timeout will",
                user.name,
                type(exc).__name__,
            )
            return
        finally:
            _revoke(user, token)
        if stopped:
            log.info("lakehub: stopped %s's Dask cluster(s) %s", user.name, ", ".join(stopped))


def _revoke(user, token: str) -> None:
    from jupyterhub import orm

    found = orm.APIToken.find(user.db, token)
    if found is not None:
        user.db.delete(found)
        user.db.commit()


def as_hook(stopper: ClusterStopper):
    """A plain function for ``post_stop_hook`` (traitlets copies config values)."""

    async def lakehub_dask_post_stop_hook(spawner) -> None:
        await stopper.post_stop(spawner)

    return lakehub_dask_post_stop_hook
