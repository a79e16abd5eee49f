"""The hub's token issuer, as seen by Rucio: OpenID discovery and public keys.

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
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tornado import web

from spawner_hooks.tokens import discovery_document, load_signing_key, public_jwks

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


def make_app(issuer_url: str, key_path: Path) -> web.Application:
    key = load_signing_key(key_path)
    refusal = {
        "error": "unsupported_grant_type",
        "error_description": "this issuer signs tokens for the lakehub hub only; "
        "log in through the hub",
    }
    return web.Application(
        [
            (
                r"/\.well-known/openid-configuration",
                _JSON,
                {"body": discovery_document(issuer_url)},
            ),
            (r"/jwks", _JSON, {"body": public_jwks(key)}),
            (r"/health", _JSON, {"body": {"ok": True}}),
            (r"/(?:authorize|token|userinfo)", _JSON, {"body": refusal, "status": 400}),
        ],
        log_function=_quiet_log,
    )


def _quiet_log(handler: web.RequestHandler) -> None:
    status = handler.get_status()
    if status >= 400:
        log.info("%d %s %s", status, handler.request.method, handler.request.path)


async def serve(issuer_url: str, key_path: Path) -> None:
    parts = urlsplit(issuer_url)
    app = make_app(issuer_url, key_path)
    app.listen(parts.port or 80, address=parts.hostname or "127.0.0.1")
    log.info("issuer %s serving public keys", issuer_url)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuer-url", required=True)
    parser.add_argument("--key", required=True, type=Path, help="the signing key file (JWK)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[lakehub-issuer] %(message)s")
    if not args.key.is_file():
        print(f"lakehub-issuer: key file {args.key} does not exist", file=sys.stderr)
        return 2
    asyncio.run(serve(args.issuer_url.rstrip("/"), args.key))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
