"""The session's token refresher against a real HTTP token endpoint on 127.0.0.1 that
fails for a while and then recovers (the hub's own service is tested in test_tokens.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

from tornado import web

from lakehub.tokens import (
    NOTICE,
    TokenRefresher,
    next_pause,
    seconds_until_renewal,
    token_times,
)
from localstack.harness import free_ports
from spawner_hooks.tokens import Issuer, create_signing_key


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
