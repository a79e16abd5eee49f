"""Leak scan (pytest -m security), run after the end-to-end, cache and token tests of the
same session (conftest.py moves it last), against the real stack they used.

It gathers every credential the stack holds or handed out: each user's current Rucio
token, the Rucio admin password, the hub's admin service token, the demo logins and the
issuer's private key, and looks for them where they must never be: the hub log (which
also carries the proxy's, the services' and the single-user servers' output), the Rucio
log, any file another local account can read, and error pages.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.security

# folders of the state that only the hub's account may enter
PRIVATE = ("secrets", "rucio", "hub", "logs", "run", "cache-service")


def credentials(stack) -> dict[str, str]:
    found = {f"stack secret #{i}": s for i, s in enumerate(stack.secrets_on_disk())}
    for token in stack.paths.homes.glob("*/.lakehub/rucio-token"):
        found[f"Rucio token of {token.parent.parent.name}"] = token.read_text().strip()
    return {label: value for label, value in found.items() if len(value) >= 12}


def leaks_in(text: str, secrets: dict[str, str]) -> list[str]:
    return [label for label, value in secrets.items() if value in text]


def readable_by_others(path: Path, owner_uid: int) -> bool:
    """Could a local account other than ``owner_uid`` (and root) read this file?"""
    st = path.stat()
    if st.st_mode & stat.S_IROTH:
        # still unreadable if some folder on the way is closed to others
        for parent in path.parents:
            pst = parent.stat()
            if not pst.st_mode & stat.S_IXOTH:
                return False
            if parent == Path("/"):
                break
        return True
    return bool(st.st_mode & stat.S_IRGRP) and st.st_gid != owner_uid and st.st_gid != 0


def test_no_credential_in_any_log(local_stack):
    secrets = credentials(local_stack)
    assert len(secrets) > 4, "the scan must have credentials to look for"
    problems = []
    for log in local_stack.paths.logs.glob("*.log"):
        problems += [
            f"{log.name}: {label}" for label in leaks_in(log.read_text(errors="replace"), secrets)
        ]
    assert problems == []


def test_no_credential_in_a_file_another_account_can_read(local_stack):
    secrets = credentials(local_stack)
    state = local_stack.paths.state
    for name in PRIVATE:
        mode = (state / name).stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{name}/ is open to other accounts ({oct(mode)})"
    problems = []
    for root, _dirs, files in os.walk(state):
        for name in files:
            path = Path(root) / name
            try:
                owner = path.stat().st_uid
                if not readable_by_others(path, owner):
                    continue
                text = path.read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            problems += [f"{path}: {label}" for label in leaks_in(text, secrets)]
    assert problems == []
    for home in local_stack.paths.homes.iterdir():
        assert home.stat().st_mode & 0o077 == 0, f"{home} is open to other accounts"
        token = home / ".lakehub" / "rucio-token"
        if token.exists():
            assert token.stat().st_mode & 0o777 == 0o600
            assert token.stat().st_uid == home.stat().st_uid


def test_error_pages_do_not_echo_credentials(local_stack):
    secrets = credentials(local_stack)
    token = next(v for k, v in secrets.items() if k.startswith("Rucio token"))
    admin = local_stack.admin_token
    pages = [
        httpx.get(f"{local_stack.url}/hub/no-such-page", params={"token": token}, timeout=30),
        httpx.get(
            f"{local_stack.url}/hub/api/users",
            headers={"Authorization": f"token {token}"},
            timeout=30,
        ),
        httpx.get(f"{local_stack.url}/user/nobody/lab", params={"token": admin}, timeout=30),
        httpx.post(
            f"{local_stack.url}/hub/login", data={"username": "x", "password": token}, timeout=30
        ),
    ]
    cache = f"http://127.0.0.1:{local_stack.site.local.cache_port}"
    pages.append(
        httpx.post(
            f"{cache}/api/fetch",
            json={"did": f"x:{token}"},
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
    )
    for page in pages:
        assert page.status_code >= 300
        assert leaks_in(page.text, secrets) == [], page.request.url
