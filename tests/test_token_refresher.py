"""The session's token refresher against a real HTTP token endpoint on 127.0.0.1 that
fails for a while and then recovers (the hub's own service is tested in test_tokens.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

from tornado import web

from lakehub.token_refresher import (
    NOTICE,
    TokenRefresher,
    next_pause,
    seconds_until_renewal,
    token_times,
)
from testkit.harness import free_ports
from tokens.mint import Issuer, create_signing_key


def test_renewal_happens_at_two_thirds_of_the_lifetime():
    assert seconds_until_renewal(1000, 1600, now=1000) == 400
    assert seconds_until_renewal(1000, 1600, now=1500) == 0  # late: renew at once
    assert [next_pause(p, 5) for p in (0, 5, 10, 160, 300)] == [5, 10, 20, 300, 300]


async def test_a_failing_service_gives_one_message_then_recovery(tmp_path, caplog):
    issuer = Issuer("http://127.0.0.1:1", create_signing_key(tmp_path / "key.json"), 60)
    calls = {"n": 0}

    class Flaky(web.RequestHandler):
        def get(self):
            calls["n"] += 1
            assert self.request.headers["Authorization"] == "token session-token"
            if calls["n"] <= 3:  # down for three attempts
                self.set_status(503)
                self.finish({"error": "down"})
                return
            token = issuer.mint("alice", int(time.time()))
            self.finish({"token": token, "expires": token_times(token)[1]})

    (port,) = free_ports(1)
    server = web.Application([(r"/api/token", Flaky)]).listen(port, address="127.0.0.1")
    token_file = tmp_path / "rucio-token"
    token_file.write_text(issuer.mint("alice", int(time.time()) - 60))  # already expired
    refresher = TokenRefresher(
        token_file,
        f"http://127.0.0.1:{port}",
        "session-token",
        tmp_path,
        logging.getLogger("test.refresher"),
        shortest_pause=0.05,
    )
    caplog.set_level(logging.INFO, logger="test.refresher")
    task = asyncio.create_task(refresher.run())
    try:
        notice_seen = False
        deadline = time.monotonic() + 30
        # poll what the refresher task changes: the call count, its state, the note
        while (calls["n"] < 4 or refresher.failing) and time.monotonic() < deadline:
            notice_seen |= (tmp_path / NOTICE).exists()
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        server.stop()
    assert calls["n"] == 4
    assert notice_seen and not (tmp_path / NOTICE).exists()
    warnings = [r for r in caplog.records if "could not renew" in r.getMessage()]
    assert len(warnings) == 1, "one message for the whole outage"
    assert any("renewed again" in r.getMessage() for r in caplog.records)
    issued, expires = token_times(token_file.read_text())
    assert expires > time.time() + 50
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert not token_file.read_text().endswith("\n")


# --- Kubernetes: the live token starts from the Secret's copy ------------------------------


def test_the_seed_is_adopted_only_when_it_holds_a_later_token(tmp_path, monkeypatch):
    from lakehub.token_refresher import adopt_seed, adopt_seed_from_environment

    issuer = Issuer("http://127.0.0.1:1", create_signing_key(tmp_path / "key.json"), 600)
    older, newer = issuer.mint("alice", 1_000_000), issuer.mint("alice", 2_000_000)
    seed, live = tmp_path / "secret" / "rucio-token", tmp_path / "live" / "rucio-token"
    seed.parent.mkdir()
    live.parent.mkdir()
    seed.write_text(older)
    monkeypatch.setenv("BEARER_TOKEN_FILE", str(live))
    monkeypatch.setenv("LAKEHUB_TOKEN_SEED", str(seed))
    assert adopt_seed_from_environment()  # no file yet: the seed becomes the token
    assert live.read_text() == older and (live.stat().st_mode & 0o777) == 0o600
    live.write_text(newer)  # the refresher renewed it since
    assert not adopt_seed(live, seed) and live.read_text() == newer
    seed.write_text(issuer.mint("alice", 3_000_000))  # the token service renewed the Secret
    assert adopt_seed(live, seed) and token_times(live.read_text())[0] == 3_000_000
    seed.write_text("")  # a Secret without a token (the spawn could not get one)
    assert not adopt_seed(live, seed)


# --- the token service's pure parts --------------------------------------------------------


def test_a_users_secrets_are_found_by_a_label_of_their_name_hash():
    from lakehub.contract import user_label
    from tokens.secret_renewal import selector

    label = user_label("Alice@Example.org")
    assert len(label) == 40 and label.isalnum() and label == label.lower()
    assert label != user_label("alice@example.org")
    assert selector("bob") == f"app.kubernetes.io/part-of=lakehub,lakehub/user={user_label('bob')}"


def test_a_secret_gets_the_new_token_and_keeps_everything_else():
    import base64

    from tokens.broker import Cached
    from tokens.secret_renewal import renewed_secret

    secret = {
        "metadata": {
            "name": "jupyter-alice-lakehub",
            "resourceVersion": "41",
            "annotations": {"lakehub/token-expires": "2000", "other": "kept"},
            "managedFields": [{"manager": "hub"}],
        },
        "data": {"rucio-token": "b2xk", "rucio.cfg": "Y2Zn"},
    }
    body = renewed_secret(secret, Cached("new-token\n", 1500, 3000))
    assert base64.b64decode(body["data"]["rucio-token"]) == b"new-token"  # no newline
    assert body["data"]["rucio.cfg"] == "Y2Zn"
    assert body["metadata"]["annotations"] == {"lakehub/token-expires": "3000", "other": "kept"}
    assert body["metadata"]["resourceVersion"] == "41"  # the update is conditional
    assert "managedFields" not in body and secret["data"]["rucio-token"] == "b2xk"
    # nothing to do: a token living at least as long, or no token key at all
    assert renewed_secret(secret, Cached("t", 1000, 2000)) is None
    assert (
        renewed_secret({"metadata": {}, "data": {"rucio.cfg": "Y2Zn"}}, Cached("t", 1, 9)) is None
    )


async def test_one_renewal_per_user_is_in_flight_and_failures_are_not_cached():
    from tokens.broker import Cached, Caller, RenewalFailed, TokenBroker

    class Source:
        def __init__(self):
            self.calls = 0
            self.release = asyncio.Event()
            self.fail = False

        async def fresh(self, caller):
            self.calls += 1
            await self.release.wait()
            if self.fail:
                raise RenewalFailed("identity provider down")
            now = int(time.time())
            return Cached(f"{caller.name}-{self.calls}", now, now + 600)

    renewed = []

    async def renewer(name, entry):
        renewed.append((name, entry.token))

    source = Source()
    broker = TokenBroker(source, (renewer,))
    waiting = [asyncio.ensure_future(broker.token_for(Caller("alice", "t"))) for _ in range(5)]
    await asyncio.sleep(0)  # let all five reach the source
    source.release.set()
    results = await asyncio.gather(*waiting)
    assert {r.token for r in results} == {"alice-1"} and source.calls == 1
    assert renewed == [("alice", "alice-1")]
    assert (await broker.token_for(Caller("alice", "t"))).token == "alice-1"  # cached
    source.fail = True
    source.release.clear()
    failing = [asyncio.ensure_future(broker.token_for(Caller("bob", "t"))) for _ in range(3)]
    await asyncio.sleep(0)
    source.release.set()
    outcomes = await asyncio.gather(*failing, return_exceptions=True)
    assert all(isinstance(o, RenewalFailed) for o in outcomes) and source.calls == 2
    source.fail = False
    assert (await broker.token_for(Caller("bob", "t"))).token == "bob-3"  # tried again
