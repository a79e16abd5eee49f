"""The hub's record of users' sessions: when each server started and stopped, and the CPU
time and peak memory of its processes.

JupyterHub's database keeps only a server's ``started`` and a user's ``last_activity``,
so the hub-side collector (:mod:`spawner_hooks.usage`) appends one JSON line per event
to ``<state>/usage/sessions.jsonl``:

    {"event": "start",  "session": ID, "user": NAME, "server": "", "t": EPOCH}
    {"event": "sample", "session": ID, "user": NAME, "server": "", "t": EPOCH,
     "cpu_s": SECONDS, "peak_rss": BYTES}
    {"event": "stop",   ... the same fields as "sample"}

On clusters the same lines come from :mod:`spawner_hooks.kube_usage` (the pods' figures
from the kubelets) and live on the hub's volume; the hub serves a course's folded sessions
to the report (``GET /hub/api/lakehub/usage``, :mod:`spawner_hooks.course_usage`) as
:meth:`Session.as_dict` objects.

Nothing sensitive: names, times and two figures.  :func:`sessions` folds the lines back
into one :class:`Session` each (the usage report, :mod:`courses.report`, reads them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from lakehub.contract import SESSIONS_FILE
from sitefile.state import StackPaths


def sessions_file(paths: StackPaths) -> Path:
    return paths.state / "usage" / SESSIONS_FILE


def append(path: Path, record: dict) -> None:
    """Append one record as one line (a single ``write`` on an ``O_APPEND`` file, so
    concurrent writers never interleave inside a line; blocking file I/O)."""
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
    line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_records(path: Path) -> Iterator[dict]:
    """Every well-formed record of the file (a line cut short by a crash is skipped)."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("session"), str):
                yield record


@dataclass
class Session:
    """One run of one server."""

    user: str
    server: str
    start: float
    end: float | None  # None: no stop recorded (still running, or the hub died)
    last_seen: float  # the latest record of this session
    cpu_s: float = 0.0
    peak_rss: int = 0

    def hours(self, since: float | None, now: float, running: bool) -> float:
        """Hours of this session after ``since``; an unfinished one counts until ``now``
        if its server is running, else until it was last seen."""
        end = self.end if self.end is not None else (now if running else self.last_seen)
        start = self.start if since is None else max(self.start, since)
        return max(0.0, end - start) / 3600

    def as_dict(self) -> dict:
        """The session as JSON (what the hub's usage endpoint sends)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Session:
        """A session the hub sent; ValueError names the first field that is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"a session is a JSON object, not {type(data).__name__}")
        try:
            end = data.get("end")
            return cls(
                user=str(data["user"]),
                server=str(data.get("server", "")),
                start=float(data["start"]),
                end=None if end is None else float(end),
                last_seen=float(data.get("last_seen", data["start"])),
                cpu_s=float(data.get("cpu_s", 0.0)),
                peak_rss=int(data.get("peak_rss", 0)),
            )
        except KeyError as exc:
            raise ValueError(f"a session without {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a session with a wrong field: {exc}") from None


def sessions(records: Iterable[dict]) -> list[Session]:
    """Fold records into sessions, in order of their start."""
    found: dict[str, Session] = {}
    for r in records:
        try:
            t = float(r["t"])
            key, event = r["session"], r.get("event")
            if event == "start":
                found[key] = Session(str(r["user"]), str(r.get("server", "")), t, None, t)
                continue
            s = found.get(key)
            if s is None:
                continue
            s.last_seen = max(s.last_seen, t)
            s.cpu_s = max(s.cpu_s, float(r.get("cpu_s", 0.0)))
            s.peak_rss = max(s.peak_rss, int(r.get("peak_rss", 0)))
            if event == "stop":
                s.end = t
        except (KeyError, TypeError, ValueError):
            continue  # a record of another shape: not ours to judge
    return sorted(found.values(), key=lambda s: s.start)
