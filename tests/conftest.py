from __future__ import annotations

import pytest

from localstack.harness import temporary_stack


def pytest_collection_modifyitems(items):
    """The leak scan looks at what every other test left behind: run it last."""
    items.sort(key=lambda item: item.get_closest_marker("security") is not None)


@pytest.fixture(scope="session")
def local_stack():
    """The real embedded stack (Rucio + JupyterHub + proxy + issuer) for the session.

    Runs as root in CI so each hub user gets a system account of their own; the
    isolation assertions depend on that.  Everything started is stopped by PID at the
    end, also when starting failed half-way.
    """
    with temporary_stack() as stack:
        yield stack
