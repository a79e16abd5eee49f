"""Bytes the cache served, per hub user and per dataset: what the usage report shows.

A fetch that ends with every file in place counts the bytes of those files for the user
who asked, under the DID they asked for (a dataset, or a single file), whether the files
were transferred now or were already there.  Kept in ``usage.json`` beside the index,
rewritten atomically after each counted fetch:

    {"users": {NAME: {DID: {"bytes": N, "fetches": N, "last": EPOCH}}}}

Nothing sensitive: names, DIDs, counts.  Services' fetches (the warm-up, Rucio rules)
are not counted: they serve no one in particular.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from lakehub.files import atomic_write

log = logging.getLogger("lakehub.cache")


class UsageLedger:
    def __init__(self, path: Path):
        self.path = path
        self.users: dict[str, dict[str, dict]] = {}

    def load(self) -> None:
        """Read the ledger (blocking); a missing or unreadable one starts empty."""
        try:
            data = json.loads(self.path.read_text())
            users = data["users"] if isinstance(data, dict) else {}
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError) as exc:
            log.warning("usage ledger %s unreadable (%s); counting from zero", self.path, exc)
            return
        self.users = {u: dict(d) for u, d in users.items() if isinstance(d, dict)}

    def count(self, user: str, did: str, nbytes: int, now: float | None = None) -> None:
        entry = self.users.setdefault(user, {}).setdefault(
            did, {"bytes": 0, "fetches": 0, "last": 0}
        )
        entry["bytes"] += int(nbytes)
        entry["fetches"] += 1
        entry["last"] = int(now if now is not None else time.time())

    def save(self) -> None:
        """Write the ledger atomically (blocking)."""
        atomic_write(self.path, json.dumps({"users": self.users}, sort_keys=True), 0o600)

    def view(self, users: set[str] | None = None) -> dict:
        """The ledger's users (all, or those in ``users``)."""
        return {
            u: {d: dict(e) for d, e in per.items()}
            for u, per in sorted(self.users.items())
            if users is None or u in users
        }
