from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.stack import start_stack, stop_stack, write_site


def stack_folder() -> Path:
    """A fresh folder the per-user system accounts can traverse (pytest's tmp is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="lakehub-test-"))
    os.chmod(folder, 0o755)  # noqa: S103  homes inside are 0700
    return folder


@pytest.fixture(scope="session")
def local_stack():
    """The real embedded stack (Rucio + JupyterHub + proxy + issuer) for the session.

    Runs as root in CI so each hub user gets a system account of their own; the
    isolation assertions depend on that.  Everything started is stopped by PID at the
    end, also when starting failed half-way.
    """
    folder = stack_folder()
    site_file = write_site(folder)
    try:
        yield start_stack(folder / "state", site_file)
    finally:
        stop_stack(folder / "state")
        site_file.unlink(missing_ok=True)
        folder.rmdir()
