"""Let long-lived rucio-clients ``Client`` objects pick up the renewed token.

rucio-clients reads a bearer token (``BEARER_TOKEN_FILE``, WLCG token discovery) when a
``Client`` is created.  When that token expires the server answers 401 and the client
starts an interactive OIDC login instead of looking at the file again, so a notebook
that made ``client = Client()`` an hour ago stops working although lakehub has long
put a fresh token in the file.  This module adds one step in front of that login: if
the discovered token differs from the one the client holds, use it and retry.

It is imported at interpreter start by a ``.pth`` file in the analysis environment, is
a no-op unless ``BEARER_TOKEN_FILE`` is set, and patches rucio only when rucio is
imported (it never imports rucio itself).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

from lakehub.contract import BEARER_TOKEN_FILE

TARGET = "rucio.client.baseclient"


def patch(module) -> None:
    base = module.BaseClient
    original = base._BaseClient__get_token
    if getattr(original, "lakehub_patched", False):
        return
    from rucio.common.utils import wlcg_token_discovery

    def get_token(self) -> None:
        if self.auth_type == "oidc":
            token = wlcg_token_discovery()
            if token and token != self.auth_token:
                self.auth_token = token
                self.headers["X-Rucio-Auth-Token"] = token
                return
        original(self)

    get_token.lakehub_patched = True
    base._BaseClient__get_token = get_token


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module) -> None:
            run(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


def activate() -> None:
    if not os.environ.get(BEARER_TOKEN_FILE):
        return
    if TARGET in sys.modules:
        patch(sys.modules[TARGET])
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


activate()
