"""Render the JupyterHub configuration of the embedded local stack from the site model.

``hub_config/jupyterhub_config.py`` is the file JupyterHub loads; it only calls
:func:`configure`.  Everything is plain traitlets config: the same hooks, the same
builders and the same single-user environment as a cluster deployment, with files in
the users' homes instead of Kubernetes Secrets.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from courses.local import git_system_config, revisions_file, sources
from courses.usage import sessions_file
from hub_config import course_access, native_auth
from hub_config.scopes import CACHE_ACCESS, DASK_ACCESS, server_token_scopes, user_scopes
from hub_services.cache.config import service_config
from hub_services.dask_gateway import config as dask_config
from lakehub.contract import (
    ADMIN_SERVICE,
    CACHE_SERVICE,
    DASK_SERVICE,
    ENV_DASK_CONFIG,
    ENV_HOOKS,
    ENV_MOCK_SERVERS,
    ENV_SERVER_CMD,
    ENV_SINGLEUSER_ENV,
    ENV_SITE,
    ISSUER_SERVICE,
    service_prefix,
)
from lakehub.files import write_private
from sitefile import Site
from sitefile.state import StackPaths, chp_binary, venv_bin
from spawner_hooks import dask as dask_hooks
from spawner_hooks import profiles
from spawner_hooks import usage as usage_hooks
from spawner_hooks.course_folders import LocalCourseFolders
from spawner_hooks.courses import CourseDelivery
from spawner_hooks.hooks import HomeDelivery, LakehubHooks
from spawner_hooks.rucio import AdminCredentials
from spawner_hooks.session import DaskGateway, ReplicaMode
from tokens.mint import Issuer, load_signing_key

# What `make up`, `make test` and the benchmarks may do through the admin service token.
ADMIN_SCOPES = [
    "admin:users",
    "admin:servers",
    "access:servers",
    "list:users",
    "read:users",
    "read:servers",
    "tokens",
    "read:hub",
    "admin:groups",  # make course-members, and what it reads
    "groups",
    "read:groups",
    "read:shares",
    CACHE_ACCESS,
]
DASK_PREFIX = service_prefix(DASK_SERVICE)


def issuer_url(site: Site) -> str:
    assert site.local is not None
    return f"http://127.0.0.1:{site.local.issuer_port}"


def cache_root(site: Site, paths: StackPaths) -> Path:
    return site.cache.path or paths.cache


def cache_url(site: Site) -> str:
    assert site.local is not None
    return f"http://127.0.0.1:{site.local.cache_port}"


def cache_service_config(site: Site, paths: StackPaths) -> dict:
    """What hub_services.cache.app reads at start (written 0600: it names secret files)."""
    assert site.local is not None
    return service_config(
        site,
        port=site.local.cache_port,
        root=str(cache_root(site, paths)),
        index=str(paths.cache_service / "index.json"),
        admin_username="root",
        password_file=str(paths.rucio_root_password),
    )


def dask_gateway(site: Site) -> DaskGateway | None:
    """Where sessions reach the gateway: its API through the hub's proxy (as on a
    cluster), scheduler traffic straight to the gateway's own proxy port."""
    if not site.dask.enabled:
        return None
    assert site.local is not None
    return DaskGateway(
        address=f"http://127.0.0.1:{site.local.hub_port}{DASK_PREFIX}",
        proxy_address=f"gateway://127.0.0.1:{site.local.dask_gateway_port}",
    )


def dask_gateway_api(site: Site) -> str:
    """The gateway's API as the hub reaches it (straight, not through the proxy)."""
    assert site.local is not None
    return f"http://127.0.0.1:{site.local.dask_gateway_port}{DASK_PREFIX}"


def dask_gateway_settings(site: Site, paths: StackPaths) -> dict:
    return dask_config.gateway_settings(
        site,
        port=site.local.dask_gateway_port,
        clusters_directory=str(paths.dask_clusters),
        home_template=str(paths.homes / "{username}"),
        bin_dir=str(venv_bin("analysis", "python").parent),
        isolated=os.geteuid() == 0,
    )


def dask_gateway_service(site: Site, paths: StackPaths) -> dict:
    """The managed service running dask-gateway-server (settings written 0600)."""
    settings_file = paths.dask_gateway / "settings.json"
    write_private(settings_file, json.dumps(dask_gateway_settings(site, paths), indent=2))
    # each cluster's working folder (0700, the user's) lies inside; users must traverse it
    paths.dask_clusters.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.dask_clusters, 0o711)  # noqa: S103  (traverse only; no listing)
    return {
        "name": DASK_SERVICE,
        "url": dask_gateway_api(site).removesuffix(DASK_PREFIX),
        "command": [
            str(venv_bin("dev", "dask-gateway-server")),
            "-f",
            str(Path(dask_config.__file__).with_name("gateway_config.py")),
        ],
        "environment": {ENV_DASK_CONFIG: str(settings_file)},
        "cwd": str(paths.dask_gateway),
        "display": False,
    }


def course_git_env(site: Site, paths: StackPaths) -> dict[str, str]:
    """Lets students' git (spawn-time pulls and nbgitpuller links) read the mirrors."""
    if not site.courses:
        return {}
    return {"GIT_CONFIG_SYSTEM": str(git_system_config(paths, site))}


def make_hooks(site: Site, paths: StackPaths) -> LakehubHooks:
    issuer = Issuer(
        url=issuer_url(site),
        key=load_signing_key(paths.issuer_key),
        lifetime=site.tokens.lifetime_seconds,
    )
    default = site.rucio.default
    admin = AdminCredentials(
        account=default.admin_account,
        username="root",
        password_file=paths.rucio_root_password,
    )
    delivery = HomeDelivery(site.notebooks.source, site.notebooks.target)
    root = str(cache_root(site, paths))
    courses = None
    if site.courses:  # pulled from the file:// mirrors that `make push-notebooks` fills
        courses = CourseDelivery(
            sources(site, paths),
            venv_bin("analysis", "gitpuller"),
            revisions_file=revisions_file(paths),
            env=course_git_env(site, paths),
        )
    return LakehubHooks(
        site,
        issuer,
        admin,
        delivery,
        cache=ReplicaMode(rse=site.cache.rse, mount_path=root, pfn_prefix=root),
        cache_url=cache_url(site),
        cache_quota_bytes=site.cache.quota_bytes,
        token_url=issuer_url(site),
        courses=courses,
        dask=dask_gateway(site),
    )


def as_hook(hooks: LakehubHooks, *before):
    """A plain function for ``pre_spawn_hook``: traitlets deep-copies config values, and
    a function is copied by reference while a bound method would drag its object along.
    ``before``: steps run first (the profile check, the course folders)."""

    async def lakehub_pre_spawn_hook(spawner) -> None:
        for step in before:
            await step(spawner)
        await hooks.pre_spawn(spawner)

    return lakehub_pre_spawn_hook


def single_user_path(env: str = "analysis") -> str:
    return os.pathsep.join(
        [str(venv_bin(env, "python").parent), "/usr/local/bin", "/usr/bin", "/bin"]
    )


def configure(
    c,
    site: Site,
    paths: StackPaths,
    *,
    with_hooks: bool = True,
    mock_servers: bool = False,
    single_user_env: str = "analysis",
    server_cmd: list[str] | None = None,
) -> None:
    """Fill the traitlets config ``c`` for the local stack.

    ``with_hooks=False`` gives the same hub without lakehub's spawn hooks and
    ``mock_servers=True`` replaces JupyterLab by JupyterHub's tiny test server
    (``jupyterhub.tests.mocksu``); the benchmarks use both to measure the hooks alone.
    ``single_user_env`` names the environment servers run from: ``analysis`` (what the
    image holds), or ``vanilla``, a plain JupyterLab the benchmarks compare with.
    ``server_cmd`` replaces the server's command altogether (the classroom benchmark's
    light servers).
    """
    if site.local is None:
        raise ValueError("the site file has no 'local' section; the local stack needs one")
    local = site.local
    paths.hub.mkdir(parents=True, exist_ok=True)

    c.JupyterHub.ip = "127.0.0.1"
    c.JupyterHub.port = local.hub_port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = local.hub_api_port
    c.JupyterHub.db_url = f"sqlite:///{paths.hub / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(paths.cookie_secret)
    c.JupyterHub.pid_file = str(paths.hub / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.template_vars = {"announcement_login": f"{site.name}"}

    c.ConfigurableHTTPProxy.command = [str(chp_binary())]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{local.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(paths.hub / "proxy.pid")

    # Authentication: NativeAuthenticator keeps bcrypt password hashes in the hub's
    # database; its admin approval is the allow rule, hence allow_all.  lakehub's subclass
    # checks the password in a thread, not on the hub's event loop.
    c.JupyterHub.authenticator_class = native_auth.CLASS_PATH
    c.Authenticator.admin_users = set(site.auth.admin_users)
    c.Authenticator.allow_all = True
    c.NativeAuthenticator.open_signup = False
    c.NativeAuthenticator.check_common_password = True
    c.NativeAuthenticator.minimum_password_length = site.auth.minimum_password_length
    c.NativeAuthenticator.allowed_failed_logins = 5
    c.NativeAuthenticator.seconds_before_next_try = 60

    c.JupyterHub.spawner_class = "spawner_hooks.local_spawner.LakehubLocalSpawner"
    c.LakehubLocalSpawner.home_dir_template = str(paths.homes / "{username}")
    c.LakehubLocalSpawner.system_users_file = str(paths.system_users)
    if server_cmd:
        c.Spawner.cmd = list(server_cmd)
    elif mock_servers:
        c.Spawner.cmd = [str(venv_bin(single_user_env, "python")), "-m", "jupyterhub.tests.mocksu"]
    else:
        c.Spawner.cmd = [str(venv_bin(single_user_env, "jupyterhub-singleuser"))]
    c.Spawner.default_url = "/lab"
    c.Spawner.environment = {
        "PATH": single_user_path(single_user_env),
        **course_git_env(site, paths),
    }
    c.Spawner.server_token_scopes = server_token_scopes(site)
    c.Spawner.http_timeout = 90
    c.Spawner.start_timeout = 180
    # profiles: the form lists the user's own; the check refuses any other (spawner_hooks.profiles)
    c.Spawner.options_form = profiles.options_form(site)
    c.Spawner.options_from_form = profiles.options_from_form
    check = profiles.ProfileCheck(site, local=True)
    folders = LocalCourseFolders(site, paths.shared_courses, paths.system_groups)
    if with_hooks:
        c.Spawner.pre_spawn_hook = as_hook(make_hooks(site, paths), check, folders)
    if site.dask.enabled:
        # a user's clusters end with their server (and by the gateway's idle timeout)
        stopper = dask_hooks.ClusterStopper(dask_gateway_api(site), DASK_ACCESS)
        c.Spawner.post_stop_hook = dask_hooks.as_hook(stopper)
    if with_hooks:  # servers' hours, CPU time and peak memory for `make course-report`
        usage_hooks.install(c.Spawner, usage_hooks.UsageCollector(sessions_file(paths)))

    admin_token = paths.admin_token.read_text().strip()
    config = paths.cache_service / "config.json"
    write_private(config, json.dumps(cache_service_config(site, paths), indent=2))
    c.JupyterHub.services = [
        {"name": ADMIN_SERVICE, "api_token": admin_token},
        {
            # signs tokens: public keys for Rucio, /api/token for running sessions
            "name": ISSUER_SERVICE,
            "url": issuer_url(site),
            "command": [
                sys.executable,
                "-m",
                "hub_services.issuer",
                "--issuer-url",
                issuer_url(site),
                "--key",
                str(paths.issuer_key),
                "--lifetime",
                str(site.tokens.lifetime_seconds),
            ],
            "display": False,
        },
        {
            "name": CACHE_SERVICE,
            "url": cache_url(site),
            "command": [sys.executable, "-m", "hub_services.cache.app", "--config", str(config)],
            "display": False,
        },
    ]
    if site.dask.enabled:
        c.JupyterHub.services.append(dask_gateway_service(site, paths))
    c.JupyterHub.load_roles = [
        {"name": ADMIN_SERVICE, "scopes": ADMIN_SCOPES, "services": [ADMIN_SERVICE]},
        {"name": "user", "scopes": user_scopes(site)},
        # the cache service tells an instructor the bytes of their own course's students
        {"name": CACHE_SERVICE, "scopes": ["read:groups"], "services": [CACHE_SERVICE]},
    ]
    # groups, instructors' roles, sharing, a course's sessions for its report
    course_access.configure(c, site, sessions_file(paths))


def load_from_environment(c) -> None:
    """Entry point for ``jupyterhub_config.py``: site and state come from the environment."""
    from sitefile import load_site

    site_file = os.environ.get(ENV_SITE)
    if not site_file:
        raise SystemExit("LAKEHUB_SITE is not set; start the hub with `make up`")
    paths = StackPaths.default()
    configure(
        c,
        load_site(Path(site_file)),
        paths,
        with_hooks=os.environ.get(ENV_HOOKS, "1") != "0",
        mock_servers=os.environ.get(ENV_MOCK_SERVERS, "0") == "1",
        single_user_env=os.environ.get(ENV_SINGLEUSER_ENV) or "analysis",
        server_cmd=json.loads(os.environ.get(ENV_SERVER_CMD) or "null"),
    )
