"""The hub's token issuer: OpenID discovery and public keys for Rucio, and (when run by
the hub) fresh tokens for running sessions (``/api/token``, see hub_services.tokens).

Run by JupyterHub as a managed service (``c.JupyterHub.services``).  The Rucio
server fetches ``<issuer>/.well-known/openid-configuration`` and then ``jwks_uri``
once, caches the keys, and from then on checks the hub's JWTs locally.  The private
key stays with the hub, which signs tokens at spawn (``spawner_hooks.tokens``); this
process publishes only the public half.

    python -m hub_services.issuer --issuer-url http://127.0.0.1:8009 --key KEYFILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from jupyterhub.services.auth import HubAuth
from tornado import web

from hub_services.tokens import SERVICE_NAME, TokenBroker, TokenHandler
from spawner_hooks.tokens import Issuer, discovery_document, load_signing_key, public_jwks

log = logging.getLogger("lakehub.issuer")


class _JSON(web.RequestHandler):
    def initialize(self, body: dict, status: int = 200) -> None:
        self.body = json.dumps(body).encode()
        self.status = status

    def get(self) -> None:
        self.set_status(self.status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "public, max-age=300")
        self.finish(self.body)

    post = get


def make_app(
    issuer_url: str,
    key_path: Path,
    broker: TokenBroker | None = None,
    hub_auth: HubAuth | None = None,
) -> web.Application:
    """Discovery and keys for Rucio; with a broker, also ``/api/token`` for sessions."""
    key = load_signing_key(key_path)
    refusal = {
        "error": "unsupported_grant_type",
        "error_description": "this issuer signs tokens for the lakehub hub only; "
        "log in through the hub",
    }
    routes = [
        (r"/\.well-known/openid-configuration", _JSON, {"body": discovery_document(issuer_url)}),
        (r"/jwks", _JSON, {"body": public_jwks(key)}),
        (r"/health", _JSON, {"body": {"ok": True}}),
        (r"/(?:authorize|token|userinfo)", _JSON, {"body": refusal, "status": 400}),
    ]
    if broker is not None:
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/")
        routes += [(r"/api/token", TokenHandler), (prefix + r"/api/token", TokenHandler)]
        routes += [(prefix + r"/?", _JSON, {"body": {"ok": True}})]
    return web.Application(routes, log_function=_quiet_log, broker=broker, hub_auth=hub_auth)


def _quiet_log(handler: web.RequestHandler) -> None:
    status = handler.get_status()
    if status >= 400:
        log.info("%d %s %s", status, handler.request.method, handler.request.path)


async def serve(issuer_url: str, key_path: Path, lifetime: int) -> None:
    parts = urlsplit(issuer_url)
    broker = hub_auth = None
    if "JUPYTERHUB_API_TOKEN" in os.environ:  # run by the hub: serve sessions' renewals too
        broker = TokenBroker(Issuer(issuer_url, load_signing_key(key_path), lifetime))
        hub_auth = HubAuth(
            api_token=os.environ["JUPYTERHUB_API_TOKEN"],
            api_url=os.environ["JUPYTERHUB_API_URL"],
            cache_max_age=300,
        )
        hub_auth.access_scopes = {f"access:services!service={SERVICE_NAME}"}
    app = make_app(issuer_url, key_path, broker, hub_auth)
    app.listen(parts.port or 80, address=parts.hostname or "127.0.0.1")
    log.info("issuer %s serving public keys", issuer_url)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuer-url", required=True)
    parser.add_argument("--key", required=True, type=Path, help="the signing key file (JWK)")
    parser.add_argument("--lifetime", type=int, default=3600, help="seconds a token lives")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[lakehub-issuer] %(message)s")
    if not args.key.is_file():
        print(f"lakehub-issuer: key file {args.key} does not exist", file=sys.stderr)
        return 2
    asyncio.run(serve(args.issuer_url.rstrip("/"), args.key, args.lifetime))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
