"""Keep the session's Rucio token file fresh while the server runs.

Started by lakehub's Jupyter server extension.  Before the token in
``$BEARER_TOKEN_FILE`` reaches its last third of life, the refresher asks the hub's token
service (``$LAKEHUB_TOKEN_URL``, with the session's own ``$JUPYTERHUB_API_TOKEN``) for a
new one and replaces the file atomically (mode 0600, no trailing newline, as
rucio-clients and rucio-jupyterlab expect).  The ``rucio`` CLI reads the file at every
call and rucio-jupyterlab re-reads it when its cached token expires, so both keep
working without a restart.

When renewal fails (hub or Rucio unreachable, login expired) it logs once, writes
``~/LAKEHUB-TOKEN-NOTICE.md`` with the latest reason, retries with growing pauses and
removes the note on success.

On Kubernetes the token file is in a writable in-memory folder of the pod and the hub's
copy is in the read-only session Secret (``$LAKEHUB_TOKEN_SEED``): the refresher starts
from the seed and adopts it again whenever it holds a later token than the file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import jwt

from lakehub.contract import (
    BEARER_TOKEN_FILE,
    ENV_TOKEN_SEED,
    ENV_TOKEN_URL,
    TOKEN_API_PATH,
    TOKEN_NOTICE_FILE,
)
from lakehub.files import write_private

NOTICE = TOKEN_NOTICE_FILE
MIN_PAUSE = 5.0
MAX_PAUSE = 300.0


def token_times(token: str) -> tuple[int, int]:
    """(issued-at, expiry) of a JWT, read without verifying it (Rucio verifies it; the
    session only needs to know when to renew) (pure)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        return int(claims.get("iat") or claims.get("nbf") or 0), int(claims["exp"])
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        return 0, 0


def seconds_until_renewal(issued: int, expires: int, now: float) -> float:
    """When to renew: once two thirds of the lifetime have passed (pure)."""
    lifetime = max(expires - issued, 0)
    return max(expires - lifetime / 3 - now, 0.0)


def next_pause(previous: float, shortest: float = MIN_PAUSE) -> float:
    """Back-off after a failed renewal: 5 s, 10 s, 20 s ... at most 5 minutes (pure)."""
    return min(max(previous * 2, shortest), MAX_PAUSE)


def write_token(path: Path, token: str) -> None:
    """The token file: 0600, atomic, no trailing newline (rucio-jupyterlab sends the
    file's content as a header as it is)."""
    write_private(path, token.strip())


def newer_seed(seed: str | None, current: str | None) -> bool:
    """Whether the seed token expires later than the current one (pure)."""
    if not seed or not seed.strip():
        return False
    return token_times(seed)[1] > token_times(current or "")[1]


def _read(path: Path | None) -> str | None:
    try:
        return path.read_text() if path else None
    except OSError:
        return None


def adopt_seed(token_file: Path, seed_file: Path) -> bool:
    """Copy the seed over the token file when it holds a later token (blocking file
    I/O of a few hundred bytes: call it at server start or from a thread)."""
    seed = _read(seed_file)
    if not newer_seed(seed, _read(token_file)):
        return False
    write_token(token_file, seed)
    return True


def adopt_seed_from_environment() -> bool:
    """At server start: install ``$LAKEHUB_TOKEN_SEED`` as ``$BEARER_TOKEN_FILE`` if it
    is newer, whether or not a token service is configured."""
    token_file, seed = os.environ.get(BEARER_TOKEN_FILE), os.environ.get(ENV_TOKEN_SEED)
    if not (token_file and seed):
        return False
    return adopt_seed(Path(token_file), Path(seed))


class TokenRefresher:
    def __init__(
        self,
        token_file: Path,
        service_url: str,
        api_token: str,
        home: Path,
        log: logging.Logger,
        clock=time.time,
        shortest_pause: float = MIN_PAUSE,
        seed_file: Path | None = None,
    ):
        self.token_file = token_file
        self.seed_file = seed_file
        self.service_url = service_url.rstrip("/")
        self.api_token = api_token
        self.home = home
        self.log = log
        self.clock = clock
        self.failing = False
        self.shortest_pause = shortest_pause

    def current_times(self) -> tuple[int, int]:
        return token_times(_read(self.token_file) or "")

    def adopt_seed(self) -> bool:
        return self.seed_file is not None and adopt_seed(self.token_file, self.seed_file)

    async def renew(self) -> int:
        """Fetch and install a new token; returns its expiry."""
        import httpx

        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.get(
                f"{self.service_url}{TOKEN_API_PATH}",
                headers={"Authorization": f"token {self.api_token}"},
            )
        if r.status_code != 200:
            try:  # the service says why (e.g. "your login has expired: log out ... again")
                reason = str(r.json().get("error") or "")[:200]
            except ValueError:
                reason = ""
            detail = f" ({reason})" if reason else ""
            raise RuntimeError(f"the token service answered HTTP {r.status_code}{detail}")
        body = r.json()
        await asyncio.to_thread(write_token, self.token_file, body["token"])
        return int(body["expires"])

    def _notice(self, problem: str | None) -> None:
        path = self.home / NOTICE
        if problem is None:
            path.unlink(missing_ok=True)
            return
        path.write_text(
            "# Your Rucio token could not be renewed\n\n"
            f"{problem}\n\nlakehub keeps trying; Rucio commands may fail until it succeeds.\n"
        )

    async def run(self) -> None:
        pause = 0.0
        noted: str | None = None  # the reason the note in the home gives
        while True:
            if self.seed_file is not None:
                try:
                    await asyncio.to_thread(self.adopt_seed)
                except OSError as exc:
                    self.log.warning("lakehub: could not copy the session token: %s", exc)
            issued, expires = self.current_times()
            wait = (
                seconds_until_renewal(issued, expires, self.clock()) if not self.failing else pause
            )
            await asyncio.sleep(wait)
            try:
                await self.renew()
            except Exception as exc:  # network errors come in many types; all mean "retry"
                pause = next_pause(pause, self.shortest_pause)
                if not self.failing:
                    self.log.warning("lakehub: could not renew the Rucio token (%s); retrying", exc)
                said = f"The last attempt said: {exc}."
                if said != noted:  # logged once; the note follows the latest reason
                    await asyncio.to_thread(self._notice, said)
                    noted = said
                self.failing = True
                continue
            if self.failing:
                self.log.info("lakehub: the Rucio token is renewed again")
                await asyncio.to_thread(self._notice, None)
            self.failing, pause, noted = False, 0.0, None


def from_environment(log: logging.Logger) -> TokenRefresher | None:
    token_file = os.environ.get(BEARER_TOKEN_FILE)
    url = os.environ.get(ENV_TOKEN_URL)
    api_token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not (token_file and url and api_token):
        return None
    seed = os.environ.get(ENV_TOKEN_SEED)
    return TokenRefresher(
        Path(token_file), url, api_token, Path.home(), log, seed_file=Path(seed) if seed else None
    )
