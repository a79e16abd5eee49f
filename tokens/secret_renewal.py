"""Kubernetes: after the token service renews a user's token, the copy in each of the
user's session Secrets is renewed too (a restarted container, or anything else that
mounts the Secret, starts from a valid token).

The hub labels every session Secret with ``lakehub/user`` = a hash of the user name
(``lakehub.contract.user_label``), so the renewer finds exactly that user's Secrets
with a label selector and never touches another user's.  It replaces the token key and
the expiry annotation with ``update`` (read, change, write back with the read
``resourceVersion``): the Secret never disappears, unlike delete + create, and a Secret
that changed or vanished meanwhile (the server stopped) is left alone.  The token
service's own Role grants exactly get, list and update on Secrets (helm/lakehub,
``token-service.yaml``).

The client is kubernetes_asyncio (as in KubeSpawner): nothing blocks the event loop.
"""

from __future__ import annotations

import base64
import copy
import logging

from lakehub.contract import (
    PART_OF,
    PART_OF_LABEL,
    TOKEN_EXPIRES_ANNOTATION,
    TOKEN_FILE,
    USER_LABEL,
    user_label,
)
from tokens.broker import Cached

log = logging.getLogger("lakehub.tokens")


def selector(username: str) -> str:
    """The label selector of a user's session Secrets (pure)."""
    return f"{PART_OF_LABEL}={PART_OF},{USER_LABEL}={user_label(username)}"


def stored_expiry(secret: dict) -> int:
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations.get(TOKEN_EXPIRES_ANNOTATION, 0))
    except ValueError:
        return 0


def renewed_secret(secret: dict, entry: Cached) -> dict | None:
    """The Secret (camelCase dict as read) with ``entry`` as its token, or None when it
    holds no token key (the spawn could not get one: nothing to renew) or already holds
    a token that lives at least as long (pure)."""
    if TOKEN_FILE not in (secret.get("data") or {}) or stored_expiry(secret) >= entry.expires:
        return None
    body = copy.deepcopy(secret)
    body["data"][TOKEN_FILE] = base64.b64encode(entry.token.strip().encode()).decode("ascii")
    metadata = body["metadata"]
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        TOKEN_EXPIRES_ANNOTATION: str(entry.expires),
    }
    metadata.pop("managedFields", None)
    return body


class SecretRenewer:
    """A broker renewer (``tokens.broker.TokenBroker``) for one namespace."""

    def __init__(self, namespace: str, kubeconfig: str | None = None):
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self._api = None
        self.updated = 0

    async def api(self):
        if self._api is None:
            from kubernetes_asyncio import client, config

            if self.kubeconfig:
                await config.load_kube_config(config_file=self.kubeconfig)
            else:
                config.load_incluster_config()
            self._api = client.CoreV1Api(client.ApiClient())
        return self._api

    async def __call__(self, username: str, entry: Cached) -> None:
        api = await self.api()
        found = await api.list_namespaced_secret(self.namespace, label_selector=selector(username))
        for item in found.items:
            secret = api.api_client.sanitize_for_serialization(item)
            body = renewed_secret(secret, entry)
            if body is None:
                continue
            name = secret["metadata"]["name"]
            try:
                await api.replace_namespaced_secret(name, self.namespace, body)
                self.updated += 1
            except Exception as exc:
                # 404: the server stopped; 409: it changed since we read it (a new spawn)
                if getattr(exc, "status", None) not in (404, 409):
                    raise
                log.info("Secret %s changed or went away while renewing; left alone", name)

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.api_client.close()
