"""Short-lived Rucio access tokens (JWTs) signed by a key the hub holds.

The Rucio server trusts the hub's issuer (``[oidc] idpsecrets``) and maps the identity
``SUB=<hub username>, ISS=<issuer URL>`` to the user's Rucio account.  The claims follow
what Rucio checks for a JWT it has not seen before: ``iss``, ``sub``, ``exp``, an ``aud``
containing ``rucio`` and a ``scope`` containing ``openid profile``.

Everything here is pure except :func:`load_signing_key` / :func:`create_signing_key`,
which read or write the key file.  Minting takes about a millisecond.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from lakehub.files import write_private

AUDIENCE = "rucio"
SCOPE = "openid profile"


def oidc_identity(subject: str, issuer: str) -> str:
    """The Rucio identity string an OIDC token with this ``sub`` and ``iss`` maps to."""
    return f"SUB={subject}, ISS={issuer}"


def access_token_claims(
    *, issuer: str, subject: str, now: int, lifetime: int, token_id: str | None = None
) -> dict:
    if lifetime <= 0:
        raise ValueError("lifetime must be positive")
    return {
        "iss": issuer,
        "sub": subject,
        "aud": [AUDIENCE],
        "scope": SCOPE,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": token_id or secrets.token_hex(16),
    }


def sign(claims: dict, key: RSAKey) -> str:
    header = {"alg": "RS256", "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key)


@dataclass(frozen=True)
class Issuer:
    """A configured issuer: its URL (the ``iss`` claim) and private signing key."""

    url: str
    key: RSAKey
    lifetime: int = 3600

    def mint(self, subject: str, now: int) -> str:
        claims = access_token_claims(
            issuer=self.url, subject=subject, now=now, lifetime=self.lifetime
        )
        return sign(claims, self.key)

    def jwks(self) -> dict:
        return public_jwks(self.key)


def public_jwks(key: RSAKey) -> dict:
    return KeySet([key]).as_dict(private=False)


def discovery_document(issuer_url: str) -> dict:
    """The OpenID Provider metadata Rucio reads to find the issuer's keys.

    The issuer only signs tokens for the hub, so the interactive endpoints answer with a
    short explanation instead of a login flow.
    """
    return {
        "issuer": issuer_url,
        "jwks_uri": f"{issuer_url}/jwks",
        "authorization_endpoint": f"{issuer_url}/authorize",
        "token_endpoint": f"{issuer_url}/token",
        "userinfo_endpoint": f"{issuer_url}/userinfo",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "scope"],
    }


def create_signing_key(path: Path) -> RSAKey:
    """Create the issuer's key file (mode 0600) unless it exists; return the key."""
    if path.exists():
        return load_signing_key(path)
    key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig"})
    write_private(path, json.dumps(key.as_dict(private=True)))
    return key


def load_signing_key(path: Path) -> RSAKey:
    return RSAKey.import_key(json.loads(path.read_text()))
