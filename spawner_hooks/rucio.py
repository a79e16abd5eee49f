"""Make sure a hub user has a Rucio account bound to their hub identity.

The hub talks to Rucio with an admin identity (``root`` by default) through
rucio-clients.  rucio-clients is blocking, so every call runs in a small thread pool
owned by :class:`RucioAccounts` (one Client per thread); the hub's event loop only awaits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sitefile import RucioInstance

log = logging.getLogger(__name__)


class RucioUnavailable(RuntimeError):
    """Rucio could not be reached or refused the hub's admin identity."""


class AccountCollision(RuntimeError):
    """The derived account already belongs to a different hub identity."""


@dataclass(frozen=True)
class AdminCredentials:
    account: str
    username: str
    password_file: Path

    def password(self) -> str:
        return self.password_file.read_text().strip()


class RucioAccounts:
    """Account provisioning against one Rucio instance.

    A constant number of requests per student, whatever the class size: one lookup of
    the account; for a new one its creation, its identity and its quota on the cache RSE
    (four requests); for an existing one the list of its identities (two), and nothing
    at all on the next spawns of this hub process, which remembers the accounts it has
    seen bound.  An account left without its identity (a spawn that stopped half-way)
    gets its identity and quota on the next try.
    """

    WORKERS = 4  # concurrent requests to Rucio; each worker thread has its own Client

    def __init__(
        self,
        instance: RucioInstance,
        admin: AdminCredentials,
        issuer_url: str,
        rule_quota: tuple[str, int] | None = None,
    ):
        self.instance = instance
        self.admin = admin
        self.issuer_url = issuer_url
        self.rule_quota = rule_quota  # (RSE, bytes) users may ask rules for: the cache RSE
        # rucio-clients' Client is not meant to be shared across threads: one per worker
        self._pool = ThreadPoolExecutor(
            max_workers=self.WORKERS, thread_name_prefix=f"rucio-{instance.name}"
        )
        self._local = threading.local()
        self._bound: set[tuple[str, str]] = set()  # (account, identity) known to be set up

    def _connect(self):
        from rucio.client import Client  # imported lazily: heavy, and only the hub needs it

        if getattr(self._local, "client", None) is None:
            self._local.client = Client(
                rucio_host=self.instance.rucio_host,
                auth_host=self.instance.auth_url,
                account=self.admin.account,
                auth_type="userpass",
                creds={"username": self.admin.username, "password": self.admin.password()},
                vo=self.instance.vo,
                ca_cert=str(self.instance.ca_cert) if self.instance.ca_cert else None,
                timeout=10,
            )
        return self._local.client

    def _ensure(self, account: str, identity: str, email: str) -> bool:
        from rucio.common import exception as rex

        if (account, identity) in self._bound:
            return False
        try:
            client = self._connect()
            try:
                client.get_account(account)
                created = False
            except rex.AccountNotFound:
                try:
                    client.add_account(account, "USER", email)
                    created = True
                except rex.Duplicate:  # made meanwhile by a concurrent spawn
                    created = False
            ours = (
                []
                if created  # a new account has no identities yet
                else [
                    i["identity"]
                    for i in client.list_identities(account)
                    if i["type"] == "OIDC" and i["identity"].endswith(f"ISS={self.issuer_url}")
                ]
            )
            if ours and identity not in ours:
                raise AccountCollision(
                    f"Rucio account {account!r} is bound to another hub user; "
                    "ask an admin to resolve the clash"
                )
            if identity not in ours:
                try:
                    client.add_identity(account, identity, "OIDC", email, default=True)
                except rex.Duplicate:
                    pass
                # with the identity, so an account a failed spawn left without it gets both
                if self.rule_quota:
                    rse, quota = self.rule_quota
                    client.set_local_account_limit(account, rse, quota)
            self._bound.add((account, identity))
            return created
        except (AccountCollision, RucioUnavailable):
            raise
        except rex.CannotAuthenticate as exc:
            self._local.client = None
            raise RucioUnavailable(
                f"the hub's Rucio admin login was refused ({type(exc).__name__})"
            ) from None
        except Exception as exc:  # connection errors come in many types from requests/urllib3
            self._local.client = None
            raise RucioUnavailable(
                f"Rucio at {self.instance.rucio_host} did not answer ({type(exc).__name__})"
            ) from None

    async def ensure_account(self, account: str, identity: str, email: str) -> bool:
        """Create ``account`` if needed and bind ``identity`` to it; True if created."""
        if (account, identity) in self._bound:
            return False
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._ensure, account, identity, email)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
