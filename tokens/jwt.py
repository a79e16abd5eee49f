"""Reading a JWT's claims without checking its signature (pyjwt).

The hub and the token service only need the times of tokens that somebody else signed
(the identity provider, or the hub's own issuer) and that Rucio verifies; these helpers
never decide whether a token is trustworthy.
"""

from __future__ import annotations

import jwt


def unverified_claims(token: str) -> dict | None:
    """The payload of ``token``, or None when it is not a JWT."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def expiry(token: str) -> int | None:
    """``exp`` of a JWT, or None."""
    claims = unverified_claims(token) or {}
    try:
        return int(claims["exp"])
    except (KeyError, TypeError, ValueError):
        return None
