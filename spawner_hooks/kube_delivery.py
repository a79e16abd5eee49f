"""Kubernetes delivery of a session: a per-user Secret, mounted read-only into the pod.

The SessionBundle is the one built for local mode (``LakehubHooks.build`` with the same
builders from :mod:`spawner_hooks.session`); only the delivery differs:

* :class:`KubeSecretDelivery` turns the bundle into one Secret per server (the token,
  ``rucio.cfg``, ``jupyter_server_config.json``, ``status.json``) and the pod mounts it
  read-only at ``/var/run/lakehub``.  The pod spec carries paths, never the token.
* The token the session uses lives in a small in-memory ``emptyDir`` of the pod
  (``/var/run/lakehub-token/rucio-token``, ``BEARER_TOKEN_FILE``): lakehub's refresher
  in the pod seeds it from the Secret's copy (``LAKEHUB_TOKEN_SEED``) and replaces it
  with renewed tokens from the token service (``LAKEHUB_TOKEN_URL``).  The token service
  also rewrites the Secret's copy after each renewal (``hub_services.secret_renewal``),
  finding a user's Secrets by the ``lakehub/user`` label (a hash of the user name).
* KubeSpawner writes the server's JupyterHub API token as a plain env value in the pod
  spec (its upstream issue 398).  lakehub puts it into the same Secret and turns
  ``JUPYTERHUB_API_TOKEN``/``JPY_API_TOKEN`` into ``secretKeyRef`` entries, so no token of
  any kind is readable from the pod spec.
* z2jh's hub Role may get/list/watch/create/delete Secrets but not patch or update them,
  so the hub replaces a Secret by delete + create.  It is created before the pod exists,
  so an owner reference to the pod is impossible; the Secret is removed in the stop path
  (``post_stop_hook``), which JupyterHub runs after every stop, failed starts included.
* Sites that log in through OIDC get the Rucio token by an RFC 8693 token exchange at
  the identity provider (:class:`TokenExchange`, httpx, asynchronous) instead of the
  hub's own issuer: :class:`TokenExchangeHooks`.

Every Kubernetes call goes through KubeSpawner's own asynchronous client
(kubernetes_asyncio, ``spawner.api``), with the hub's identity; nothing blocks the hub's
event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import ssl
import time
import weakref
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

from hub_config.site import Site
from spawner_hooks import session
from spawner_hooks.hooks import (
    DeliveryFailed,
    LakehubHooks,
    SessionBundle,
    assemble_bundle,
    deliver,
)
from spawner_hooks.names import rucio_account

log = logging.getLogger("JupyterHub").getChild("lakehub")

SESSION_MOUNT = "/var/run/lakehub"
SESSION_VOLUME = "lakehub-session"
TOKEN_MOUNT = "/var/run/lakehub-token"  # noqa: S105 (a path, not a secret)
TOKEN_VOLUME = "lakehub-token"  # noqa: S105 (a name, not a secret)
USER_LABEL = "lakehub/user"
DEFAULT_HOME = "/home/jovyan"
NOTEBOOK_CONTAINER = "notebook"  # KubeSpawner's name for the single-user container
TOKEN_EXPIRES_ANNOTATION = "lakehub/token-expires"  # noqa: S105 (a name, not a secret)
# RFC 8693 identifiers (names, not secrets)
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105


# --- paths ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeSessionPaths(session.SessionPaths):
    """Session paths in a pod.  ``root`` is the read-only Secret mount and holds every
    file flat (a Secret key is a file name), the Jupyter config and the token's seed
    included; the live token is in the writable ``live`` folder (an emptyDir); what the
    session writes itself (rucio-jupyterlab's state) lives under ``state`` in the home."""

    state: PurePosixPath = PurePosixPath(DEFAULT_HOME) / ".lakehub"
    live: PurePosixPath = PurePosixPath(TOKEN_MOUNT)

    @property
    def token(self) -> PurePosixPath:
        return self.live / TOKEN_KEY

    @property
    def token_seed(self) -> PurePosixPath:
        return self.root / TOKEN_KEY

    @property
    def jupyter_config_dir(self) -> PurePosixPath:
        return self.root

    @property
    def rucio_jupyterlab_dir(self) -> PurePosixPath:
        return self.state / "rucio-jupyterlab"


# --- pure builders ----------------------------------------------------------------------


TOKEN_KEY = "rucio-token"  # noqa: S105 (the Secret key / file name of the token)
API_TOKEN_KEY = "jupyterhub-api-token"  # noqa: S105 (a Secret key, not a secret)
API_TOKEN_ENV = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")  # KubeSpawner's plain env names


def secret_name(pod_name: str) -> str:
    """The Secret of a server; pod names are DNS labels, so this is a valid name."""
    return f"{pod_name}-lakehub"


USER_TOKEN_PREFIX = "lakehub-rucio-token-"  # noqa: S105 (a name prefix)


def user_token_secret_name(username: str) -> str:
    """The per-user Secret holding only the user's current Rucio token (key
    ``rucio-token``), for pods that are not the user's server (Dask workers); KubeSpawner's
    safe slug keeps every hub name a valid, distinct object name."""
    from kubespawner.slugs import safe_slug

    return safe_slug(USER_TOKEN_PREFIX + username)


def user_label(username: str) -> str:
    """A label value naming a user whatever characters the name has (label values
    allow 63 of ``[A-Za-z0-9_.-]``): the first 40 hex digits of its SHA-256."""
    return hashlib.sha256(username.encode()).hexdigest()[:40]


def session_files(paths: session.SessionPaths, bundle: SessionBundle) -> dict[str, bytes]:
    """File name -> content for every file of the bundle, the notice and the token.

    The mount is flat (a Secret key is a file name), so a bundle file that is not
    directly in ``paths.root`` cannot be delivered and is refused.
    """
    files: dict[str, bytes] = {}
    for path, text in bundle.files.items():
        path = PurePosixPath(path)
        if path.parent != paths.root:
            raise ValueError(f"{path} is not directly in the session mount {paths.root}")
        files[path.name] = text.encode()
    if bundle.problems:
        files[session.NOTICE_NAME] = session.notice_markdown(bundle.problems).encode()
    if bundle.token:
        # exactly the token: rucio-clients and rucio-jupyterlab want no trailing newline
        files[TOKEN_KEY] = bundle.token.strip().encode()
    return files


def secret_manifest(
    name: str, files: dict[str, bytes], labels: dict[str, str], token_expires: int | None = None
) -> dict:
    """The Secret holding a session's files (camelCase, as sent to the API server).

    Mutable: the token service replaces the token in it after each renewal (its own
    Role grants ``update`` on Secrets; the hub's does not), and the kubelet then updates
    the mounted copy.
    """
    metadata: dict = {"name": name, "labels": dict(labels)}
    if token_expires:
        metadata["annotations"] = {TOKEN_EXPIRES_ANNOTATION: str(token_expires)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "immutable": False,
        "data": {
            key: base64.b64encode(content).decode("ascii") for key, content in sorted(files.items())
        },
    }


def secret_volume(name: str, mode: int) -> dict:
    """The pod volume: every key of the Secret is a file of mode ``mode``.

    ``optional``: when the Secret could not be made the server still starts, without
    Rucio access (the rule of local mode too: lakehub never fails a spawn).
    """
    return {
        "name": SESSION_VOLUME,
        "secret": {"secretName": name, "optional": True, "defaultMode": mode},
    }


def secret_volume_mount(mount_path: str = SESSION_MOUNT) -> dict:
    return {"name": SESSION_VOLUME, "mountPath": mount_path, "readOnly": True}


def api_token_env(name: str, secret: str) -> dict:
    """An env entry taking the server's API token from its Secret, not from the spec."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": API_TOKEN_KEY}}}


def token_volume() -> dict:
    """The live token's folder: in memory (never on a node's disk), private to the pod."""
    return {"name": TOKEN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}


def token_volume_mount(mount_path: str = TOKEN_MOUNT) -> dict:
    return {"name": TOKEN_VOLUME, "mountPath": mount_path}


def session_file_mode(fs_group: int | None) -> int:
    """0440 with an fsGroup (the kubelet gives the files that group, which the user's
    processes have); otherwise the files stay root's and only 0444 lets the user read
    them.  Either way nobody else is in the pod: it runs one user's server."""
    return 0o440 if fs_group is not None else 0o444


# --- delivery ---------------------------------------------------------------------------


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


class KubeSecretDelivery:
    """Cluster mode: the bundle becomes the server's Secret, mounted read-only.

    ``deliver`` (pre-spawn) creates the Secret and replaces a left-over one by delete +
    create; ``modify_pod`` mounts it; ``remove`` (post-stop) deletes it.  Only verbs of
    z2jh's hub Role are used (create, delete), none it lacks (patch, update).
    """

    def __init__(
        self,
        mount_path: str = SESSION_MOUNT,
        home: str = DEFAULT_HOME,
        request_timeout: float = 30.0,
        attempts: int = 5,
        token_mount: str = TOKEN_MOUNT,
    ):
        self.mount_path = mount_path
        self.token_mount = token_mount
        # spawners whose Secret holds their API token (the env may then refer to it)
        self._holding_api_token: weakref.WeakSet = weakref.WeakSet()
        self.home = home
        self.request_timeout = request_timeout
        self.attempts = attempts

    def paths(self, spawner) -> KubeSessionPaths:
        return KubeSessionPaths(
            PurePosixPath(self.mount_path),
            state=PurePosixPath(self.home) / ".lakehub",
            live=PurePosixPath(self.token_mount),
        )

    @staticmethod
    def name(spawner) -> str:
        return secret_name(spawner.pod_name)

    @staticmethod
    def labels(spawner) -> dict[str, str]:
        return {
            "app.kubernetes.io/part-of": "lakehub",
            "app.kubernetes.io/component": "session",
            "lakehub/pod": spawner.pod_name,
            USER_LABEL: user_label(spawner.user.name),
        }

    def manifest(self, spawner, bundle: SessionBundle) -> dict:
        files = session_files(self.paths(spawner), bundle)
        if getattr(spawner, "api_token", None):
            files[API_TOKEN_KEY] = spawner.api_token.encode()
        return secret_manifest(
            self.name(spawner), files, self.labels(spawner), bundle.token_expires
        )

    async def _call(self, fn, *args, **kwargs):
        return await asyncio.wait_for(fn(*args, **kwargs), self.request_timeout)

    async def _delete(self, spawner, name: str) -> None:
        try:
            await self._call(
                spawner.api.delete_namespaced_secret, name=name, namespace=spawner.namespace
            )
        except Exception as exc:
            if _status(exc) != 404:
                raise

    async def deliver(self, spawner, bundle: SessionBundle) -> None:
        """Create the Secret; if one is left over (a hub that stopped before its
        post-stop hook ran), delete it and create it again: no patch, no update."""
        manifest = self.manifest(spawner, bundle)
        name = manifest["metadata"]["name"]
        try:
            for attempt in range(self.attempts):
                try:
                    await self._call(
                        spawner.api.create_namespaced_secret,
                        namespace=spawner.namespace,
                        body=manifest,
                    )
                    if API_TOKEN_KEY in manifest["data"]:
                        self._holding_api_token.add(spawner)
                    await self.deliver_user_token(spawner, bundle)
                    return
                except Exception as exc:
                    if _status(exc) != 409 or attempt == self.attempts - 1:
                        raise
                if attempt:  # someone keeps re-creating it: give them a moment
                    await asyncio.sleep(0.1 * 2**attempt)
                await self._delete(spawner, name)
        except Exception as exc:
            raise DeliveryFailed(
                f"creating Secret {spawner.namespace}/{name} for {spawner.user.name} failed:"
                f" {_describe(exc)}"
            ) from None

    def user_token_manifest(self, spawner, bundle: SessionBundle) -> dict:
        labels = {**self.labels(spawner), "app.kubernetes.io/component": "user-token"}
        labels.pop("lakehub/pod")
        return secret_manifest(
            user_token_secret_name(spawner.user.name),
            {TOKEN_KEY: bundle.token.strip().encode()},
            labels,
            bundle.token_expires,
        )

    async def deliver_user_token(self, spawner, bundle: SessionBundle) -> None:
        """The per-user token Secret (created, or replaced by delete + create); the token
        service keeps it current like the server's own.  Failing here costs only the
        user's Dask workers their token: logged, never a failed spawn."""
        if not bundle.token:
            return
        manifest = self.user_token_manifest(spawner, bundle)
        name = manifest["metadata"]["name"]

        async def create() -> None:
            await self._call(
                spawner.api.create_namespaced_secret, namespace=spawner.namespace, body=manifest
            )

        try:
            try:
                await create()
            except Exception as exc:
                if _status(exc) != 409:  # already there (another server of the user)
                    raise
                await self._delete(spawner, name)
                await create()
        except Exception as exc:
            log.warning("lakehub: Secret %s for %s: %s", name, spawner.user.name, _describe(exc))

    async def remove(self, spawner) -> None:
        self._holding_api_token.discard(spawner)
        others = [
            s
            for s in getattr(spawner.user, "spawners", {}).values()
            if s is not spawner and getattr(s, "active", False)
        ]
        if not others:  # the user's last server: their token leaves the cluster with it
            try:
                await self._delete(spawner, user_token_secret_name(spawner.user.name))
            except Exception as exc:
                log.warning(
                    "lakehub: deleting %s's token Secret: %s", spawner.user.name, _describe(exc)
                )
        name = self.name(spawner)
        try:
            await self._delete(spawner, name)
        except Exception as exc:
            raise DeliveryFailed(
                f"deleting Secret {spawner.namespace}/{name} failed: {_describe(exc)}"
            ) from None

    def pod_volume(self, spawner, fs_group: int | None) -> dict:
        return secret_volume(self.name(spawner), session_file_mode(fs_group))

    def modify_pod(self, spawner, pod):
        """Add the Secret volume (read-only) and the live token's emptyDir to
        KubeSpawner's V1Pod."""
        from kubernetes_asyncio.client.models import V1EnvVar, V1Volume, V1VolumeMount
        from kubespawner.utils import get_k8s_model

        spec = pod.spec
        fs_group = _field(spec.security_context, "fs_group", "fsGroup")
        ours = (SESSION_VOLUME, TOKEN_VOLUME)
        spec.volumes = [v for v in (spec.volumes or []) if _name(v) not in ours]
        spec.volumes.append(get_k8s_model(V1Volume, self.pod_volume(spawner, fs_group)))
        spec.volumes.append(get_k8s_model(V1Volume, token_volume()))
        container = next(
            (c for c in spec.containers if c.name == NOTEBOOK_CONTAINER), spec.containers[0]
        )
        mounts = [m for m in (container.volume_mounts or []) if _name(m) not in ours]
        mounts.append(get_k8s_model(V1VolumeMount, secret_volume_mount(self.mount_path)))
        mounts.append(get_k8s_model(V1VolumeMount, token_volume_mount(self.token_mount)))
        container.volume_mounts = mounts
        if spawner in self._holding_api_token:
            container.env = [
                get_k8s_model(V1EnvVar, api_token_env(_name(e), self.name(spawner)))
                if _name(e) in API_TOKEN_ENV
                else e
                for e in (container.env or [])
            ]
        return pod


def _field(obj, attribute: str, key: str):
    """A field of a kubernetes model object, or of the camelCase dict KubeSpawner may
    have put in its place."""
    if obj is None:
        return None
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, attribute, None)


def _name(obj) -> str | None:
    return _field(obj, "name", "name")


def _describe(exc: BaseException) -> str:
    status = _status(exc)
    if status is not None:
        reason = getattr(exc, "reason", "") or ""
        return f"HTTP {status} {reason}".strip()
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- token exchange (OIDC sites) ----------------------------------------------------------


class TokenExchangeFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class ExchangedToken:
    token: str
    expires: int | None


def jwt_expiry(token: str) -> int | None:
    """``exp`` of a JWT read without verifying it (the IdP signed it; Rucio verifies)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims["exp"])
    except (IndexError, KeyError, ValueError, TypeError):
        return None


def exchange_form(subject_token: str, audience: str, scope: str | None) -> dict[str, str]:
    """The RFC 8693 request body: the user's access token for one with ``audience``."""
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


def client_auth_header(client_id: str, client_secret: str) -> str:
    """HTTP Basic client authentication (RFC 6749 2.3.1: form-encode, then base64)."""
    raw = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class TokenExchange:
    """Exchange the user's access token (oauthenticator's auth_state) at the identity
    provider's token endpoint for a Rucio-audience token (RFC 8693).

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
        self._clients: dict[asyncio.AbstractEventLoop, tuple] = {}
        self._ssl: ssl.SSLContext | None = None

    def _client(self):
        """One httpx client and one limit per event loop (the hub has one loop; tests
        have several): connections are reused and the TLS context is made once."""
        import httpx

        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            if self._ssl is None:
                self._ssl = ssl.create_default_context(cafile=self.ca_cert)
            client = httpx.AsyncClient(timeout=self.timeout, verify=self._ssl)
            entry = (client, asyncio.Semaphore(self.max_parallel))
            self._clients = {lp: e for lp, e in self._clients.items() if not lp.is_closed()}
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
        client, limit = self._client()
        try:
            async with limit:
                response = await client.post(
                    url,
                    data=exchange_form(subject, self.audience, self.scope),
                    headers={
                        "Authorization": client_auth_header(client_id, secret),
                        "Accept": "application/json",
                    },
                )
        except Exception as exc:  # httpx transport errors come in many types
            raise TokenExchangeFailed(
                f"the identity provider did not answer ({type(exc).__name__})"
            ) from None
        if response.status_code != 200:
            detail = ""
            try:
                body = response.json()
                if isinstance(body, dict):
                    error = f"{body.get('error', '')} {body.get('error_description', '')}"
                    detail = f": {error.strip()}"[:300] if error.strip() else ""
            except ValueError:
                pass
            raise TokenExchangeFailed(
                f"the identity provider refused the token exchange (HTTP"
                f" {response.status_code}{detail})"
            )
        try:
            body = response.json()
            token = body["access_token"]
            if not isinstance(token, str) or not token.strip():
                raise ValueError("empty")
        except (ValueError, KeyError, TypeError):
            raise TokenExchangeFailed("the token exchange answer holds no access_token") from None
        expires = jwt_expiry(token)
        if expires is None:
            try:
                expires = int(self.clock()) + int(body["expires_in"])
            except (KeyError, TypeError, ValueError):
                expires = None
        return ExchangedToken(token, expires)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client, _ in clients.values():
            await client.aclose()


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
        self.token_service_url = token_service_url  # where sessions renew (lakehub.tokens)

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


# --- the three KubeSpawner hooks ----------------------------------------------------------


class KubeSession:
    """Ties a bundle builder (LakehubHooks or TokenExchangeHooks) to the Secret delivery
    and gives KubeSpawner its three hooks as plain functions (traitlets deep-copies
    config values; a function is copied by reference, a bound method is not)."""

    def __init__(
        self,
        hooks: LakehubHooks | TokenExchangeHooks,
        delivery: KubeSecretDelivery,
        also_on_stop: tuple = (),
    ):
        if hooks.delivery is not delivery:
            raise ValueError("the hooks must deliver through this KubeSecretDelivery")
        self.hooks = hooks
        self.delivery = delivery
        # more post-stop steps, e.g. spawner_hooks.dask.ClusterStopper.post_stop
        self.also_on_stop = also_on_stop

    async def pre_spawn(self, spawner) -> None:
        await self.hooks.pre_spawn(spawner)

    def modify_pod(self, spawner, pod):
        return self.delivery.modify_pod(spawner, pod)

    async def post_stop(self, spawner) -> None:
        try:
            await self.delivery.remove(spawner)
        except DeliveryFailed as exc:
            log.error("lakehub: %s", exc)
        for step in self.also_on_stop:
            await step(spawner)

    def hook_functions(self) -> dict:
        async def lakehub_pre_spawn_hook(spawner) -> None:
            await self.pre_spawn(spawner)

        def lakehub_modify_pod_hook(spawner, pod):
            return self.modify_pod(spawner, pod)

        async def lakehub_post_stop_hook(spawner) -> None:
            await self.post_stop(spawner)

        return {
            "pre_spawn_hook": lakehub_pre_spawn_hook,
            "modify_pod_hook": lakehub_modify_pod_hook,
            "post_stop_hook": lakehub_post_stop_hook,
        }

    def install(self, spawner_config) -> None:
        """Set the hooks on a traitlets config section, e.g. ``c.KubeSpawner``."""
        for trait, fn in self.hook_functions().items():
            setattr(spawner_config, trait, fn)
