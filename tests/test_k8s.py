"""lakehub's KubeSpawner hooks against a real kube-apiserver, under the hub's own RBAC.

What is real:

* etcd 3.6 and kube-apiserver 1.36, built from their Go modules by
  ``scripts/ensure-k8s-tools.sh`` (cached outside the repository; the first run builds
  them), serving on free ports of 127.0.0.1 with a self-signed certificate, a static
  admin token and ``--authorization-mode=RBAC``, with an audit log of every request the
  hub's identity makes.
* The hub's identity: a ServiceAccount bound to z2jh 4.4.0's hub Role (pods, PVCs,
  secrets, services: get/watch/list/create/delete; events: get/watch/list; no patch, no
  update), whose token comes from the TokenRequest API.  KubeSpawner talks to the
  apiserver with only that token.
* KubeSpawner 7.1.0 itself (not ``_mock``): its reflectors, PVC and pod creation, its
  wait for the pod to run and its stop, with lakehub's hooks installed by
  ``hub_config.kubernetes.configure`` exactly as the z2jh hub runs it.  Around the
  spawner this test does what JupyterHub's ``User.spawn``/``User.stop`` do
  (``run_pre_spawn_hook`` + ``start``; ``stop`` + ``run_post_stop_hook``) on a minimal
  user object (name, id, url, auth_state) instead of a running JupyterHub.
* The token exchange: a real HTTP request (httpx) to a token endpoint on 127.0.0.1.

What is simulated:

* kwok plays the kubelet of one fake node: it marks pods Running and gives them an IP;
  no container ever runs, no volume is mounted (so the Secret's files are checked in the
  Secret and the pod spec, not inside a container).  There is no scheduler (pods are
  bound to the node by ``nodeName``) and no controller-manager (the namespace's
  ``default`` ServiceAccount is created by the test; no PV is provisioned, PVCs stay
  Pending, which the apiserver and KubeSpawner accept).
* The identity provider is a small token endpoint checking the RFC 8693 request; the
  Rucio server is absent (account creation fails and is reported, as designed).

The cluster processes are stopped by PID and their folder removed at the end.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from hub_config.kubernetes import configure
from hub_config.scopes import TOKEN_ACCESS
from lakehub.contract import (
    CACHE_VOLUME,
    NOTICE_FILE,
    SESSION_MOUNT,
    SESSION_VOLUME,
    TOKEN_MOUNT,
    TOKEN_VOLUME,
    USER_LABEL,
    user_label,
)
from spawner_hooks import session
from spawner_hooks.hooks import SessionBundle
from spawner_hooks.kube_delivery import (
    KubeSecretDelivery,
    KubeSessionPaths,
    secret_manifest,
    session_files,
    user_token_secret_name,
)
from spawner_hooks.names import rucio_account
from testkit.apiserver import (
    HUB_ROLE_RULES,
    ControlPlane,
    FakeIdentityProvider,
    HubUser,
    free_port,
    hub_spawn,
    hub_stop,
    k8s_tools,
    kubeconfig_in_use,
    make_site,
    new_spawner,
    spawner_config,
    stop_reflectors,
)
from tokens.exchange import client_auth, exchange_form, refusal

REPO = Path(__file__).resolve().parent.parent
ROLE_VERBS = {v for rule in HUB_ROLE_RULES for v in rule["verbs"]}


def k8s(test):
    """Marker ``k8s``; whichever of these tests runs first may build the tools (minutes)."""
    return pytest.mark.k8s(pytest.mark.timeout(3600)(test))


# --- without a cluster --------------------------------------------------------------------


def test_hub_module_imports_without_localstack():
    """The hub image lacks localstack: hub_config.kubernetes must not pull it in."""
    code = (
        "import sys, hub_config.kubernetes; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'localstack' "
        "or m == 'hub_config.local']; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_configure_installs_the_three_hooks_from_the_site_file(tmp_path):
    """What the z2jh hub runs: ``configure(c)`` with the site file named by LAKEHUB_SITE."""
    from traitlets.config import Config

    from spawner_hooks.exchange_hooks import TokenExchangeHooks
    from tokens.mint import create_signing_key

    c = Config()
    oidc = configure(c, environ={"LAKEHUB_SITE": str(REPO / "examples/site.cluster.yaml")})
    assert isinstance(oidc.hooks, TokenExchangeHooks)  # an OIDC site exchanges tokens
    assert oidc.hooks.exchange.audience == "rucio"
    assert oidc.also_on_stop == ()  # no gateway named: nothing else at stop
    # the chart's hub environment of a site with Dask: the user's clusters stop with the
    # server (spawner_hooks.dask, tested against a real gateway in tests/test_dask.py)
    from hub_config import values as hv

    env = hv.values_for_file(REPO / "examples/site.cluster.yaml")["jupyterhub"]["hub"]["extraEnv"]
    hub_env = {k: v for k, v in env.items() if isinstance(v, str)}
    hub_env["LAKEHUB_SITE"] = str(REPO / "examples/site.cluster.yaml")
    with_dask = configure(Config(), environ=hub_env)
    (step,) = with_dask.also_on_stop
    assert step.__self__.api_url == env["LAKEHUB_DASK_API_URL"].rstrip("/")
    for hook in ("pre_spawn_hook", "modify_pod_hook", "post_stop_hook"):
        assert callable(c.KubeSpawner[hook]), hook
    # the usage collector wraps the spawn and stop hooks; the hub serves its record
    assert c.KubeSpawner.pre_spawn_hook.__name__ == "lakehub_usage_pre_spawn_hook"
    assert c.KubeSpawner.post_stop_hook.__name__ == "lakehub_usage_post_stop_hook"
    routes = {route: options for route, _, options in c.JupyterHub.extra_handlers}
    assert str(routes["/api/lakehub/usage"]["record"]) == (
        "/srv/jupyterhub/lakehub-usage/sessions.jsonl"
    )

    create_signing_key(tmp_path / "key.json")
    local = configure(
        Config(),
        environ={
            "LAKEHUB_SITE": str(REPO / "examples/site.local.yaml"),
            "LAKEHUB_ISSUER_URL": "http://issuer.invalid",
            "LAKEHUB_ISSUER_KEY_FILE": str(tmp_path / "key.json"),
        },
    )
    assert type(local.hooks).__name__ == "LakehubHooks"  # the local-mode hooks, as they are
    assert local.hooks.issuer.url == "http://issuer.invalid"


def test_secret_and_volume_are_valid_kubernetes_objects():
    import kubernetes_validate

    paths = KubeSessionPaths(root=KubeSecretDelivery().paths(None).root)
    bundle = SessionBundle(
        account="alice",
        token="header.payload.sig\n",
        token_expires=1_900_000_000,
        files={paths.rucio_cfg: "[client]\n", paths.status: "{}"},
        problems=["Rucio (lake): down"],
    )
    files = session_files(paths, bundle)
    assert files["rucio-token"] == b"header.payload.sig"  # no trailing newline
    assert NOTICE_FILE in files
    manifest = secret_manifest("jupyter-alice-lakehub", files, {"a": "b"}, 1_900_000_000)
    for version in ("1.30", "1.37"):
        kubernetes_validate.validate(manifest, version, strict=True)


def test_bundle_files_outside_the_mount_are_refused():
    paths = KubeSessionPaths(root=KubeSecretDelivery().paths(None).root)
    bundle = SessionBundle("a", None, None, files={paths.root / "sub" / "x": "y"})
    with pytest.raises(ValueError, match="not directly in the session mount"):
        session_files(paths, bundle)


def test_exchange_request_follows_rfc8693():
    form = exchange_form("SUBJECT", "rucio", "openid profile")
    assert form == {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": "SUBJECT",
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "audience": "rucio",
        "scope": "openid profile",
    }


def test_the_hubs_oauth_client_authenticates_as_rfc6749_says():
    """HTTP Basic of the form-encoded id and secret (RFC 6749 2.3.1): a secret holding
    ':' or '%' reaches the provider unchanged."""
    header = client_auth("lake hub", "s:e%c")
    assert header.startswith("Basic ")
    assert base64.b64decode(header[6:]) == b"lake+hub:s%3Ae%25c"


def test_a_refused_exchange_says_why_in_a_line_a_user_can_read():
    refused = refusal(400, {"error": "invalid_grant", "error_description": "token expired"})
    assert str(refused) == (
        "the identity provider refused the token exchange (HTTP 400: invalid_grant token expired)"
    )
    assert str(refusal(502, None)) == "the identity provider refused the token exchange (HTTP 502)"
    # an error object in a successful answer (RFC 6749 5.2 allows no such thing; some do)
    assert str(refusal(200, {"error": "access_denied"})) == (
        "the identity provider refused the token exchange (access_denied)"
    )
    assert len(str(refusal(400, {"error": "x" * 5000}))) < 400


# --- against the apiserver ----------------------------------------------------------------


@pytest.fixture(scope="module")
def plane():
    tools = k8s_tools(build=True)  # a no-op once built; the first build takes minutes
    control = ControlPlane(tools).start()
    try:
        yield control
    finally:
        pids = [p.popen.pid for p in control.processes]
        folder = control.folder
        control.stop()
        for pid in pids:  # every process we started is gone
            assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), pid
        assert not folder.exists()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.fixture(scope="module")
def hub_token(plane):
    """KubeSpawner in this process acts as the hub's ServiceAccount (TokenRequest)."""
    token = plane.service_account_token()
    with kubeconfig_in_use(plane.write_kubeconfig(plane.folder / "hub.kubeconfig", token)):
        yield token


@pytest.fixture
def idp():
    provider = FakeIdentityProvider().start()
    yield provider
    provider.stop()


TOKEN_SERVICE_URL = "http://lakehub-issuer:8009"


def hub_environ(source: str, tmp_path: Path) -> dict[str, str]:
    if source == "token_exchange":
        return {"LAKEHUB_TOKEN_SOURCE": "token_exchange", "LAKEHUB_TOKEN_URL": TOKEN_SERVICE_URL}
    from tokens.mint import create_signing_key

    key = tmp_path / "issuer-key.json"
    create_signing_key(key)
    password = tmp_path / "rucio-admin-password"
    password.write_text("not-used-rucio-is-down")
    return {
        "LAKEHUB_TOKEN_SOURCE": "hub_issuer",
        "LAKEHUB_ISSUER_URL": "http://lakehub-issuer.invalid",
        "LAKEHUB_ISSUER_KEY_FILE": str(key),
        "LAKEHUB_RUCIO_ADMIN_PASSWORD_FILE": str(password),
        "LAKEHUB_TOKEN_URL": TOKEN_SERVICE_URL,
    }


def get(plane: ControlPlane, path: str) -> tuple[int, dict]:
    with plane.admin() as api:
        r = api.get(f"/api/v1/namespaces/{plane.namespace}/{path}")
    return r.status_code, r.json()


def forbidden_or_unexpected(plane: ControlPlane, since: int) -> list[str]:
    """Requests of the hub identity (from audit event ``since`` on) that RBAC refused or
    whose verb the hub Role does not grant."""
    bad = []
    for e in plane.audit_events()[since:]:
        if e["user"]["username"] != plane.hub_user:
            continue
        code = e.get("responseStatus", {}).get("code", 0)
        ref = e.get("objectRef", {})
        where = f"{e['verb']} {ref.get('resource')}/{ref.get('name', '')} -> {code}"
        if code == 403 or e["verb"] not in ROLE_VERBS:
            bad.append(where)
    return bad


def secret_files(secret: dict) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def env_strings(pod: dict) -> list[str]:
    """Every string anywhere in the env of every container (values and references)."""
    found: list[str] = []

    def walk(obj) -> None:
        if isinstance(obj, str):
            found.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    spec = pod["spec"]
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        walk(container.get("env", []))
        walk(container.get("envFrom", []))
    return found


@k8s
@pytest.mark.security  # the leak scan of pod specs: no token in plain env
@pytest.mark.parametrize("source", ["token_exchange", "hub_issuer"])
async def test_spawn_puts_the_token_in_a_secret_and_stop_removes_it(
    plane, hub_token, idp, tmp_path, source
):
    from oauthenticator.generic import GenericOAuthenticator

    audit_start = len(plane.audit_events())
    config = spawner_config()
    site = make_site(free_port(), dask=True)  # Rucio is "down"; workers need the user Secret
    configure(config, site, environ=hub_environ(source, tmp_path))
    name = f"alice-{source.replace('_', '-')}"
    user = HubUser(name, {"access_token": idp.access_token_for(name)})
    authenticator = GenericOAuthenticator(
        token_url=idp.token_url, client_id=idp.client_id, client_secret=idp.client_secret
    )
    spawner = new_spawner(config, user, authenticator)
    secret_name = f"{spawner.pod_name}-lakehub"
    try:
        url = await hub_spawn(spawner)
        assert url.startswith("http://10.244.")  # kwok's pod IP

        # the user's Secret, PVC and pod exist; kwok reports the pod Running
        status, secret = get(plane, f"secrets/{secret_name}")
        assert status == 200, secret
        status, pvc = get(plane, f"persistentvolumeclaims/{spawner.pvc_name}")
        assert status == 200, pvc
        status, pod = get(plane, f"pods/{spawner.pod_name}")
        assert status == 200 and pod["status"]["phase"] == "Running", pod

        files = secret_files(secret)
        token = files["rucio-token"].decode()
        assert token and not token.endswith("\n")
        # the per-user copy for pods that are not the server (Dask workers): token only
        status, user_secret = get(plane, f"secrets/{user_token_secret_name(name)}")
        assert status == 200 and secret_files(user_secret) == {"rucio-token": token.encode()}
        assert user_secret["metadata"]["labels"][USER_LABEL] == user_label(name)
        # mutable, labelled for its user: the token service rewrites the token in it
        assert secret.get("immutable") is False
        assert secret["metadata"]["labels"][USER_LABEL] == user_label(name)
        if source == "token_exchange":
            assert idp.issued[token] == name
            subject = await user.get_auth_state()
            (request,) = [
                r for r in idp.requests if r["form"]["subject_token"] == subject["access_token"]
            ]
            assert request["form"]["audience"] == "rucio"
            assert request["form"]["grant_type"].endswith(":token-exchange")
        else:
            from joserfc import jwt

            from tokens.mint import load_signing_key

            key = load_signing_key(tmp_path / "issuer-key.json")
            claims = jwt.decode(token, key).claims
            assert claims["sub"] == name and claims["aud"] == ["rucio"]
            # Rucio is down: the spawn went on and the session is told why
            assert b"did not answer" in files[NOTICE_FILE]

        # the files are the ones the shared builders make, for the pod's paths
        paths = KubeSecretDelivery().paths(spawner)
        default = site.rucio.default
        assert files["rucio.cfg"].decode() == session.rucio_cfg(
            default, rucio_account(name, default.account_mapping.prefix)
        )
        assert json.loads(files["jupyter_server_config.json"]) == (
            session.rucio_jupyterlab_config(site.rucio.instances, default.name, str(paths.token))
        )

        spec = pod["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        (container,) = [c for c in spec["containers"] if c["name"] == "notebook"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        # the shared cache: read-only volume and mount (spawner_hooks.kube_volumes builders)
        assert volumes[CACHE_VOLUME]["persistentVolumeClaim"]["readOnly"] is True
        assert mounts[CACHE_VOLUME]["readOnly"] is True
        # the session Secret: mounted read-only where the environment points
        assert volumes[SESSION_VOLUME]["secret"]["secretName"] == secret_name
        assert volumes[SESSION_VOLUME]["secret"]["defaultMode"] == 0o440  # fsGroup 100
        assert mounts[SESSION_VOLUME] == {
            "name": SESSION_VOLUME,
            "mountPath": SESSION_MOUNT,
            "readOnly": True,
        }
        # the live token: a writable in-memory folder, seeded from the Secret's copy
        assert volumes[TOKEN_VOLUME]["emptyDir"]["medium"] == "Memory"
        assert mounts[TOKEN_VOLUME] == {"name": TOKEN_VOLUME, "mountPath": TOKEN_MOUNT}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["BEARER_TOKEN_FILE"] == f"{TOKEN_MOUNT}/rucio-token"
        assert env["LAKEHUB_TOKEN_SEED"] == f"{SESSION_MOUNT}/rucio-token"
        assert env["LAKEHUB_TOKEN_URL"] == TOKEN_SERVICE_URL
        assert env["RUCIO_CONFIG"] == f"{SESSION_MOUNT}/rucio.cfg"
        assert env["JUPYTER_CONFIG_PATH"] == SESSION_MOUNT
        # the server's hub API token comes from the Secret too (not KubeSpawner's plain
        # env value); no token in plain env: not as a value, not inside any value
        assert files["jupyterhub-api-token"].decode() == spawner.api_token
        for name in ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"):
            (entry,) = [e for e in container["env"] if e["name"] == name]
            assert entry == {
                "name": name,
                "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "jupyterhub-api-token"}},
            }
        strings = env_strings(pod)
        assert strings and not [s for s in strings if token in s or spawner.api_token in s]
        assert token not in json.dumps(pod) and spawner.api_token not in json.dumps(pod)
    finally:
        await hub_stop(spawner)
        await stop_reflectors()

    # stopping the server removed the Secrets and the pod; the home volume stays
    assert get(plane, f"secrets/{secret_name}")[0] == 404
    assert get(plane, f"secrets/{user_token_secret_name(name)}")[0] == 404
    assert get(plane, f"pods/{spawner.pod_name}")[0] == 404
    assert get(plane, f"persistentvolumeclaims/{spawner.pvc_name}")[0] == 200
    # everything happened within the hub Role: nothing refused, no patch or update
    assert forbidden_or_unexpected(plane, audit_start) == []
    verbs = {
        e["verb"]
        for e in plane.audit_events()[audit_start:]
        if e["user"]["username"] == plane.hub_user
        and e.get("objectRef", {}).get("resource") == "secrets"
    }
    assert verbs == {"create", "delete"}


@k8s
async def test_a_left_over_secret_is_replaced_by_delete_and_create(plane, hub_token, idp):
    """A hub that died before post_stop leaves a Secret; the next start replaces it
    (a new object with the new token), with only the verbs the Role grants."""
    from oauthenticator.generic import GenericOAuthenticator

    config = spawner_config()
    configure(config, make_site(free_port()), environ={"LAKEHUB_TOKEN_SOURCE": "token_exchange"})
    user = HubUser("bob", {"access_token": idp.access_token_for("bob")})
    authenticator = GenericOAuthenticator(
        token_url=idp.token_url, client_id=idp.client_id, client_secret=idp.client_secret
    )
    spawner = new_spawner(config, user, authenticator)
    name = f"{spawner.pod_name}-lakehub"
    stale = plane.apply(
        f"/api/v1/namespaces/{plane.namespace}/secrets",
        {"metadata": {"name": name}, "data": {"rucio-token": base64.b64encode(b"old").decode()}},
    )
    audit_start = len(plane.audit_events())
    try:
        await hub_spawn(spawner)
        status, secret = get(plane, f"secrets/{name}")
        assert status == 200
        assert secret["metadata"]["uid"] != stale["metadata"]["uid"]
        assert secret_files(secret)["rucio-token"] != b"old"
        # a site without a Dask Gateway: no per-user token Secret, one create less
        assert get(plane, f"secrets/{user_token_secret_name('bob')}")[0] == 404
    finally:
        await hub_stop(spawner)
        await stop_reflectors()
    assert get(plane, f"secrets/{name}")[0] == 404
    assert forbidden_or_unexpected(plane, audit_start) == []


@k8s
async def test_the_hub_role_has_no_patch_so_a_patching_hook_fails(plane, hub_token, idp):
    """What would happen to a hook that updated the Secret in place: RBAC refuses it
    under the hub's identity, the audit check of the spawn test reports it, and the
    Secret keeps its old content."""
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    from spawner_hooks.hooks import DeliveryFailed

    # the apiserver's own answer for this identity
    with plane.admin() as admin:
        reviews = {}
        for verb in ("create", "delete", "patch", "update"):
            r = admin.post(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                json={
                    "spec": {
                        "user": plane.hub_user,
                        "groups": ["system:serviceaccounts", "system:authenticated"],
                        "resourceAttributes": {
                            "namespace": plane.namespace,
                            "verb": verb,
                            "resource": "secrets",
                        },
                    }
                },
            )
            reviews[verb] = r.json()["status"]["allowed"]
    assert reviews == {"create": True, "delete": True, "patch": False, "update": False}

    class PatchingDelivery(KubeSecretDelivery):
        """The tempting alternative to delete + create: patch the existing Secret."""

        async def deliver(self, spawner, bundle):
            manifest = self.manifest(spawner, bundle)
            try:
                await spawner.api.patch_namespaced_secret(
                    name=manifest["metadata"]["name"],
                    namespace=spawner.namespace,
                    body={"data": manifest["data"]},
                )
            except ApiException as exc:
                raise DeliveryFailed(f"patch refused: HTTP {exc.status}") from None

    user = HubUser("carol")
    spawner = new_spawner(spawner_config(), user)
    name = f"{spawner.pod_name}-lakehub"
    plane.apply(
        f"/api/v1/namespaces/{plane.namespace}/secrets",
        {"metadata": {"name": name}, "data": {"rucio-token": base64.b64encode(b"old").decode()}},
    )
    audit_start = len(plane.audit_events())
    bundle = SessionBundle("carol", "new-token", None, files={})
    try:
        with pytest.raises(DeliveryFailed, match="HTTP 403"):
            await PatchingDelivery().deliver(spawner, bundle)
        # the Role's verbs through the same client: delete + create work
        await KubeSecretDelivery().deliver(spawner, bundle)
        assert isinstance(spawner.api, client.CoreV1Api)
    finally:
        await KubeSecretDelivery().remove(spawner)
        await stop_reflectors()
    refused = forbidden_or_unexpected(plane, audit_start)
    assert refused == [f"patch secrets/{name} -> 403"]


@k8s
async def test_a_refused_exchange_still_starts_the_server(plane, hub_token, idp):
    """The identity provider says no: the server starts, the Secret carries the notice
    and the status, and no token."""
    from oauthenticator.generic import GenericOAuthenticator

    config = spawner_config()
    configure(config, make_site(free_port()), environ={"LAKEHUB_TOKEN_SOURCE": "token_exchange"})
    user = HubUser("dave", {"access_token": idp.access_token_for("dave")})
    wrong = GenericOAuthenticator(
        token_url=idp.token_url, client_id=idp.client_id, client_secret="wrong"
    )
    spawner = new_spawner(config, user, wrong)
    name = f"{spawner.pod_name}-lakehub"
    try:
        await hub_spawn(spawner)
        status, secret = get(plane, f"secrets/{name}")
        assert status == 200
        files = secret_files(secret)
        assert "rucio-token" not in files
        assert b"HTTP 401" in files[NOTICE_FILE]
        assert json.loads(files["status.json"])["problems"]
    finally:
        await hub_stop(spawner)
        await stop_reflectors()
    assert get(plane, f"secrets/{name}")[0] == 404


@k8s
async def test_the_token_and_secret_are_made_while_the_claim_is_and_before_the_pod(
    plane, hub_token, idp
):
    """Neither the token exchange nor the session Secret is a step of its own before
    KubeSpawner's work: both run while the home's claim is created, and the pod is
    created only once the Secret exists (the pod refers to it).  The exchange and the
    Secret's creation are each held until the claim's creation has been asked for; a
    start that waited for either before the claim would never reach it and fail here."""
    from oauthenticator.generic import GenericOAuthenticator

    config = spawner_config()
    session = configure(
        config, make_site(free_port()), environ={"LAKEHUB_TOKEN_SOURCE": "token_exchange"}
    )
    user = HubUser("erin", {"access_token": idp.access_token_for("erin")})
    authenticator = GenericOAuthenticator(
        token_url=idp.token_url, client_id=idp.client_id, client_secret=idp.client_secret
    )
    spawner = new_spawner(config, user, authenticator)
    api = spawner.api
    order: list[str] = []
    claim_asked = asyncio.Event()
    create_secret, create_claim, create_pod = (
        api.create_namespaced_secret,
        api.create_namespaced_persistent_volume_claim,
        api.create_namespaced_pod,
    )

    exchange = session.hooks.exchange
    real_exchange = exchange.exchange

    async def held_exchange(spawner):
        await claim_asked.wait()
        got = await real_exchange(spawner)
        order.append("token exchanged")
        return got

    async def held_secret(*args, **kwargs):
        await claim_asked.wait()
        done = await create_secret(*args, **kwargs)
        order.append("secret made")
        return done

    async def claim(*args, **kwargs):
        order.append("claim asked")
        claim_asked.set()
        return await create_claim(*args, **kwargs)

    async def pod(*args, **kwargs):
        order.append("pod asked")
        return await create_pod(*args, **kwargs)

    api.create_namespaced_secret = held_secret
    api.create_namespaced_persistent_volume_claim = claim
    api.create_namespaced_pod = pod
    exchange.exchange = held_exchange
    try:
        await asyncio.wait_for(hub_spawn(spawner), 60)
        assert order == ["claim asked", "token exchanged", "secret made", "pod asked"]
        status, secret = get(plane, f"secrets/{spawner.pod_name}-lakehub")
        assert status == 200 and secret_files(secret)["rucio-token"]
    finally:
        del api.create_namespaced_secret
        del api.create_namespaced_persistent_volume_claim
        del api.create_namespaced_pod
        del exchange.exchange
        await hub_stop(spawner)
        await stop_reflectors()


def listening(pid: int) -> list[str]:
    """host:port of every TCP socket process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            host, port = fields[1].split(":")
            raw = bytes.fromhex(host)
            if size == 4:
                address = ".".join(str(b) for b in raw[::-1])
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                address = str(ipaddress.IPv6Address(words))
            found.append(f"{address}:{int(port, 16)}")
    return found


@k8s
def test_everything_listens_on_loopback_only(plane):
    for process in plane.processes:
        addresses = listening(process.popen.pid)
        assert addresses, process.name
        for address in addresses:
            assert address.startswith("127.0.0.1:"), (process.name, address)


# --- the token service renews running sessions' tokens and Secrets ------------------------


def token_service_rules(helm: list[str], chart: Path, namespace: str) -> list[dict]:
    """The token service's Role exactly as the chart renders it (the example site's
    values, as `make deploy` renders them)."""
    from hub_config import values as hv

    values = hv.dump(hv.values_for_file(REPO / "examples/site.cluster.yaml"))
    done = subprocess.run(
        [
            *helm,
            "template",
            "lakehub",
            str(chart),
            "--namespace",
            namespace,
            "-f",
            "-",
            "--show-only",
            "templates/token-service.yaml",
            "-f",
            "-",
        ],
        input=values,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (role,) = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "Role"]
    return role["rules"]


def pod_folder(plane: ControlPlane, secret: str, where: Path) -> Path:
    """What the kubelet would mount: the Secret's keys as files (no container runs)."""
    status, body = get(plane, f"secrets/{secret}")
    assert status == 200, body
    where.mkdir(parents=True)
    for key, content in secret_files(body).items():
        (where / key).write_bytes(content)
    return where


@k8s
@pytest.mark.tokens
@pytest.mark.parametrize("source", ["token_exchange", "hub_issuer"])
async def test_the_token_service_renews_a_running_users_token_and_secret_and_only_theirs(
    plane, hub_token, idp, tmp_path, helm, chart, source
):
    """A running session renews its token through the token service, which also
    rewrites the token in that user's session Secret, and in no other user's.

    Real: the kube-apiserver with RBAC, the token service's Role as the chart renders
    it, KubeSpawner with lakehub's hooks creating alice's and bob's Secrets, a JupyterHub
    with configurable-http-proxy running ``hub_services.issuer`` as a managed service
    (exactly the arguments the chart gives it, plus a kubeconfig for its ServiceAccount),
    and the session's own refresher code (``lakehub.token_refresher``).
    Simulated: no container runs, so "the pod" is a folder holding the Secret's keys as
    the kubelet would mount them, and the refresher runs in this process; logins are
    JupyterHub's DummyAuthenticator, with the auth state an OAuth login would leave set
    through the admin API; the identity provider is the fake token endpoint.
    """
    from oauthenticator.generic import GenericOAuthenticator

    from hub_config import values as hv
    from lakehub.token_refresher import TokenRefresher, adopt_seed, token_times
    from sitefile import load_site
    from testkit.minihub import MiniHub, token_service

    namespace = plane.namespace
    issuer_user = plane.grant("lakehub-issuer", token_service_rules(helm, chart, namespace))
    kubeconfig = plane.write_kubeconfig(
        tmp_path / "issuer.kubeconfig", plane.service_account_token("lakehub-issuer")
    )
    environ = hub_environ(source, tmp_path)
    config = spawner_config()
    site = make_site(free_port(), dask=True)  # Rucio is "down"; workers need the user Secret
    configure(config, site, environ=environ)
    authenticator = GenericOAuthenticator(
        token_url=idp.token_url, client_id=idp.client_id, client_secret=idp.client_secret
    )
    names = [f"{who}-renew-{source.replace('_', '-')}" for who in ("alice", "bob", "carol")]
    states = {n: {"access_token": idp.access_token_for(n)} for n in names[:2]}
    spawners = [new_spawner(config, HubUser(n, states.get(n)), authenticator) for n in names[:2]]

    port = free_port()
    hub = MiniHub()
    issuer_url = f"{hub.url}/services/lakehub-issuer"
    if source == "token_exchange":
        args = [
            "--source=token_exchange",
            f"--exchange-token-url={idp.token_url}",
            f"--exchange-client-id={idp.client_id}",
        ]
        environment = {"OAUTH_CLIENT_SECRET": idp.client_secret}
        roles = hv.token_service_role(load_site(REPO / "examples/site.cluster.yaml"))
    else:
        args = [
            "--source=hub_issuer",
            f"--issuer-url={issuer_url}",
            f"--key={environ['LAKEHUB_ISSUER_KEY_FILE']}",
            f"--lifetime={site.tokens.lifetime_seconds}",  # as the chart passes it
        ]
        environment = {}
        roles = hv.token_service_role(load_site(REPO / "examples/site.cluster-native.yaml"))
    args += [f"--renew-secrets-in={namespace}", f"--kubeconfig={kubeconfig}"]
    hub.services = [token_service(port, args, environment)]
    hub.roles = [
        {"name": "user", "scopes": ["self", TOKEN_ACCESS]},
        *({"name": name, **role} for name, role in roles.items()),
    ]
    audit_start = len(plane.audit_events())
    try:
        for spawner in spawners:
            await hub_spawn(spawner)
        hub.start()
        tokens = {n: hub.add_user(n, states.get(n), [TOKEN_ACCESS]) for n in names}
        secrets = {s.user.name: f"{s.pod_name}-lakehub" for s in spawners}
        alice, bob, carol = names
        before = {n: get(plane, f"secrets/{secrets[n]}")[1] for n in (alice, bob)}
        spawn_token = secret_files(before[alice])["rucio-token"].decode()

        http = httpx.AsyncClient(timeout=30)
        # the pod starts: its token file is seeded from the Secret's copy
        pod = tmp_path / "alice-pod"
        seed = pod_folder(plane, secrets[alice], pod / "secret") / "rucio-token"
        live = pod / "live" / "rucio-token"
        live.parent.mkdir()
        assert adopt_seed(live, seed) and live.read_text() == spawn_token
        refresher = TokenRefresher(
            live, issuer_url, tokens[alice], pod, logging.getLogger("test"), seed_file=seed
        )

        # renewal: a new token in the pod's file, and the same one in alice's Secret
        expires = await refresher.renew()
        renewed = live.read_text()
        assert renewed != spawn_token and token_times(renewed)[1] == expires
        assert (live.stat().st_mode & 0o777) == 0o600
        if source == "token_exchange":
            assert idp.issued[renewed] == alice
        else:
            from joserfc import jwt
            from joserfc.jwk import KeySet

            # native sites: Rucio finds the public keys through the hub's proxy
            discovery = (await http.get(f"{issuer_url}/.well-known/openid-configuration")).json()
            assert discovery["issuer"] == issuer_url
            keys = KeySet.import_key_set((await http.get(discovery["jwks_uri"])).json())
            claims = jwt.decode(renewed, keys).claims
            assert (claims["sub"], claims["iss"]) == (alice, issuer_url)
        after = get(plane, f"secrets/{secrets[alice]}")[1]
        files_before, files_after = secret_files(before[alice]), secret_files(after)
        assert files_after["rucio-token"].decode() == renewed
        assert {k: v for k, v in files_after.items() if k != "rucio-token"} == {
            k: v for k, v in files_before.items() if k != "rucio-token"
        }
        assert after["metadata"]["annotations"]["lakehub/token-expires"] == str(expires)
        assert after["metadata"]["uid"] == before[alice]["metadata"]["uid"]  # replaced in place
        # and alice's per-user copy (for her Dask workers) holds the same new token
        status, copy = get(plane, f"secrets/{user_token_secret_name(alice)}")
        assert status == 200 and secret_files(copy)["rucio-token"].decode() == renewed

        # comfortably valid: the same token again, no identity-provider call, no write
        exchanges = len(idp.requests)
        assert await refresher.renew() == expires and live.read_text() == renewed
        assert len(idp.requests) == exchanges
        again = get(plane, f"secrets/{secrets[alice]}")[1]
        assert again["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]

        # bob's Secret was never touched; alice cannot ask for bob's token
        bob_copy = get(plane, f"secrets/{user_token_secret_name(bob)}")[1]
        assert secret_files(bob_copy)["rucio-token"] == secret_files(before[bob])["rucio-token"]
        bob_now = get(plane, f"secrets/{secrets[bob]}")[1]
        assert bob_now["metadata"]["resourceVersion"] == before[bob]["metadata"]["resourceVersion"]
        service = f"{issuer_url}/api/token"
        r = await http.get(
            service, params={"user": bob}, headers={"Authorization": f"token {tokens[alice]}"}
        )
        assert r.status_code == 403 and renewed not in r.text
        assert (await http.get(service)).status_code == 403
        # bob's own renewal reaches bob's Secret only
        r = await http.get(service, headers={"Authorization": f"token {tokens[bob]}"})
        assert r.status_code == 200
        bob_token = r.json()["token"]
        assert (
            secret_files(get(plane, f"secrets/{secrets[bob]}")[1])["rucio-token"].decode()
            == bob_token
        )
        assert (
            secret_files(get(plane, f"secrets/{secrets[alice]}")[1])["rucio-token"].decode()
            == renewed
        )

        if source == "token_exchange":
            # a user whose login left no access token is told what to do
            r = await http.get(service, headers={"Authorization": f"token {tokens[carol]}"})
            assert r.status_code == 401 and "log out" in r.json()["error"]
        await http.aclose()
    finally:
        hub.stop()
        for spawner in spawners:
            await hub_stop(spawner)
        await stop_reflectors()

    # the token service stayed inside its Role: list, get and update only, nothing refused
    calls = [
        (e["verb"], e.get("responseStatus", {}).get("code", 0))
        for e in plane.audit_events()[audit_start:]
        if e["user"]["username"] == issuer_user
    ]
    assert {verb for verb, _ in calls} <= {"get", "list", "update"}
    assert ("update", 200) in calls and all(code < 400 for _, code in calls)
