"""NativeAuthenticator with its password check off the hub's event loop.

NativeAuthenticator compares the password with bcrypt inside ``authenticate``, on the
hub's event loop: a quarter to half a second of CPU per login during which the hub
answers nobody (no other login, no spawn progress, no API call).  A class arriving at
once queues behind it.  This subclass runs the same checks in the same order, with the
bcrypt comparison in a thread (bcrypt releases the GIL while it hashes); the database
reads and writes stay on the event loop, where the hub's database session lives.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import bcrypt
from nativeauthenticator import NativeAuthenticator

# what ``JupyterHub.authenticator_class`` names, locally and on Kubernetes (the hub image
# carries hub_config); the NativeAuthenticator config section applies to it unchanged
CLASS_PATH = "hub_config.native_auth.LakehubNativeAuthenticator"
# one bcrypt check per core at a time: a class logging in at once queues here instead of
# taking every core from the spawns already under way
_CHECKS = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="bcrypt")


def password_matches(stored_hash: bytes, password: str) -> bool:
    """bcrypt's comparison of ``password`` with a stored hash (blocking: call in a thread)."""
    try:
        return bcrypt.checkpw(password.encode(), stored_hash)
    except ValueError:  # not a bcrypt hash (a broken row): no login
        return False


class LakehubNativeAuthenticator(NativeAuthenticator):
    async def authenticate(self, handler, data):
        username = self.normalize_username(data["username"])
        user = self.get_user(username)
        if not user:
            return None
        if self.allowed_failed_logins and self.is_blocked(username):
            return None
        stored = user.password
        loop = asyncio.get_running_loop()
        matches = await loop.run_in_executor(_CHECKS, password_matches, stored, data["password"])
        valid = matches and user.is_authorized
        if valid and user.has_2fa:
            valid = user.is_valid_token(data.get("2fa"))
        if valid:
            self.successful_login(username)
            return username
        self.add_login_attempt(username)
        return None
