"""Run one of lakehub's modules as the owner of a home, with a JSON request on stdin.

Both the session-file writer (:mod:`spawner_hooks.home_writer`) and the course pull
(:mod:`lakehub.courses`) work inside a student's home; the child's side is
:func:`lakehub.child.child_main`.  Doing that work in a child
process with the student's uid means a link planted in the home cannot redirect the
hub's writes, and the request (which may hold a token) travels on a pipe, never in
arguments or the environment.  The hub's event loop only awaits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import weakref
from collections.abc import Mapping

# Helper processes running at once, hub-wide.  A class arriving together starts two
# Python helpers per student (session files, course pull); a hundred of them sharing two
# cores finish all together, minutes later, while in turns each takes a fraction of a
# second.  Waiting students queue here, first come first served.
HELPERS_AT_ONCE = max(2, os.cpu_count() or 2)
_helpers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> slots


def _helper_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    if loop not in _helpers:
        _helpers[loop] = asyncio.Semaphore(HELPERS_AT_ONCE)
    return _helpers[loop]


class ChildFailed(RuntimeError):
    """The child exited with an error; the message is its one-line report."""


async def run_as_owner(
    spawner,
    module: str,
    request: dict,
    *,
    env: Mapping[str, str] | None = None,
    limit_s: float | None = None,
) -> dict:
    """Start ``python -m module`` as the home's owner, send ``request``, return its reply."""
    owner = await spawner.prepare_home()
    ids = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
    async with _helper_slots():
        return await _run(module, request, ids, env, limit_s)


async def _run(
    module: str,
    request: dict,
    ids: dict,
    env: Mapping[str, str] | None,
    limit_s: float | None,
) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd="/",
        env=dict(env) if env is not None else None,
        **ids,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(request).encode()), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ChildFailed(f"{module} took longer than {limit_s:.0f} s") from None
    if proc.returncode != 0:
        detail = out.decode(errors="replace").strip() or err.decode(errors="replace")[-500:]
        raise ChildFailed(detail)
    return json.loads(out or b"{}")
