"""A light single-user server: what the hub checks of a server, and nothing else.

Stands in for JupyterLab where hundreds of them do not fit on the machine (the
classroom benchmark).  Standard library only, so it starts in a few hundredths of a
second from any environment: it listens where ``$JUPYTERHUB_SERVICE_URL`` says and
answers every GET under its prefix with 200; ``<prefix>env`` returns the server's
environment as JSON (the session's variables and hub token, as a notebook would see
them).  Run as ``python /path/to/light_server.py`` (no imports from lakehub).
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class Handler(BaseHTTPRequestHandler):
    prefix = "/"

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        path = urlsplit(self.path).path
        if not path.startswith(self.prefix.rstrip("/")):
            self.send_error(404)
            return
        body = (
            json.dumps(dict(os.environ)) if path.rstrip("/").endswith("/env") else path
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass  # the hub's log stays readable with hundreds of servers


def main() -> None:
    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    Handler.prefix = url.path or "/"
    server = ThreadingHTTPServer((url.hostname or "127.0.0.1", url.port or 80), Handler)
    print(f"light server at {url.geturl()}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
