"""OIDC sites: refresh a user's login *before* its access token runs out.

The Rucio token a session gets comes from exchanging the user's access token at the
identity provider, and an exchanged token lives no longer than the access token it came
from (Keycloak gives it the same ``exp``).  oauthenticator refreshes a login only once
the access token stops working, and the hub asks it at most every ``auth_refresh_age``
seconds, so without help the exchange would keep handing out tokens with seconds to live
in the last minutes of every access token.

:func:`refresh_ahead` is oauthenticator's ``refresh_user_hook`` (17.3+): when the access
token in the auth state has less than twice ``auth_refresh_age`` left, it uses the refresh
token right away (oauthenticator's own request builders and token endpoint call) and
returns the new auth state; otherwise it leaves the decision to oauthenticator.  A
refresh token the provider refuses (revoked, expired session) means "log in again".
"""

from __future__ import annotations

import base64
import json
import time


def access_token_expiry(auth_state: dict | None) -> int | None:
    """``exp`` of the access token in an auth state, read without verifying (pure)."""
    token = (auth_state or {}).get("access_token")
    try:
        payload = token.split(".")[1]
        return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])
    except (AttributeError, IndexError, KeyError, ValueError, TypeError):
        return None


def due(auth_state: dict | None, refresh_age: float, now: float) -> bool:
    """Whether to refresh now: a refresh token is there and the access token has less
    than two refresh periods to live (pure)."""
    expires = access_token_expiry(auth_state)
    if expires is None or not (auth_state or {}).get("refresh_token"):
        return False
    return expires - now < 2 * max(refresh_age, 1)


async def refresh_ahead(authenticator, user, auth_state):
    if not due(auth_state, authenticator.auth_refresh_age, time.time()):
        return None  # oauthenticator's own check (the access token still works)
    refresh_token = auth_state["refresh_token"]
    params = authenticator.build_refresh_token_request_params(refresh_token)
    try:
        token_info = await authenticator.get_token_info(None, params)
        if not token_info.get("refresh_token"):  # providers may keep the old one valid
            token_info["refresh_token"] = refresh_token
        user_info = await authenticator.token_to_user(token_info)
    except Exception as exc:  # the provider refused: the login cannot be refreshed
        authenticator.log.info("lakehub: refreshing the login of %s failed: %s", user.name, exc)
        return False
    state = authenticator.build_auth_state_dict(token_info, user_info)
    if hasattr(state, "__await__"):
        state = await state
    return {"name": user.name, "auth_state": state}
