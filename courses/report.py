"""`make course-report`: a course's usage, student by student, as one HTML page with plots
and a CSV with one row per student.

    python -m courses report --course NAME|all [--since YYYY-MM-DD] [--site SITE]
                             [--token-file FILE] [--out FOLDER]

Who may run it is decided by the hub: the token's owner (``GET /hub/api/user``) must be a
hub admin, or, for one course, a member of its instructors' group
(``course-<name>-instructors``); ``all`` is for admins.  Locally the token defaults to the
stack's own admin token.

Where each figure comes from (nothing beyond what the hub and the cache service keep):

* the students: the hub group ``course-<name>`` (every hub user for a course whose
  ``students`` is ``everyone``); last activity and whether a server runs: the hub's users;
* server hours, sessions per day, CPU time and peak memory: the hub's sessions record
  (:mod:`courses.usage`, written by :mod:`spawner_hooks.usage` locally and by
  :mod:`spawner_hooks.kube_usage` from the kubelets on clusters, where the hub serves a
  course's sessions at ``GET /hub/api/lakehub/usage?course=<name>``);
* bytes read through the shared cache, per dataset: the cache service's ledger
  (``GET /services/lakehub-cache/api/usage``);
* the course revision a student has: the hub's revisions record (:mod:`courses.local`);
* edits to course files: ``git diff --name-only <revision>`` plus untracked files in the
  student's course folder, run as the student (the folder is theirs; git is never run as
  root inside it).

Gathering is plain blocking I/O (a command line); :func:`build` and the renderers are pure
so the benchmark times them on synthetic records.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from courses.git import branch_tip, revision_number
from courses.local import mirror, read_revisions, revisions_file
from courses.usage import Session, read_records, sessions, sessions_file
from lakehub.contract import (
    CACHE_SERVICE,
    CACHE_USAGE_PATH,
    COURSE_USAGE_API,
    course_group,
    instructors_group,
    service_prefix,
)
from lakehub.files import atomic_write
from sitefile import Course, Site
from sitefile.state import StackPaths

DAY = 86400


class ReportError(RuntimeError):
    """Something the person running the report must fix; the message says what."""


class Refused(ReportError):
    """The token's owner may not see this report."""


# --- who asks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    admin: bool
    groups: frozenset[str]


def caller_from_model(model: Mapping) -> Caller:
    """The owner of a token from the hub's ``GET /api/user`` answer (a user or a
    service; a service counts as admin when its token may administer users)."""
    scopes = set(model.get("scopes") or [])
    admin = bool(model.get("admin")) or "admin:users" in scopes
    return Caller(str(model.get("name", "?")), admin, frozenset(model.get("groups") or []))


def allowed_courses(caller: Caller, names: Sequence[str], requested: str) -> list[str]:
    """The courses ``caller`` may see when asking for ``requested`` (a name or ``all``)."""
    if requested == "all":
        if not caller.admin:
            raise Refused(
                f"{caller.name} may not build the report of every course (COURSE=all):"
                " only hub admins may; ask for your own course with COURSE=<name>"
            )
        return list(names)
    if requested not in names:
        known = ", ".join(names) or "none in the site file"
        raise ReportError(f"COURSE={requested}: no such course (courses: {known})")
    if caller.admin or instructors_group(requested) in caller.groups:
        return [requested]
    raise Refused(
        f"{caller.name} may not see the report of course {requested}: only its instructors"
        f" (hub group {instructors_group(requested)}) and hub admins may"
    )


# --- the figures, student by student --------------------------------------------------------


@dataclass
class Inputs:
    """Everything :func:`build` needs for one course, already gathered."""

    students: list[str]
    users: dict[str, dict] = field(default_factory=dict)  # hub user models
    sessions: list[Session] = field(default_factory=list)
    cache: dict[str, dict[str, dict]] = field(default_factory=dict)  # user -> DID -> counts
    revisions: dict[str, dict] = field(default_factory=dict)  # user -> {"revision", ...}
    numbers: dict[str, int | None] = field(default_factory=dict)  # sha -> revision number
    latest: str | None = None  # the course's published revision
    # the files edited (locally), or only how many (a pod's report); None: unknown
    edits: dict[str, list[str] | int | None] = field(default_factory=dict)
    recorded: bool = True  # False where the hub keeps no sessions record


@dataclass
class Row:
    student: str
    hours: float
    sessions: int
    running: bool
    last_activity: float | None
    cpu_s: float
    peak_rss: int
    cache_bytes: int
    datasets: dict[str, int]
    revision: str | None
    revision_number: int | None
    up_to_date: bool | None
    edited: int | None  # course files changed or added; None: unknown
    edited_files: list[str] = field(default_factory=list)  # their names, where known


@dataclass
class CourseReport:
    course: str
    since: float | None
    now: float
    rows: list[Row]
    days: list[dt.date]
    per_day: list[list[int]]  # sessions started, one list per row, one number per day
    recorded: bool

    @property
    def datasets(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            for did, n in row.datasets.items():
                out[did] = out.get(did, 0) + n
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def totals(self) -> dict:
        rows = self.rows
        return {
            "students": len(rows),
            "active students": sum(1 for r in rows if r.sessions),
            "server hours": round(sum(r.hours for r in rows), 2),
            "sessions": sum(r.sessions for r in rows),
            "CPU hours": round(sum(r.cpu_s for r in rows) / 3600, 2),
            "cache bytes": sum(r.cache_bytes for r in rows),
            "on the latest revision": sum(1 for r in rows if r.up_to_date),
            "students with edits": sum(1 for r in rows if r.edited),
        }


def _iso_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _day(t: float) -> dt.date:
    return dt.datetime.fromtimestamp(t, dt.UTC).date()


MAX_DAYS = 366


def _edits(found: list[str] | int | None) -> dict:
    if isinstance(found, int):
        return {"edited": found}
    return {"edited": None if found is None else len(found), "edited_files": list(found or [])}


def build(course: str, inputs: Inputs, since: float | None, now: float) -> CourseReport:
    """The report of one course (pure)."""
    wanted = set(inputs.students)
    mine: dict[str, list[Session]] = {s: [] for s in inputs.students}
    for s in inputs.sessions:
        if s.user in wanted:
            end = s.end if s.end is not None else s.last_seen
            if since is None or max(end, s.start) > since:
                mine[s.user].append(s)
    first = min((s.start for ss in mine.values() for s in ss), default=now)
    start_day = _day(since) if since is not None else _day(first)
    last_day = _day(now)
    days = [start_day + dt.timedelta(d) for d in range((last_day - start_day).days + 1)]
    days = days[-MAX_DAYS:]
    index = {d: i for i, d in enumerate(days)}
    rows, per_day = [], []
    for name in sorted(inputs.students):
        model = inputs.users.get(name, {})
        server = (model.get("servers") or {}).get("") or {}
        running = bool(server.get("ready"))
        ss = mine[name]
        counts = [0] * len(days)
        for s in ss:
            i = index.get(_day(max(s.start, since or s.start)))
            if i is not None:
                counts[i] += 1
        per_day.append(counts)
        last = _iso_time(model.get("last_activity"))
        if last is None and ss:
            last = max((s.end or s.last_seen) for s in ss)
        used = inputs.cache.get(name, {})
        pulled = inputs.revisions.get(name) or {}
        sha = pulled.get("revision") if isinstance(pulled, dict) else None
        rows.append(
            Row(
                student=name,
                hours=sum(s.hours(since, now, running and s.end is None) for s in ss),
                sessions=len(ss),
                running=running,
                last_activity=last,
                cpu_s=sum(s.cpu_s for s in ss),
                peak_rss=max((s.peak_rss for s in ss), default=0),
                cache_bytes=sum(int(e.get("bytes", 0)) for e in used.values()),
                datasets={d: int(e.get("bytes", 0)) for d, e in sorted(used.items())},
                revision=sha,
                revision_number=inputs.numbers.get(sha) if sha else None,
                up_to_date=(sha == inputs.latest) if sha and inputs.latest else None,
                **_edits(inputs.edits.get(name)),
            )
        )
    return CourseReport(course, since, now, rows, days, per_day, inputs.recorded)


# --- CSV -------------------------------------------------------------------------------------

CSV_FIELDS = [
    "course",
    "student",
    "server_hours",
    "sessions",
    "running",
    "last_activity",
    "cpu_seconds",
    "peak_memory_bytes",
    "cache_bytes",
    "datasets",
    "revision",
    "revision_number",
    "up_to_date",
    "edited_files",
]


def _when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M") if t else ""


def render_csv(report: CourseReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in report.rows:
        writer.writerow(
            {
                "course": report.course,
                "student": r.student,
                "server_hours": f"{r.hours:.4f}",
                "sessions": r.sessions,
                "running": "yes" if r.running else "no",
                "last_activity": _when(r.last_activity),
                "cpu_seconds": f"{r.cpu_s:.1f}",
                "peak_memory_bytes": r.peak_rss,
                "cache_bytes": r.cache_bytes,
                "datasets": " ".join(r.datasets),
                "revision": r.revision or "",
                "revision_number": "" if r.revision_number is None else r.revision_number,
                "up_to_date": {True: "yes", False: "no", None: ""}[r.up_to_date],
                "edited_files": "" if r.edited is None else r.edited,
            }
        )
    return out.getvalue()


# --- plots (matplotlib, SVG inlined as data: URIs so the page is one file) -------------------

HOURS_TITLE = "Server hours per student"
ACTIVITY_TITLE = "Sessions per day"
CACHE_TITLE = "Cache bytes per dataset"
LABEL_LIMIT = 60  # beyond this many students, the axes carry no names


def _svg(fig) -> str:
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "lakehub"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_hours(report: CourseReport) -> str:
    names = [r.student for r in report.rows]
    fig = _figure(max(6.0, min(16.0, 0.25 * len(names) + 2)), 3.6)
    ax = fig.add_subplot()
    ax.set_title(HOURS_TITLE)
    if not report.recorded:
        _empty(ax, "not recorded on this site (no sessions record)")
    elif names:
        ax.bar(range(len(names)), [r.hours for r in report.rows], color="#3b75af")
        ax.set_ylabel("hours")
        if len(names) <= LABEL_LIMIT:
            ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        else:
            ax.set_xticks([])
            ax.set_xlabel(f"{len(names)} students, alphabetical")
    else:
        _empty(ax, "no students in this course")
    return _svg(fig)


def plot_activity(report: CourseReport) -> str:
    n, days = len(report.rows), report.days
    fig = _figure(max(6.0, min(16.0, 0.22 * len(days) + 3)), max(2.6, min(14.0, 0.16 * n + 1.6)))
    ax = fig.add_subplot()
    ax.set_title(ACTIVITY_TITLE)
    if n and days and report.recorded:
        image = ax.imshow(report.per_day, aspect="auto", cmap="Greens", interpolation="nearest")
        from matplotlib.ticker import MaxNLocator

        bar = fig.colorbar(image, ax=ax, label="sessions started", shrink=0.8)
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
        step = max(1, len(days) // 12)
        ax.set_xticks(
            range(0, len(days), step), [d.strftime("%m-%d") for d in days[::step]], fontsize=8
        )
        if n <= LABEL_LIMIT:
            ax.set_yticks(range(n), [r.student for r in report.rows], fontsize=8)
        else:
            ax.set_yticks([])
            ax.set_ylabel(f"{n} students")
        ax.set_xlabel("day (UTC)")
    else:
        _empty(ax, "no sessions recorded" if report.recorded else "not recorded on this site")
    return _svg(fig)


BYTE_SCALES = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (0, "bytes")]


def plot_cache(report: CourseReport) -> str:
    datasets = report.datasets
    fig = _figure(7.0, max(2.4, 0.4 * len(datasets) + 1.4))
    ax = fig.add_subplot()
    ax.set_title(CACHE_TITLE)
    if datasets:
        names = list(datasets)[::-1]
        scale, unit = next((s, u) for s, u in BYTE_SCALES if max(datasets.values()) >= s)
        ax.barh(names, [datasets[d] / scale for d in names], color="#d0812b")
        ax.set_xlabel(f"{unit} read by this course's students")
        ax.tick_params(axis="y", labelsize=8)
    else:
        _empty(ax, "nothing read through the cache yet")
    return _svg(fig)


# --- HTML ------------------------------------------------------------------------------------


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #555; margin-top: 0; }
.totals { display: flex; flex-wrap: wrap; gap: 0.8em; padding: 0; }
.totals li { list-style: none; background: #f1f4f8; border-radius: 6px; padding: 0.5em 0.9em; }
.totals b { display: block; font-size: 1.3em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.5em; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
"""


def _cell(text: object, css: str = "", title: str = "") -> str:
    attrs = f' class="{css}"' if css else ""
    attrs += f' title="{html.escape(title)}"' if title else ""
    return f"<td{attrs}>{html.escape(str(text))}</td>"


def _row_html(r: Row) -> str:
    revision = "" if r.revision is None else (r.revision[:7])
    if r.revision_number is not None:
        revision = f"{r.revision_number} ({revision})"
    state = {True: "latest", False: "behind", None: ""}[r.up_to_date]
    # "?": pulled, but the folder could not be read; empty: nothing pulled yet
    edited = "" if r.revision is None else "?" if r.edited is None else str(r.edited)
    return (
        "<tr>"
        + "".join(
            [
                _cell(r.student, "student"),
                _cell(f"{r.hours:.2f}"),
                _cell(r.sessions),
                _cell(_when(r.last_activity) + (" (running)" if r.running else "")),
                _cell(f"{r.cpu_s / 60:.1f}"),
                _cell(human_bytes(r.peak_rss) if r.peak_rss else ""),
                _cell(human_bytes(r.cache_bytes) if r.cache_bytes else ""),
                _cell(", ".join(r.datasets), "text"),
                _cell(f"{revision} {state}".strip(), "text"),
                _cell(edited, title="\n".join(r.edited_files)),
            ]
        )
        + "</tr>"
    )


HEADERS = [
    "student",
    "server hours",
    "sessions",
    "last activity (UTC)",
    "CPU minutes",
    "peak memory",
    "cache bytes",
    "datasets read",
    "course revision",
    "edited files",
]


def render_html(report: CourseReport, generated_by: str = "") -> str:
    totals = report.totals()
    shown = {**totals, "cache bytes": human_bytes(totals["cache bytes"])}
    period = f"since {_when(report.since)[:10]}" if report.since else "all recorded activity"
    figures = [
        (HOURS_TITLE, plot_hours(report), "how long each student's server ran"),
        (ACTIVITY_TITLE, plot_activity(report), "servers started per student and day (UTC)"),
        (CACHE_TITLE, plot_cache(report), "what the shared cache served this course's students"),
    ]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Usage report: course {html.escape(report.course)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Usage report: course {html.escape(report.course)}</h1>",
        f'<p class="meta">{html.escape(period)}; generated {_when(report.now)} UTC'
        + (f" by {html.escape(generated_by)}" if generated_by else "")
        + "</p>",
        '<ul class="totals">'
        + "".join(
            f"<li><b>{html.escape(str(v))}</b>{html.escape(k)}</li>" for k, v in shown.items()
        )
        + "</ul>",
    ]
    if not report.recorded:
        parts.append(
            "<p>Server hours, CPU time and memory are not recorded on this site: its hub"
            " keeps no sessions record (yet).</p>"
        )
    for title, data, caption in figures:
        alt = html.escape(title)
        parts.append(
            f'<figure><img alt="{alt}" title="{alt}" src="data:image/svg+xml;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append('<table id="students"><thead><tr>')
    parts.append("".join(f"<th>{html.escape(h)}</th>" for h in HEADERS))
    parts.append("</tr></thead><tbody>")
    parts += [_row_html(r) for r in report.rows]
    parts.append("</tbody></table></body></html>")
    return "\n".join(parts)


# --- gathering (blocking I/O) ---------------------------------------------------------------


class Hub:
    """The hub's REST API with the report's token."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"token {token}"}, timeout=30
        )

    def get(self, path: str, **params) -> httpx.Response:
        try:
            return self.http.get(path, params=params or None)
        except httpx.HTTPError as exc:
            raise ReportError(f"cannot reach the hub at {self.url}: {exc}") from None

    def caller(self) -> Caller:
        r = self.get("/hub/api/user")
        if r.status_code in (401, 403):
            raise Refused(f"the hub does not accept this token (HTTP {r.status_code})")
        r.raise_for_status()
        return caller_from_model(r.json())

    def students(self, course: Course) -> list[str]:
        """The course's students: its hub group, or every user for an ``everyone``
        course (as many as the token may list)."""
        if course.students == "everyone":
            r = self.get("/hub/api/users")
            if r.status_code == 200:
                return sorted(u["name"] for u in r.json())
        else:
            r = self.get(f"/hub/api/groups/{quote(course_group(course.name), safe='')}")
            if r.status_code == 200:
                return sorted(r.json().get("users", []))
            if r.status_code == 404:
                return []
            r = self.get("/hub/api/users")  # an instructor may list the users but not the group
            if r.status_code == 200:
                group = course_group(course.name)
                return sorted(u["name"] for u in r.json() if group in (u.get("groups") or []))
        raise ReportError(
            f"the hub did not list course {course.name}'s students (HTTP {r.status_code})"
        )

    def user(self, name: str) -> dict:
        r = self.get(f"/hub/api/users/{quote(name, safe='')}")
        return r.json() if r.status_code == 200 else {}

    def sessions(self, course: str) -> tuple[bool, list[Session]]:
        """(whether the hub keeps a record, the course's sessions) from the hub's usage
        endpoint (a hub without it: not recorded)."""
        r = self.get(f"/hub/api/{COURSE_USAGE_API}", course=course)
        if r.status_code == 404:
            return False, []
        if r.status_code != 200:
            try:
                why = r.json().get("message") or r.text[:200]
            except ValueError:
                why = r.text[:200]
            raise ReportError(f"the hub did not give course {course}'s sessions: {why}")
        try:
            body = r.json()
            return bool(body.get("recorded")), [Session.from_dict(s) for s in body["sessions"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ReportError(
                f"the hub's sessions of course {course} are malformed: {exc}"
            ) from None

    def cache_usage(self, course: str, admin: bool) -> dict[str, dict]:
        path = f"{service_prefix(CACHE_SERVICE)}/{CACHE_USAGE_PATH}"
        r = self.get(path, **({} if admin else {"course": course}))
        if r.status_code != 200:
            raise ReportError(
                f"the cache service did not give its usage (HTTP {r.status_code}): {r.text[:200]}"
            )
        return r.json().get("users", {})


def course_edits(home: Path, folder: str, revision: str) -> list[str] | None:
    """Course files in ``home/folder`` that differ from ``revision``, and files the student
    added there; None when it cannot be told.  git runs as the folder's owner (possible
    when this runs as root or as that owner), so nothing in the student's repository
    runs with anyone else's rights."""
    repo = home / folder
    try:
        owner = repo.stat()
    except OSError:
        return None
    if not (repo / ".git").exists():
        return None
    who: dict = {}
    if owner.st_uid != os.geteuid():
        if os.geteuid() != 0:
            return None
        who = {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": []}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    found: list[str] = []
    for args in (
        ["diff", "--name-only", revision, "--"],
        ["ls-files", "--others", "--exclude-standard"],
    ):
        done = subprocess.run(  # noqa: S603  (fixed git arguments, the student's own rights)
            ["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=60, **who
        )
        if done.returncode != 0:
            return None
        found += done.stdout.splitlines()
    return sorted(set(found))


def gather_local(hub: Hub, caller: Caller, site: Site, paths: StackPaths, course: Course) -> Inputs:
    students = hub.students(course)
    revisions = read_revisions(revisions_file(paths)).get(course.name, {})
    repo = mirror(paths, course.name)
    latest = branch_tip(repo, course.branch) if (repo / "HEAD").exists() else None
    shas = {e.get("revision") for e in revisions.values() if isinstance(e, dict)}
    numbers = {sha: revision_number(repo, sha) for sha in shas if sha and latest}
    edits = {}
    for name in students:
        sha = (revisions.get(name) or {}).get("revision")
        edits[name] = course_edits(paths.homes / name, course.target, sha) if sha else None
    return Inputs(
        students=students,
        users={name: hub.user(name) for name in students},
        sessions=sessions(read_records(sessions_file(paths))),
        cache=hub.cache_usage(course.name, caller.admin),
        revisions={u: e for u, e in revisions.items() if u in set(students)},
        numbers=numbers,
        latest=latest,
        edits=edits,
    )


def gather_cluster(hub: Hub, token: str, caller: Caller, course: Course) -> Inputs:
    """A cluster's figures: the sessions from the hub's record (the pods' hours, CPU time
    and memory, collected from the kubelets), the revision and the number of edited
    files from each running server (as `make course-status` asks them), the latest
    revision from the course's remote."""
    import asyncio

    from courses.cluster import publish, server_reports
    from courses.git import CourseError

    students = hub.students(course)
    wanted = set(students)
    recorded, found = hub.sessions(course.name)
    revisions: dict[str, dict] = {}
    edits: dict[str, list[str] | int | None] = {}
    for server in asyncio.run(server_reports(hub.url, token)):
        state = server.revisions.get(course.name) or {}
        if server.user in wanted and server.server == "" and state.get("revision"):
            revisions[server.user] = {"revision": state["revision"]}
            edits[server.user] = int(state.get("edited") or 0)
    try:
        published = publish(course, None)
        latest, numbers = published.revision, {published.revision: published.number}
    except CourseError:
        latest, numbers = None, {}
    return Inputs(
        students=students,
        users={name: hub.user(name) for name in students},
        sessions=found,
        cache=hub.cache_usage(course.name, caller.admin),
        revisions=revisions,
        numbers=numbers,
        latest=latest,
        edits=edits,
        recorded=recorded,
    )


def parse_since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ReportError(f"SINCE={text}: expected a date written YYYY-MM-DD") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def write_report(report: CourseReport, out: Path, generated_by: str = "") -> list[Path]:
    """``course-report-<name>.html`` and ``.csv`` in ``out`` (atomic writes)."""
    out.mkdir(parents=True, exist_ok=True)
    page = out / f"course-report-{report.course}.html"
    table = out / f"course-report-{report.course}.csv"
    atomic_write(page, render_html(report, generated_by), 0o600)
    atomic_write(table, render_csv(report), 0o600)
    return [page, table]


def run(
    site: Site,
    paths: StackPaths,
    requested: str,
    token: str,
    *,
    since: str | None = None,
    out: Path = Path("."),
    hub_url: str | None = None,
) -> list[Path]:
    """Build and write the reports ``token``'s owner asked for and may see."""
    start = parse_since(since)
    if site.local is not None:
        hub_url = hub_url or f"http://127.0.0.1:{site.local.hub_port}"
    else:
        hub_url = hub_url or str(getattr(site.kubernetes, "public_url", "") or "")
    if not hub_url:
        raise ReportError("the site names no kubernetes.public_url; give the hub's URL")
    hub = Hub(hub_url, token)
    caller = hub.caller()
    by_name = {c.name: c for c in site.courses}
    written: list[Path] = []
    for name in allowed_courses(caller, list(by_name), requested):
        if site.local is not None:
            inputs = gather_local(hub, caller, site, paths, by_name[name])
        else:
            inputs = gather_cluster(hub, token, caller, by_name[name])
        report = build(name, inputs, start, time.time())
        written += write_report(report, out, caller.name)
    return written
