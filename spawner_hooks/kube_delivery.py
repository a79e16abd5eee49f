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
  also rewrites the Secret's copy after each renewal (:mod:`tokens.secret_renewal`),
  finding a user's Secrets by the ``lakehub/user`` label (a hash of the user name).
* KubeSpawner writes the server's JupyterHub API token as a plain env value in the pod
  spec (its upstream issue 398).  lakehub puts it into the same Secret and turns
  ``JUPYTERHUB_API_TOKEN``/``JPY_API_TOKEN`` into ``secretKeyRef`` entries, so no token of
  any kind is readable from the pod spec.
* z2jh's hub Role may get/list/watch/create/delete Secrets but not patch or update them,
  so the hub replaces a Secret by delete + create.  The Secret is not tied to the pod by
  an owner reference; it is removed in the stop path (``post_stop_hook``), which
  JupyterHub runs after every stop, failed starts included.
* With ``overlap`` (what :mod:`spawner_hooks.kube_session` sets), the pre-spawn hook
  sets the pod's environment (which names no token) and only begins the rest: the
  token (the exchange at the identity provider, or Rucio and the hub's issuer) and the
  Secrets are made while KubeSpawner makes the PVC and the pod's manifest
  (:meth:`KubeSecretDelivery.begin`).  Its ``modify_pod_hook`` waits for them
  (:meth:`KubeSecretDelivery.delivered`), so they exist before the pod does.  The stop
  path waits for them too before deleting them.

Every Kubernetes call goes through KubeSpawner's own asynchronous client
(kubernetes_asyncio, ``spawner.api``), with the hub's identity; nothing blocks the hub's
event loop.  The hooks that use it: :mod:`spawner_hooks.kube_session`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import weakref
from dataclasses import dataclass
from pathlib import PurePosixPath

from lakehub.contract import (
    API_TOKEN_KEY,
    NOTICE_FILE,
    PART_OF,
    PART_OF_LABEL,
    POD_HOME,
    POD_LABEL,
    RUCIO_JUPYTERLAB_DIR,
    SESSION_DIR,
    SESSION_MOUNT,
    SESSION_VOLUME,
    TOKEN_EXPIRES_ANNOTATION,
    TOKEN_FILE,
    TOKEN_MOUNT,
    TOKEN_VOLUME,
    USER_LABEL,
    USER_TOKEN_SECRET_PREFIX,
    session_secret_name,
    user_label,
)
from spawner_hooks import session
from spawner_hooks.hooks import DeliveryFailed, SessionBundle

log = logging.getLogger("JupyterHub").getChild("lakehub")

NOTEBOOK_CONTAINER = "notebook"  # KubeSpawner's name for the single-user container
API_TOKEN_ENV = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")  # KubeSpawner's plain env names


# --- paths ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeSessionPaths(session.SessionPaths):
    """Session paths in a pod.  ``root`` is the read-only Secret mount and holds every
    file flat (a Secret key is a file name), the Jupyter config and the token's seed
    included; the live token is in the writable ``live`` folder (an emptyDir); what the
    session writes itself (rucio-jupyterlab's state) lives under ``state`` in the home."""

    state: PurePosixPath = PurePosixPath(POD_HOME) / SESSION_DIR
    live: PurePosixPath = PurePosixPath(TOKEN_MOUNT)

    @property
    def token(self) -> PurePosixPath:
        return self.live / TOKEN_FILE

    @property
    def token_seed(self) -> PurePosixPath:
        return self.root / TOKEN_FILE

    @property
    def jupyter_config_dir(self) -> PurePosixPath:
        return self.root

    @property
    def rucio_jupyterlab_dir(self) -> PurePosixPath:
        return self.state / RUCIO_JUPYTERLAB_DIR


# --- pure builders ----------------------------------------------------------------------


def user_token_secret_name(username: str) -> str:
    """The per-user Secret holding only the user's current Rucio token (key
    ``rucio-token``), for pods that are not the user's server (Dask workers); KubeSpawner's
    safe slug keeps every hub name a valid, distinct object name."""
    from kubespawner.slugs import safe_slug

    return safe_slug(USER_TOKEN_SECRET_PREFIX + username)


def kubespawner_literal(value: str) -> str:
    """``value`` as KubeSpawner keeps it: it expands ``{username}``-style fields in the
    environment's values, so the braces of a JSON value are doubled (pure)."""
    return value.replace("{", "{{").replace("}", "}}")


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
        files[NOTICE_FILE] = session.notice_markdown(bundle.problems).encode()
    if bundle.token:
        # exactly the token: rucio-clients and rucio-jupyterlab want no trailing newline
        files[TOKEN_FILE] = bundle.token.strip().encode()
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


class ApiRefused(Exception):
    """The apiserver answered a call with an error status (what kubernetes_asyncio's
    ApiException says, for calls whose body is not read)."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status
        self.reason = reason


class KubeSecretDelivery:
    """Cluster mode: the bundle becomes the server's Secret, mounted read-only.

    ``deliver`` (pre-spawn) creates the Secret and replaces a left-over one by delete +
    create; ``modify_pod`` mounts it; ``remove`` (post-stop) deletes it.  Only verbs of
    z2jh's hub Role are used (create, delete), none it lacks (patch, update).
    """

    def __init__(
        self,
        mount_path: str = SESSION_MOUNT,
        home: str = POD_HOME,
        request_timeout: float = 30.0,
        attempts: int = 5,
        token_mount: str = TOKEN_MOUNT,
        user_token_secret: bool = True,
        overlap: bool = False,
    ):
        self.mount_path = mount_path
        # create the Secrets beside the pod, not before it (the module docstring)
        self.overlap = overlap
        self._pending: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.token_mount = token_mount
        # the per-user token Secret exists for pods other than the server (the user's
        # Dask workers): a site without a gateway saves its API calls at every start
        self.user_token_secret = user_token_secret
        # spawners whose Secret holds their API token (the env may then refer to it)
        self._holding_api_token: weakref.WeakSet = weakref.WeakSet()
        self.home = home
        self.request_timeout = request_timeout
        self.attempts = attempts

    def paths(self, spawner) -> KubeSessionPaths:
        return KubeSessionPaths(
            PurePosixPath(self.mount_path),
            state=PurePosixPath(self.home) / SESSION_DIR,
            live=PurePosixPath(self.token_mount),
        )

    @staticmethod
    def name(spawner) -> str:
        return session_secret_name(spawner.pod_name)

    @staticmethod
    def environment(env: dict[str, str]) -> dict[str, str]:
        """The session's variables as KubeSpawner takes them (it expands braces)."""
        return {k: kubespawner_literal(v) for k, v in env.items()}

    @staticmethod
    def labels(spawner) -> dict[str, str]:
        return {
            PART_OF_LABEL: PART_OF,
            "app.kubernetes.io/component": "session",
            POD_LABEL: spawner.pod_name,
            USER_LABEL: user_label(spawner.user.name),
        }

    def manifest(self, spawner, bundle: SessionBundle) -> dict:
        files = session_files(self.paths(spawner), bundle)
        if getattr(spawner, "api_token", None):
            files[API_TOKEN_KEY] = spawner.api_token.encode()
        return secret_manifest(
            self.name(spawner), files, self.labels(spawner), bundle.token_expires
        )

    async def _call(self, fn, **kwargs) -> None:
        """One API call whose answer is only its status: the body is not turned into
        model objects (kubernetes_asyncio's deserialising, dates above all, costs the
        hub's event loop more CPU than the rest of a start's hooks together)."""
        response = await asyncio.wait_for(
            fn(**kwargs, _preload_content=False), self.request_timeout
        )
        try:
            if not 200 <= response.status <= 299:
                raise ApiRefused(response.status, response.reason or "")
        finally:
            response.release()

    async def _delete(self, spawner, name: str) -> None:
        try:
            await self._call(
                spawner.api.delete_namespaced_secret, name=name, namespace=spawner.namespace
            )
        except Exception as exc:
            if _status(exc) != 404:
                raise

    def _mark_api_token(self, spawner) -> None:
        if getattr(spawner, "api_token", None):
            # decided before the Secret exists, from what it will hold: the pod's env
            # then never keeps the API token as a plain value
            self._holding_api_token.add(spawner)

    async def deliver(self, spawner, bundle: SessionBundle) -> None:
        """Create the server's Secret and, at the same time, the user's token Secret
        (when the site needs one)."""
        self._mark_api_token(spawner)
        await asyncio.gather(
            self.deliver_session(spawner, bundle), self.deliver_user_token(spawner, bundle)
        )

    def begin(self, spawner, work: asyncio.Future) -> None:
        """With ``overlap``: ``work`` (building the bundle, then :meth:`deliver`) runs
        while KubeSpawner makes the claim; :meth:`delivered` waits for it."""
        self._mark_api_token(spawner)
        self._pending[spawner] = work

    async def delivered(self, spawner) -> None:
        """Wait for the work :meth:`begin` was given (KubeSpawner's modify-pod hook); a
        failure is raised as :class:`DeliveryFailed` once, to the first waiter."""
        pending = self._pending.pop(spawner, None)
        if pending is not None:
            await pending

    async def deliver_session(self, spawner, bundle: SessionBundle) -> None:
        """Create the server's Secret; if one is left over (a hub that stopped before its
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
        labels.pop(POD_LABEL)
        return secret_manifest(
            user_token_secret_name(spawner.user.name),
            {TOKEN_FILE: bundle.token.strip().encode()},
            labels,
            bundle.token_expires,
        )

    async def deliver_user_token(self, spawner, bundle: SessionBundle) -> None:
        """The per-user token Secret (created, or replaced by delete + create); the token
        service keeps it current like the server's own.  Failing here costs only the
        user's Dask workers their token: logged, never a failed spawn."""
        if not (bundle.token and self.user_token_secret):
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
        """Delete the server's Secret and, with the user's last server, their token
        Secret, at the same time (after a creation still under way, so that none is
        created after its deletion)."""
        self._holding_api_token.discard(spawner)
        try:
            await self.delivered(spawner)
        except DeliveryFailed:
            pass  # reported by the start that began it
        except Exception as exc:  # a start that failed before its modify-pod hook ran
            log.error("lakehub: %s's session setup failed: %s", spawner.user.name, _describe(exc))
        others = [
            s
            for s in getattr(spawner.user, "spawners", {}).values()
            if s is not spawner and getattr(s, "active", False)
        ]
        last = not others  # the user's last server: their token leaves the cluster with it
        await asyncio.gather(
            self.remove_session(spawner),
            *([self.remove_user_token(spawner)] if last and self.user_token_secret else []),
        )

    async def remove_user_token(self, spawner) -> None:
        try:
            await self._delete(spawner, user_token_secret_name(spawner.user.name))
        except Exception as exc:
            log.warning(
                "lakehub: deleting %s's token Secret: %s", spawner.user.name, _describe(exc)
            )

    async def remove_session(self, spawner) -> None:
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
