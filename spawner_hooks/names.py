"""Hub username -> Rucio account name.

Rucio accepts account names of at most 25 characters from ``a-z 0-9 - _``.  Hub
usernames can be anything (unicode, e-mail addresses, 200 characters).  The rule:

* A username that Rucio accepts as it is, and that contains no ``--``, is used as it is
  (after the site's prefix).  Most course usernames stay readable this way.
* Any other username becomes ``<readable part>--<hash>``: the readable part is the name
  folded to ASCII and lowercased with runs of other characters turned into ``-``, and the
  hash is 10 base32 characters (50 bits) of the SHA-256 of the exact username.

The two forms cannot meet: kept names never contain ``--`` and derived names always do.
Two derived names meet only if 50 bits of SHA-256 do; even then the hooks refuse to
hand one user an account bound to another user's identity (see ``spawner_hooks.rucio``),
so a collision can block a login but never share an account.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata

ACCOUNT_MAX = 25
_VALID = re.compile(r"^[a-z0-9_-]+$")
_INVALID_RUN = re.compile(r"[^a-z0-9]+")
HASH_CHARS = 10
SEPARATOR = "--"


def _hash(username: str) -> str:
    digest = hashlib.sha256(username.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:HASH_CHARS]


def _readable(username: str) -> str:
    folded = unicodedata.normalize("NFKD", username).encode("ascii", "ignore").decode("ascii")
    return _INVALID_RUN.sub("-", folded.lower()).strip("-")


def rucio_account(username: str, prefix: str = "") -> str:
    """The Rucio account for a hub user; pure and stable across releases.

    >>> rucio_account("alice")
    'alice'
    """
    if not username:
        raise ValueError("username must not be empty")
    if len(prefix) > 8 or (prefix and not _VALID.match(prefix)) or SEPARATOR in prefix:
        raise ValueError(f"account prefix {prefix!r} is not a valid Rucio account prefix")
    room = ACCOUNT_MAX - len(prefix)
    kept = prefix + username
    if _VALID.match(username) and SEPARATOR not in kept and len(username) <= room:
        return kept
    suffix = SEPARATOR + _hash(username)
    readable = _readable(username)[: room - len(suffix)].rstrip("-_") or "u"
    return prefix + readable + suffix


def is_derived(account: str) -> bool:
    """True for names produced by the hashing branch of :func:`rucio_account`."""
    return SEPARATOR in account
