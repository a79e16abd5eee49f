"""What every figure family of ``make bench`` shares: the figures' output (one JSON
object per line on the real stdout, progress on stderr), a stack of its own per family
that is always stopped, and the one helper that declares a count on the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from localstack.procs import process_table
from spawner_hooks.local_spawner import SYSTEM_USER_PREFIX
from testkit.harness import (
    Stack,
    stack_folder,
    start_stack,
    stop_stack,
    write_site,
)


def count(parser: argparse.ArgumentParser, flag: str, default: int, what: str) -> None:
    """A count option (an integer >= 1): ``--flag N``, "what (default: N)"."""
    option(parser, flag, default, what, minimum=1)


def option(
    parser: argparse.ArgumentParser, flag: str, default: float, what: str, minimum: float = 0
) -> None:
    """A number option of ``default``'s type, at least ``minimum``."""
    kind = type(default)

    def checked(text: str):
        value = kind(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{flag} must be >= {minimum}, got {value}")
        return value

    parser.add_argument(flag, type=checked, default=default, help=f"{what} (default: {default})")


@dataclass(frozen=True)
class Family:
    """Figures measured together: their names, their options and how to measure them."""

    figures: tuple[str, ...]
    run: Callable[[argparse.Namespace, IO[str]], None]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- output ---------------------------------------------------------------------------


def claim_stdout() -> IO[str]:
    """Keep the real stdout for the figures and send everything else written to fd 1
    (the stack's own progress lines, child processes) to stderr."""
    sys.stdout.flush()
    figures = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return figures


def emit(out: IO[str], figure: str, value: float | int, **context) -> None:
    out.write(json.dumps({"figure": figure, "value": value, **context}) + "\n")
    out.flush()


# --- signals --------------------------------------------------------------------------


def terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a stack is being stopped; re-raise them afterwards."""
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            raise KeyboardInterrupt(f"signal {received[0]} during cleanup")


# --- stacks ---------------------------------------------------------------------------


def hub_log_problems(state: Path) -> list[str]:
    """Error lines of the hub log (hub and single-user servers), and lakehub warnings.

    The hook's logger has no handler of its own, so its warnings may reach the log
    through Python's last-resort handler as bare ``lakehub: ...`` lines.
    """
    path = state / "logs" / "hub.log"
    if not path.exists():
        return []
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("[E ", "[C ", "Traceback", "lakehub:")):
            found.append(line)
        elif line.startswith("[W ") and "lakehub:" in line:
            found.append(line)
    return found


def report_hub_log(label: str, state: Path) -> None:
    problems = hub_log_problems(state)
    if not problems:
        log(f"{label}: hub log has no errors")
        return
    log(f"{label}: hub log has {len(problems)} error/warning line(s); first ones:")
    for line in problems[:8]:
        print(f"    {line[:300]}", file=sys.stderr)


def leftover_processes(folder: Path) -> list[str]:
    """Processes still working in or on the stack folder (there should be none)."""
    prefix = str(folder)
    return [
        f"pid {pid}: {cmd[:160]}"
        for pid, cmd, cwd, _ in process_table()
        if pid != os.getpid() and (cwd.startswith(prefix) or prefix in cmd)
    ]


def leftover_accounts(folder: Path) -> list[str]:
    """Per-user system accounts with a home in the stack folder that are still there
    after ``stop_stack`` (there should be none: the spawner records each account
    before making it, and ``stop_stack`` removes the recorded ones)."""
    return [
        entry.pw_name
        for entry in pwd.getpwall()
        if entry.pw_name.startswith(SYSTEM_USER_PREFIX)
        and Path(entry.pw_dir).is_relative_to(folder)
    ]


@contextlib.contextmanager
def running_stack(
    label: str, keep_logs: Path | None, site: dict | None = None, **options
) -> Iterator[Stack]:
    """A stack of its own in a fresh folder, stopped and removed on the way out.

    ``site`` holds keyword arguments of ``write_site`` (demo ``events``, ``cache``
    settings); ``options`` those of ``start_stack``.
    """
    folder = stack_folder()
    state = folder / "state"
    began = time.monotonic()
    log(f"{label}: starting a stack in {folder} ({options}, site {site or {}})")
    try:
        site_file = write_site(folder, **(site or {}))
        stack = start_stack(state, site_file, **options)
        log(f"{label}: up at {stack.url} after {time.monotonic() - began:.1f} s")
        yield stack
    finally:
        with signals_held():
            try:
                report_hub_log(label, state)
                if keep_logs is not None and (state / "logs").is_dir():
                    target = keep_logs / f"{label}-{folder.name}"
                    shutil.copytree(state / "logs", target, dirs_exist_ok=True)
                    log(f"{label}: logs copied to {target}")
            finally:
                log(f"{label}: stopping the stack")
                stop_stack(state)
                for account in leftover_accounts(folder):
                    log(f"{label}: WARNING system account {account} survived stop_stack")
                shutil.rmtree(folder, ignore_errors=True)
                for line in leftover_processes(folder):
                    log(f"{label}: WARNING still running after stop: {line}")


# --- figure 1: spawn time with and without the hooks ------------------------------------
