"""How a hub service process ends.

JupyterHub stops a managed service with SIGINT (then SIGTERM, then SIGKILL); Kubernetes
stops a pod with SIGTERM.  Either way the service's main coroutine is cancelled, so its
``finally`` blocks and cleanups run, one line says why, and the process exits 0: no
``KeyboardInterrupt`` traceback in the hub's log at every ``make down``, no abrupt end
in a pod.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def until_stopped(main: Coroutine, log: logging.Logger) -> None:
    """Run ``main`` until it returns or a stop signal arrives (then cancel it)."""
    loop = asyncio.get_running_loop()
    work = asyncio.ensure_future(main)
    stopping = False

    def stop(sig: signal.Signals) -> None:
        nonlocal stopping
        if not stopping:
            log.info("%s: stopping", sig.name)
        stopping = True
        work.cancel()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    try:
        await work
    except asyncio.CancelledError:
        if not stopping:  # cancelled from outside, not by a signal: not ours to swallow
            raise
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def run_until_stopped(main: Coroutine, log: logging.Logger) -> int:
    """``asyncio.run`` for a service's ``main``; the process's exit status."""
    asyncio.run(until_stopped(main, log))
    return 0
