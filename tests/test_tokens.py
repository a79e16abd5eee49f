"""Token lifecycle against the real hub, the real Rucio server and a real session.

Tokens here live 60 s (the shortest the site model allows), so a session crosses
several lifetimes in a few minutes.  Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx
import pytest

from hub_config.local import issuer_url
from hub_config.scopes import TOKEN_ACCESS
from spawner_hooks.names import rucio_account
from testkit.harness import (
    KernelSession,
    temporary_stack,
    unique_user,
)

pytestmark = pytest.mark.tokens

LIFETIME = 60


@pytest.fixture(scope="module")
def short_tokens():
    with temporary_stack(tokens={"lifetime_seconds": LIFETIME}) as stack:
        yield stack


PROBE = r"""
import subprocess
from rucio.common.exception import CannotAuthenticate, RucioException
try:
    account = client.whoami()["account"]          # one Client kept for the whole session
    cli = subprocess.run(["rucio", "whoami"], capture_output=True, text=True)
    fresh = Client().whoami()["account"]            # and a new one each time
    good = cli.returncode == 0 and account == fresh == ACCOUNT
    print("OK" if good else "WRONG " + cli.stderr[-300:])
except CannotAuthenticate as exc:
    print("AUTHFAIL " + str(exc)[:300])
except Exception as exc:
    print("DOWN " + type(exc).__name__)
"""


async def _session_over_several_lifetimes(stack, user: str) -> dict:
    token_file = stack.home(user) / ".lakehub" / "rucio-token"
    seen, results = set(), []
    restarted = False
    async with KernelSession(stack.url, user, stack.admin_token) as kernel:
        await kernel.execute(
            f"from rucio.client import Client\nclient = Client()\nACCOUNT = {rucio_account(user)!r}"
        )
        started = time.monotonic()
        while time.monotonic() - started < 2.5 * LIFETIME:
            seen.add(hashlib.sha256(token_file.read_bytes()).hexdigest())
            out = (await kernel.execute(PROBE)).strip()
            results.append((round(time.monotonic() - started), out))
            if not restarted and time.monotonic() - started > 1.5 * LIFETIME:
                stack.stop_rucio()  # killed mid-session ...
                down = (await kernel.execute(PROBE)).strip()
                results.append(("rucio stopped", down))
                stack.start_rucio()  # ... and back
                restarted = True
    return {"tokens_seen": len(seen), "results": results}


def test_a_long_session_never_holds_a_stale_token(short_tokens):
    user = unique_user("long")
    short_tokens.admin.ensure_user(user)
    short_tokens.admin.start_server(user)
    report = asyncio.run(_session_over_several_lifetimes(short_tokens, user))
    outcomes = [out for _, out in report["results"]]
    assert not [o for o in outcomes if o.startswith("AUTHFAIL")], report["results"]
    assert not [o for o in outcomes if o.startswith("WRONG")], report["results"]
    # while Rucio was down the session saw it down, and afterwards it recovered
    stop_at = next(i for i, (when, _) in enumerate(report["results"]) if when == "rucio stopped")
    assert report["results"][stop_at][1].startswith("DOWN"), report["results"]
    after = outcomes[stop_at + 1 :]
    assert after and all(o == "OK" for o in after), report["results"]
    assert outcomes.count("OK") >= 10
    # the file was renewed in place several times (2.5 lifetimes, renewal at 2/3)
    assert report["tokens_seen"] >= 4
    mode = (short_tokens.home(user) / ".lakehub" / "rucio-token").stat().st_mode & 0o777
    assert mode == 0o600


def test_a_session_can_only_get_its_own_users_token(short_tokens):
    alice, bob = unique_user("alice"), unique_user("bob")
    url = f"{issuer_url(short_tokens.site)}/api/token"
    tokens = {}
    for name in (alice, bob):
        short_tokens.admin.ensure_user(name)
        r = short_tokens.admin.api(
            "POST", f"/users/{name}/tokens", json={"scopes": [TOKEN_ACCESS], "note": "t"}
        )
        tokens[name] = r.json()["token"]
    mine = httpx.get(url, headers={"Authorization": f"token {tokens[alice]}"}, timeout=30)
    assert mine.status_code == 200
    from lakehub.token_refresher import token_times

    issued, expires = token_times(mine.json()["token"])
    assert expires - issued == LIFETIME
    import base64
    import json

    payload = mine.json()["token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == alice
    # naming another user is refused, and no token of bob's ever reaches alice
    other = httpx.get(
        url, params={"user": bob}, headers={"Authorization": f"token {tokens[alice]}"}, timeout=30
    )
    assert other.status_code == 403
    assert "token" not in other.json()
    # a token without access to the token service gets nothing
    r = short_tokens.admin.api("POST", f"/users/{alice}/tokens", json={"scopes": [], "note": "t"})
    bare = httpx.get(url, headers={"Authorization": f"token {r.json()['token']}"}, timeout=30)
    assert bare.status_code == 403
    # the hub's admin service is not a session: it gets no user token either
    admin = httpx.get(
        url, headers={"Authorization": f"token {short_tokens.admin_token}"}, timeout=30
    )
    assert admin.status_code == 403
