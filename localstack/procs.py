"""Start and stop the stack's processes by PID, and wait for them to answer.

Each process gets a pid file holding its PID and its kernel start time, so `stop`
never signals a recycled PID that now belongs to somebody else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import httpx


class StartError(RuntimeError):
    pass


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 22 (starttime), counted after the ')' that ends the command name
    return stat.rsplit(")", 1)[1].split()[19]


def start(
    name: str,
    argv: Sequence[str],
    *,
    run_dir: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` in its own session, output to ``log_path``; return the PID."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    (run_dir / f"{name}.pid").write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
    return proc.pid


def running(name: str, run_dir: Path) -> int | None:
    """The PID of ``name`` if the process we started is still alive."""
    pidfile = run_dir / f"{name}.pid"
    try:
        pid_text, started = pidfile.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if _start_time(pid) != started:
        return None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return None if state == "Z" else pid


def stop(name: str, run_dir: Path, timeout: float = 15.0) -> bool:
    """SIGTERM the process group we started, SIGKILL after ``timeout``; True if it ran."""
    pid = running(name, run_dir)
    pidfile = run_dir / f"{name}.pid"
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while running(name, run_dir) is not None and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if running(name, run_dir) is not None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(pid)
    pidfile.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll ``check`` until it is true; fail early if ``alive`` says the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if alive is not None and not alive():
            raise StartError(f"{what} exited while starting{_tail(log_path)}")
        time.sleep(0.2)
    raise StartError(f"{what} did not become ready within {timeout:.0f} s{_tail(log_path)}")


def _tail(log_path: Path | None, lines: int = 15) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return f"; last lines of {log_path}:\n    " + "\n    ".join(text)


def http_ok(url: str, expect: Callable[[httpx.Response], bool] | None = None) -> Callable[[], bool]:
    def check() -> bool:
        try:
            response = httpx.get(url, timeout=2.0)
        except httpx.HTTPError:
            return False
        return expect(response) if expect else response.status_code < 500

    return check


def serve(
    name: str,
    argv: Sequence[str],
    *,
    ready_url: str,
    what: str,
    run_dir: Path,
    log_path: Path,
    ready: Callable[[httpx.Response], bool] | None = None,
    timeout: float = 90,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start a server process and wait until ``ready_url`` answers (``ready``, default:
    any status below 500); a server that dies or never answers is stopped again and the
    error carries its log's last lines.  Returns the PID."""
    pid = start(name, argv, run_dir=run_dir, log_path=log_path, env=env, cwd=cwd)
    try:
        wait_until(
            http_ok(ready_url, ready),
            timeout=timeout,
            what=what,
            alive=lambda: running(name, run_dir) is not None,
            log_path=log_path,
        )
    except BaseException:
        stop(name, run_dir)  # nothing is left running when the start fails
        raise
    return pid


def process_table() -> Iterator[tuple[int, str, str, str]]:
    """``(pid, command line, working folder, executable)`` of every process this user
    may inspect; fields that cannot be read are empty."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = []
        for link in ("cwd", "exe"):
            try:
                fields.append(os.readlink(entry / link))
            except OSError:
                fields.append("")
        yield int(entry.name), cmdline.strip(), fields[0], fields[1]
