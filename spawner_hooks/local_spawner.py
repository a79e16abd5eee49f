"""The spawner of the embedded local stack.

When the hub runs as root, each hub user gets a system account of their own
(``lh-<rucio account>``, no login shell) and their server runs under it, so one
student cannot read another's home or token.  When the hub runs as an ordinary user
(a developer's laptop) every server runs as that user: fine for one person trying the
product, and the hub log says so once.  On Kubernetes, pods give the isolation instead.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import Awaitable
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Unicode

from spawner_hooks.names import rucio_account

SYSTEM_USER_PREFIX = "lh-"
_warned_shared_uid = False


def system_username(hub_username: str) -> str:
    """A valid Linux user name (<= 32 chars, starts with a letter) for a hub user."""
    return SYSTEM_USER_PREFIX + rucio_account(hub_username)


class LakehubLocalSpawner(LocalProcessSpawner):
    _home_lock: asyncio.Lock | None = None
    _alongside: tuple[asyncio.Future, ...] = ()  # steps that finish during start()
    home_dir_template = Unicode(
        config=True, help="Home folder of a user; {username} is the hub username."
    )
    system_users_file = Unicode(
        "", config=True, help="Where created system accounts are recorded (for `make clean`)."
    )

    @property
    def isolated(self) -> bool:
        return os.geteuid() == 0

    @property
    def home_dir(self) -> str:
        return self.home_dir_template.format(username=self.user.name)

    @property
    def system_user(self) -> str | None:
        return system_username(self.user.name) if self.isolated else None

    async def prepare_home(self) -> tuple[int, int] | None:
        """Create the system account and the home folder; return its (uid, gid) or None.

        The spawn's steps that work in the home (session files, course pull) run at the
        same time and each asks for the home: one at a time, so the account is made once.
        """
        if self._home_lock is None:
            self._home_lock = asyncio.Lock()
        async with self._home_lock:
            return await self._prepare_home()

    async def _prepare_home(self) -> tuple[int, int] | None:
        home = Path(self.home_dir)
        if not self.isolated:
            global _warned_shared_uid
            if not _warned_shared_uid:
                self.log.warning(
                    "lakehub: the hub is not root, so every user's server runs as uid %d "
                    "(no isolation between users); run as root for per-user accounts",
                    os.geteuid(),
                )
                _warned_shared_uid = True
            await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True)
            return None
        name = self.system_user
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            if self.system_users_file:  # recorded first, so `make clean` finds it whatever happens
                await asyncio.to_thread(_append_line, Path(self.system_users_file), name)
            proc = await asyncio.create_subprocess_exec(
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                str(home),
                "--shell",
                "/usr/sbin/nologin",
                name,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await proc.communicate()
            if proc.returncode not in (0, 9):  # 9: created meanwhile by a concurrent spawn
                raise RuntimeError(f"useradd {name} failed: {err.decode().strip()}") from None
            entry = pwd.getpwnam(name)
        await asyncio.to_thread(_make_private_home, home, entry.pw_uid, entry.pw_gid)
        return entry.pw_uid, entry.pw_gid

    async def start(self):
        # the spawn hook prepares the home too (to write into it); a hub without lakehub's
        # hooks still needs the account and the home before the server can run
        owner = await self.prepare_home()
        # the account's groups as /etc/group has them now (a course's shared folder)
        self._groups = (
            await asyncio.to_thread(os.getgrouplist, self.system_user, owner[1]) if owner else []
        )
        ip, port = await super().start()
        pending, self._alongside = self._alongside, ()
        await asyncio.gather(self.until_listening(ip, port), *pending)
        return ip, port

    def alongside_start(self, step: Awaitable) -> None:
        """Let a spawn step (the course pull) finish while the server process starts;
        ``start`` returns, and the hub shows the server, only once it is done too."""
        self._alongside = (*self._alongside, asyncio.ensure_future(step))

    async def until_listening(self, ip: str, port: int, every_s: float = 0.05) -> None:
        """Return once the server accepts connections (or its process has ended).

        The hub's own wait for the server's answer backs off with random pauses of up to
        5 s, which adds about two seconds to each login on top of JupyterLab's start; a
        local connection attempt every 50 ms costs nothing, and once it succeeds the
        hub's first request finds the server up.  Never longer than ``http_timeout``,
        after which the hub's own wait decides as before.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.http_timeout
        while loop.time() < deadline and await self.poll() is None:
            try:
                _, writer = await asyncio.open_connection(ip or "127.0.0.1", port)
            except OSError:
                await asyncio.sleep(every_s)
                continue
            writer.close()
            await writer.wait_closed()
            return

    def make_preexec_fn(self, name):
        home = self.home_dir
        if self.isolated:
            entry = pwd.getpwnam(self.system_user)
            uid, gid = entry.pw_uid, entry.pw_gid
            groups = getattr(self, "_groups", None) or [gid]

            def preexec():
                os.setgid(gid)
                os.setgroups(groups)
                os.setuid(uid)
                os.chdir(home)

        else:

            def preexec():
                os.chdir(home)

        return preexec

    def user_env(self, env):
        env["USER"] = self.system_user or pwd.getpwuid(os.geteuid()).pw_name
        env["HOME"] = self.home_dir
        env["SHELL"] = "/bin/bash"
        return env


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(line + "\n")


def _make_private_home(home: Path, uid: int, gid: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, uid, gid)
    os.chmod(home, 0o700)
