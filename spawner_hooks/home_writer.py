"""Write a session bundle into a home folder, as the owner of that home.

The hub starts ``python -m spawner_hooks.home_writer`` with the user's uid and gid and
sends the bundle as JSON on standard input (never in arguments or the environment,
where other processes could read it).  Writing as the user means a student cannot
trick the hub into writing elsewhere with a symlink in their home.
"""

from __future__ import annotations

import os
from pathlib import Path

from lakehub.child import child_main
from lakehub.files import atomic_write, write_private
from spawner_hooks import notebooks


def apply(bundle: dict) -> dict:
    home = Path(bundle["home"])
    session_dir = Path(bundle["session_dir"])
    os.umask(0o077)
    session_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(session_dir, 0o700)
    for path, text in bundle["files"].items():
        atomic_write(Path(path), text, 0o600)
    for path, text in bundle["private"].items():
        write_private(Path(path), text)
    notice = home / bundle["notice_name"]
    if bundle["notice"]:
        atomic_write(notice, bundle["notice"], 0o644)
    else:
        notice.unlink(missing_ok=True)
    report = {"notebooks": {}}
    nb = bundle.get("notebooks")
    if nb and Path(nb["source"]).is_dir():
        done = notebooks.sync(Path(nb["source"]), home / nb["target"], Path(nb["manifest"]))
        report["notebooks"] = {rel: action.value for rel, action in done.items()}
    return report


if __name__ == "__main__":
    raise SystemExit(child_main(apply))
