"""The hub's token issuer and token service (JupyterHub service ``lakehub-issuer``).

* ``hub_issuer`` sites (native logins): OpenID discovery and public keys for Rucio, which
  fetches ``<issuer>/.well-known/openid-configuration`` and then ``jwks_uri`` once,
  caches the keys and from then on checks the hub's JWTs locally.  The routes answer
  both at the root (locally the issuer URL is this process) and under the service prefix
  (on Kubernetes the issuer URL is ``<hub>/services/lakehub-issuer``, through the proxy).
* Every site, when run as a hub service: fresh tokens for running sessions
  (``/api/token``, see ``tokens.broker``), from the hub's key or by token exchange
  (``tokens.sources``), optionally renewing the users' session Secrets
  (``--renew-secrets-in NAMESPACE``, ``tokens.secret_renewal``).

Locally the hub runs it as a managed service; on Kubernetes it is the chart's
``lakehub-issuer`` Deployment.

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

from hub_services.hub_auth import service_hub_auth
from hub_services.lifecycle import run_until_stopped
from hub_services.token_api import TokenHandler
from lakehub.contract import (
    ENV_OAUTH_CLIENT_SECRET,
    HUB_ISSUER,
    ISSUER_SERVICE,
    TOKEN_API_PATH,
    TOKEN_EXCHANGE,
)
from tokens.broker import TokenBroker
from tokens.mint import discovery_document, public_jwks

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
    issuer_url: str | None,
    key=None,
    broker: TokenBroker | None = None,
    hub_auth: HubAuth | None = None,
    prefix: str = "",
) -> web.Application:
    """Discovery and keys for Rucio (with a signing ``key``); with a broker, also
    ``/api/token`` for sessions.  Each route answers at the root and under ``prefix``."""
    refusal = {
        "error": "unsupported_grant_type",
        "error_description": "this issuer signs tokens for the lakehub hub only; "
        "log in through the hub",
    }
    routes: list[tuple] = [(r"/health", _JSON, {"body": {"ok": True}})]
    if key is not None:
        routes += [
            (
                r"/\.well-known/openid-configuration",
                _JSON,
                {"body": discovery_document(issuer_url)},
            ),
            (r"/jwks", _JSON, {"body": public_jwks(key)}),
            (r"/(?:authorize|token|userinfo)", _JSON, {"body": refusal, "status": 400}),
        ]
    if broker is not None:
        routes.append((TOKEN_API_PATH, TokenHandler))
    prefix = prefix.rstrip("/")
    if prefix:
        routes += [(prefix + pattern, *rest) for pattern, *rest in routes]
        routes.append((prefix + r"/?", _JSON, {"body": {"ok": True}}))
    return web.Application(routes, log_function=_quiet_log, broker=broker, hub_auth=hub_auth)


def _quiet_log(handler: web.RequestHandler) -> None:
    status = handler.get_status()
    if status >= 400:
        log.info("%d %s %s", status, handler.request.method, handler.request.path)


def make_source(args: argparse.Namespace, key):
    if args.source == HUB_ISSUER:
        from tokens.mint import Issuer
        from tokens.sources import IssuerSource

        return IssuerSource(Issuer(args.issuer_url, key, args.lifetime))
    from tokens.exchange import TokenExchange
    from tokens.sources import ExchangeSource

    exchange = TokenExchange(
        audience=args.exchange_audience,
        scope=args.exchange_scope or None,
        token_url=args.exchange_token_url,
        client_id=args.exchange_client_id,
        client_secret=os.environ.get(ENV_OAUTH_CLIENT_SECRET),
        ca_cert=args.exchange_ca_cert,
    )
    return ExchangeSource(
        exchange, os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"]
    )


async def serve(args: argparse.Namespace, key) -> None:
    broker = hub_auth = None
    if "JUPYTERHUB_API_TOKEN" in os.environ:  # run as a hub service: serve sessions too
        renewers = ()
        if args.renew_secrets_in:
            from tokens.secret_renewal import SecretRenewer

            renewers = (SecretRenewer(args.renew_secrets_in, args.kubeconfig),)
        broker = TokenBroker(make_source(args, key), renewers)
        hub_auth = service_hub_auth(ISSUER_SERVICE, cache_max_age=300)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "")
    app = make_app(args.issuer_url, key, broker, hub_auth, prefix)
    address, port = listen_address(args)
    app.listen(port, address=address)
    log.info("issuer %s (%s) listening on %s:%d", args.issuer_url, args.source, address, port)
    await asyncio.Event().wait()


def listen_address(args: argparse.Namespace) -> tuple[str, int]:
    """``--listen HOST:PORT``, else the issuer URL's own host and port (local mode)."""
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        return host or "127.0.0.1", int(port)
    parts = urlsplit(args.issuer_url or "")
    return parts.hostname or "127.0.0.1", parts.port or 80


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issuer-url", help="the issuer URL Rucio trusts (its 'iss')")
    p.add_argument("--key", type=Path, help="the signing key file (JWK); hub_issuer only")
    p.add_argument("--lifetime", type=int, default=3600, help="seconds a token lives")
    p.add_argument("--listen", help="HOST:PORT to listen on (default: the issuer URL's)")
    p.add_argument("--source", choices=[HUB_ISSUER, TOKEN_EXCHANGE], default=HUB_ISSUER)
    p.add_argument("--exchange-token-url", help="the identity provider's token endpoint")
    p.add_argument("--exchange-client-id", help="the OAuth client (secret: $OAUTH_CLIENT_SECRET)")
    p.add_argument("--exchange-audience", default="rucio")
    p.add_argument("--exchange-scope", default="openid profile")
    p.add_argument("--exchange-ca-cert", help="CA bundle for the identity provider")
    p.add_argument("--renew-secrets-in", metavar="NAMESPACE", help="renew session Secrets there")
    p.add_argument("--kubeconfig", help="default: the pod's service account")
    return p


def check(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, in words, or None (pure)."""
    if args.source == HUB_ISSUER:
        if not args.issuer_url:
            return f"--issuer-url is required with --source {HUB_ISSUER}"
        if not args.key or not args.key.is_file():
            return f"--key: the signing key file {args.key} does not exist"
    else:
        missing = [
            flag
            for flag, value in (
                ("--exchange-token-url", args.exchange_token_url),
                ("--exchange-client-id", args.exchange_client_id),
                (f"${ENV_OAUTH_CLIENT_SECRET}", os.environ.get(ENV_OAUTH_CLIENT_SECRET)),
            )
            if not value
        ]
        if missing:
            return f"--source {TOKEN_EXCHANGE} needs " + ", ".join(missing)
        if "JUPYTERHUB_API_TOKEN" not in os.environ:
            return f"--source {TOKEN_EXCHANGE} runs only as a hub service ($JUPYTERHUB_API_TOKEN)"
    if not args.issuer_url and not args.listen:
        return "give --listen HOST:PORT (or --issuer-url)"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[lakehub-issuer] %(message)s")
    problem = check(args)
    if problem:
        print(f"lakehub-issuer: {problem}", file=sys.stderr)
        return 2
    if args.issuer_url:
        args.issuer_url = args.issuer_url.rstrip("/")
    key = None
    if args.source == HUB_ISSUER:
        from tokens.mint import load_signing_key

        key = load_signing_key(args.key)
    return run_until_stopped(serve(args, key), log)


if __name__ == "__main__":
    raise SystemExit(main())
