"""The child's side of running lakehub code as the owner of a home.

The hub starts ``python -m <module>`` with the student's uid (``spawner_hooks.as_owner``)
and sends one JSON request on standard input, never in arguments or the environment;
the module answers with one JSON object on standard output, or one error line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable


def child_main(apply: Callable[[dict], dict]) -> int:
    """Read the request, print the reply (or one error line) as JSON."""
    try:
        reply = apply(json.load(sys.stdin))
    except Exception as exc:  # reported to the hub as one line, never as a traceback
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(reply))
    return 0
