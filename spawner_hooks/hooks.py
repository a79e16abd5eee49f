"""The spawn hook: Rucio account, token, client configuration and notebooks for a user.

``LakehubHooks.pre_spawn(spawner)`` is set as ``Spawner.pre_spawn_hook``.  It computes
everything with the pure builders in :mod:`spawner_hooks.session`, does network work
asynchronously (:mod:`spawner_hooks.rucio`), and hands the results to a *delivery*:
:class:`HomeDelivery` writes files into the user's home (local mode).  A failure to
reach Rucio never fails the spawn: the user finds ``LAKEHUB-NOTICE.md`` in their home
and the hub log has one line saying why.  Course material from the site's ``courses:``
is pulled meanwhile by :class:`spawner_hooks.courses.CourseDelivery` (nbgitpuller); a
spawner with ``alongside_start`` (the local one) lets the pull go on while the server
process starts.  Every spawn ends with one hub log line naming how long each step took.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar

from lakehub import contract
from sitefile import Site
from sitefile.model import Course
from spawner_hooks import notebooks, session
from spawner_hooks.as_owner import ChildFailed, run_as_owner
from spawner_hooks.courses import CourseDelivery, course_entries, hub_groups, user_courses
from spawner_hooks.names import rucio_account
from spawner_hooks.rucio import (
    AccountCollision,
    AdminCredentials,
    RucioAccounts,
    RucioUnavailable,
)
from tokens.mint import Issuer, oidc_identity

# a child of JupyterHub's own logger, so these lines land in the hub's log
log = logging.getLogger("JupyterHub").getChild("lakehub")
T = TypeVar("T")


@dataclass
class SessionBundle:
    """Everything a session receives; built once per spawn, delivered by a Delivery."""

    account: str | None
    token: str | None
    token_expires: int | None
    files: dict[PurePosixPath, str] = field(default_factory=dict)  # path -> text (not secret)
    env: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def assemble_bundle(
    site: Site,
    paths: session.SessionPaths,
    account: str,
    token: str | None,
    expires: int | None,
    problems: list[str],
    *,
    cache: session.ReplicaMode | None = None,
    cache_url: str | None = None,
    token_url: str | None = None,
    dask: session.DaskGateway | None = None,
    courses: Sequence[Course] = (),
) -> SessionBundle:
    """The bundle from its parts, with the shared builders (pure); both token sources
    (the hub's issuer, the OIDC exchange) end here.  ``courses``: the user's courses
    (:meth:`SessionHooks.courses_of`)."""
    return SessionBundle(
        account=account,
        token=token,
        token_expires=expires,
        files=session.session_files(
            paths, site.rucio.instances, site.rucio.default, account, problems, expires, cache
        ),
        env=bundle_env(paths, cache_url=cache_url, token_url=token_url, dask=dask, courses=courses),
        problems=problems,
    )


def bundle_env(
    paths: session.SessionPaths,
    *,
    cache_url: str | None = None,
    token_url: str | None = None,
    dask: session.DaskGateway | None = None,
    courses: Sequence[Course] = (),
) -> dict[str, str]:
    """The session's environment (pure).  It names paths and URLs only, never the token,
    so it can be decided before the token exists (:meth:`SessionHooks.pre_spawn` with an
    overlapping delivery)."""
    return session.session_env(
        paths, cache_url=cache_url, token_url=token_url, courses=course_entries(courses), dask=dask
    )


class SpawnSteps:
    """How long each of a spawn's steps took (seconds), for the hub log's one line per
    spawn: ``lakehub: <user> ready in T s (token 0.01 s, rucio local 0.21 s, ...)``, T
    being the time until the server process could start.  Steps run at the same time,
    so they may add up to more than T; a step still running then (the course pull,
    which the local spawner lets run beside the server's start) is named at the end."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.began = clock()
        self.seconds: dict[str, float] = {}
        self.pending: set[str] = set()  # steps begun and not yet done
        self.done_at: float | None = None
        self.beside_start: list[str] = []

    def hook_done(self) -> None:
        """The hook returns: the server process may start now."""
        self.done_at = self.clock()
        self.beside_start = sorted(self.pending)

    def critical(self) -> float:
        return (self.done_at if self.done_at is not None else self.clock()) - self.began

    def __str__(self) -> str:
        text = ", ".join(f"{name} {s:.2f} s" for name, s in self.seconds.items())
        if self.beside_start:
            text += f"; beside the server start: {', '.join(self.beside_start)}"
        return text


# the spawn being timed; tasks started from the hook (gather, ensure_future) inherit it
_steps: contextvars.ContextVar[SpawnSteps | None] = contextvars.ContextVar(
    "lakehub_spawn_steps", default=None
)


async def timed(name: str, step: Awaitable[T]) -> T:
    """Await ``step``; its duration goes to the spawn's :class:`SpawnSteps`, if any."""
    began = time.monotonic()
    steps = _steps.get()
    if steps is not None:
        steps.pending.add(name)
    try:
        return await step
    finally:
        if steps is not None:
            steps.pending.discard(name)
            steps.seconds[name] = time.monotonic() - began


class DeliveryFailed(RuntimeError):
    pass


class HomeDelivery:
    """Local mode: files under ``<home>/.lakehub`` (0700); the token file is 0600.

    The writing is done by :mod:`spawner_hooks.home_writer` in a child process running
    as the home's owner, so the hub never follows a link a student planted.
    """

    def __init__(self, notebooks_source: Path | None, notebooks_target: str):
        self.notebooks_source = notebooks_source
        self.notebooks_target = notebooks_target

    @staticmethod
    def paths(spawner) -> session.SessionPaths:
        return session.SessionPaths(PurePosixPath(spawner.home_dir) / contract.SESSION_DIR)

    @staticmethod
    def environment(env: dict[str, str]) -> dict[str, str]:
        """The session's variables as the spawner takes them: as they are."""
        return env

    def request(self, spawner, bundle: SessionBundle) -> dict:
        """The JSON document handed to the writer (pure)."""
        paths = self.paths(spawner)
        return {
            "home": spawner.home_dir,
            "session_dir": str(paths.root),
            "files": {str(p): text for p, text in bundle.files.items()},
            "private": {str(paths.token): bundle.token} if bundle.token else {},
            "notice_name": contract.NOTICE_FILE,
            "notice": session.notice_markdown(bundle.problems) if bundle.problems else "",
            "notebooks": {
                "source": str(self.notebooks_source),
                "target": self.notebooks_target,
                "manifest": str(paths.root / notebooks.MANIFEST),
            }
            if self.notebooks_source
            else None,
        }

    async def deliver(self, spawner, bundle: SessionBundle) -> None:
        try:
            reply = await run_as_owner(
                spawner, "spawner_hooks.home_writer", self.request(spawner, bundle)
            )
        except ChildFailed as exc:
            raise DeliveryFailed(
                f"writing the session files for {spawner.user.name} failed: {exc}"
            ) from None
        report = reply.get("notebooks", {})
        copied = sum(a in ("copy", "update") for a in report.values())
        if copied:
            log.info("lakehub: gave %s %d notebook file(s)", spawner.user.name, copied)


class SessionHooks:
    """What both token paths share: the site's session settings, the bundle built from
    them, and the spawn step itself (build and deliver, the course pull beside them).

    :class:`LakehubHooks` (the hub's own issuer, local mode and native-login clusters)
    and :class:`spawner_hooks.exchange_hooks.TokenExchangeHooks` (OIDC sites) differ only
    in how ``build`` obtains the account and the token.
    """

    def __init__(
        self,
        site: Site,
        delivery,
        *,
        cache: session.ReplicaMode | None = None,
        cache_url: str | None = None,
        token_url: str | None = None,
        courses: CourseDelivery | None = None,
        dask: session.DaskGateway | None = None,
    ):
        self.site = site
        self.delivery = delivery
        self.cache = cache
        self.cache_url = cache_url
        self.token_url = token_url  # where sessions renew (lakehub.token_refresher)
        self.courses = courses
        self.dask = dask

    def bundle(
        self,
        paths: session.SessionPaths,
        account: str,
        token: str | None,
        expires: int | None,
        problems: list[str],
        courses: Sequence[Course] = (),
    ) -> SessionBundle:
        return assemble_bundle(
            self.site,
            paths,
            account,
            token,
            expires,
            problems,
            cache=self.cache,
            cache_url=self.cache_url,
            token_url=self.token_url,
            dask=self.dask,
            courses=courses,
        )

    def courses_of(self, spawner) -> list[Course]:
        """The spawning user's courses, by their hub groups, as this hub pulls them."""
        available = self.courses.courses if self.courses else self.site.courses
        return user_courses(self.site.courses, available, hub_groups(spawner.user))

    async def build(self, spawner, paths: session.SessionPaths) -> SessionBundle:
        raise NotImplementedError

    async def build_and_deliver(self, spawner, paths: session.SessionPaths) -> None:
        """The account, the token and their delivery, for an overlapping delivery: run
        while the spawner makes the server's volume; the delivery's waiter gets a
        :class:`DeliveryFailed`."""
        bundle = await self.build(spawner, paths)
        await timed("session files", self.delivery.deliver(spawner, bundle))

    async def pre_spawn(self, spawner) -> None:
        steps = SpawnSteps()
        token = _steps.set(steps)
        work = None
        try:
            pull = None
            if self.courses is not None:
                # Course material (nbgitpuller) needs the home only, not Rucio or the
                # token: it starts at once.  It never raises: a failed pull leaves a note
                # in the home instead.
                pull = asyncio.ensure_future(
                    timed("courses", self.courses.pull(spawner, self.courses_of(spawner)))
                )
            paths = self.delivery.paths(spawner)
            if getattr(self.delivery, "overlap", False):
                # The environment needs no token: it is set now, and the token exchange
                # (or Rucio and the hub's issuer) with the Secret go on while KubeSpawner
                # makes the claim; its modify-pod hook waits for them (kube_session).
                set_environment(spawner, self.delivery, self.environment(spawner, paths))
                work = asyncio.ensure_future(self.build_and_deliver(spawner, paths))
                self.delivery.begin(spawner, work)
            else:
                bundle = await self.build(spawner, paths)
                await timed("session files", deliver(self.delivery, spawner, bundle))
        finally:
            _steps.reset(token)
        steps.hook_done()
        alongside = getattr(spawner, "alongside_start", None)
        if pull is not None and alongside is not None and work is None:
            # the local spawner runs the rest of the pull while the server process
            # starts, and reports the server only once the pull is done as well
            alongside(_log_when_done(spawner.user.name, steps, pull))
            return
        if pull is not None:
            await pull
        if work is None:
            log_ready(spawner.user.name, steps)
        else:  # the line names the steps once they are done
            work.add_done_callback(lambda _: log_ready(spawner.user.name, steps))

    def environment(self, spawner, paths: session.SessionPaths) -> dict[str, str]:
        """The environment the spawner's bundle will carry, without building it."""
        return bundle_env(
            paths,
            cache_url=self.cache_url,
            token_url=self.token_url,
            dask=self.dask,
            courses=self.courses_of(spawner),
        )


async def _log_when_done(username: str, steps: SpawnSteps, pull: Awaitable) -> None:
    await pull
    log_ready(username, steps)


def log_ready(username: str, steps: SpawnSteps) -> None:
    """The spawn's one line in the hub log (no secrets: names and seconds only)."""
    log.info("lakehub: %s ready in %.2f s (%s)", username, steps.critical(), steps)


class LakehubHooks(SessionHooks):
    """The hub's own issuer: Rucio accounts made with the admin login, tokens signed
    with the hub's key."""

    def __init__(
        self,
        site: Site,
        issuer: Issuer,
        admin: AdminCredentials,
        delivery: HomeDelivery,
        clock=time.time,
        cache: session.ReplicaMode | None = None,
        cache_url: str | None = None,
        cache_quota_bytes: int = 0,
        token_url: str | None = None,
        courses: CourseDelivery | None = None,
        dask: session.DaskGateway | None = None,
    ):
        super().__init__(
            site,
            delivery,
            cache=cache,
            cache_url=cache_url,
            token_url=token_url,
            courses=courses,
            dask=dask,
        )
        self.issuer = issuer
        self.clock = clock
        default = site.rucio.default.name
        self.accounts = {
            i.name: RucioAccounts(
                i,
                admin,
                issuer.url,
                (cache.rse, cache_quota_bytes) if cache and i.name == default else None,
            )
            for i in site.rucio.instances
        }

    async def build(self, spawner, paths: session.SessionPaths) -> SessionBundle:
        username = spawner.user.name
        default = self.site.rucio.default
        account = rucio_account(username, default.account_mapping.prefix)
        identity = oidc_identity(username, self.issuer.url)
        problems: list[str] = []

        async def provision(name: str) -> None:
            inst = self.accounts[name].instance
            acct = rucio_account(username, inst.account_mapping.prefix)
            try:
                created = await self.accounts[name].ensure_account(
                    acct, identity, f"{acct}@users.lakehub.invalid"
                )
                if created:
                    log.info("lakehub: created Rucio account %s on %s for %s", acct, name, username)
            except (RucioUnavailable, AccountCollision) as exc:
                log.warning("lakehub: Rucio setup for %s on %s failed: %s", username, name, exc)
                problems.append(f"Rucio ({inst.title}): {exc}")

        now = int(self.clock())
        # the token does not depend on the account: signed while Rucio answers
        token, *_ = await asyncio.gather(
            timed("token", asyncio.to_thread(self.issuer.mint, username, now)),
            *(timed(f"rucio {n}", provision(n)) for n in self.accounts),
        )
        expires = now + self.issuer.lifetime
        return self.bundle(paths, account, token, expires, problems, self.courses_of(spawner))


async def deliver(delivery, spawner, bundle: SessionBundle) -> None:
    """Hand a bundle to a delivery and its environment to the spawner.

    A failed delivery never fails the spawn: the server starts without Rucio access and
    the hub log says why.
    """
    try:
        await delivery.deliver(spawner, bundle)
    except DeliveryFailed as exc:
        log.error("lakehub: %s", exc)
    set_environment(spawner, delivery, bundle.env)


def set_environment(spawner, delivery, env: dict[str, str]) -> None:
    """Add the session's variables to the spawner's, as the delivery hands them on; a
    fresh dict: never mutate a dict that may be shared through config."""
    spawner.environment = {**spawner.environment, **delivery.environment(env)}
