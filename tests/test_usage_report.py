"""The usage report's pure parts: the sessions record, /proc parsing, who may see which
course, the figures per student, the CSV and the cache ledger.  The report against the
real hub and cache service is tests/test_course_report.py."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import os
from types import SimpleNamespace

import pytest

from courses.report import (
    Inputs,
    Refused,
    ReportError,
    allowed_courses,
    build,
    caller_from_model,
    parse_since,
    render_csv,
    render_html,
)
from courses.usage import append, read_records, sessions
from hub_services.cache.usage import UsageLedger
from spawner_hooks.usage import (
    PAGE,
    TICKS,
    ProcStat,
    UsageCollector,
    boot_time,
    parse_stat,
    read_stats,
    tree_figures,
)

DAY0 = dt.datetime(2026, 9, 1, tzinfo=dt.UTC).timestamp()


def test_records_fold_into_sessions_and_a_torn_line_is_skipped(tmp_path):
    path = tmp_path / "usage" / "sessions.jsonl"
    base = {"user": "ada", "server": "", "session": "s1"}
    append(path, {**base, "event": "start", "t": DAY0})
    append(path, {**base, "event": "sample", "t": DAY0 + 300, "cpu_s": 4.0, "peak_rss": 9})
    append(path, {**base, "event": "stop", "t": DAY0 + 3600, "cpu_s": 7.5, "peak_rss": 5})
    with path.open("a") as f:
        f.write('{"event": "start", "t": 1')  # a crash in the middle of a line
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    [s] = sessions(read_records(path))
    assert (s.user, s.start, s.end, s.cpu_s, s.peak_rss) == ("ada", DAY0, DAY0 + 3600, 7.5, 9)
    assert s.hours(None, DAY0 + 10 * 3600, running=False) == 1.0
    assert s.hours(DAY0 + 1800, DAY0 + 10 * 3600, running=False) == 0.5


def test_an_unfinished_session_counts_until_now_only_while_its_server_runs():
    [s] = sessions(
        [
            {"event": "start", "session": "x", "user": "bob", "t": DAY0},
            {"event": "sample", "session": "x", "user": "bob", "t": DAY0 + 1800},
        ]
    )
    assert s.end is None
    assert s.hours(None, DAY0 + 7200, running=True) == 2.0
    assert s.hours(None, DAY0 + 7200, running=False) == 0.5


def test_proc_stat_with_spaces_and_parentheses_in_the_command():
    line = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1 0 0 0 30 12 5 3 20 0 1 0 9 1 77"
    stat = parse_stat(line)
    assert stat == ProcStat(4242, 1, cpu_ticks=30 + 12 + 5 + 3, rss_pages=77, started_ticks=9)


def test_the_tree_sums_a_server_and_its_kernels_but_not_strangers():
    stats = {
        10: ProcStat(10, 1, 100, 1000),  # the server
        11: ProcStat(11, 10, 50, 2000),  # a kernel
        12: ProcStat(12, 11, 5, 10),  # the kernel's child
        20: ProcStat(20, 1, 999, 9999),  # someone else's process
    }
    cpu, rss = tree_figures(stats, 10)
    assert cpu == pytest.approx(155 / TICKS)
    assert rss == 3010 * PAGE
    assert tree_figures(stats, 30) is None


def test_this_process_is_found_in_proc_with_its_own_cpu_time():
    stats = read_stats()
    cpu, rss = tree_figures(stats, os.getpid())
    assert cpu > 0 and rss > 10_000_000


def test_who_may_see_which_course():
    names = ["lab", "summer"]
    admin = caller_from_model(
        {"kind": "service", "name": "lakehub-admin", "scopes": ["admin:users"]}
    )
    teacher = caller_from_model({"name": "t", "admin": False, "groups": ["course-lab-instructors"]})
    student = caller_from_model({"name": "s", "admin": False, "groups": ["course-lab"]})
    assert allowed_courses(admin, names, "all") == names
    assert allowed_courses(teacher, names, "lab") == ["lab"]
    with pytest.raises(Refused, match="t may not see the report of course summer"):
        allowed_courses(teacher, names, "summer")
    with pytest.raises(Refused, match="only hub admins may"):
        allowed_courses(teacher, names, "all")
    with pytest.raises(Refused, match="s may not see the report of course lab"):
        allowed_courses(student, names, "lab")
    with pytest.raises(ReportError, match="COURSE=physics: no such course"):
        allowed_courses(admin, names, "physics")
    assert not caller_from_model({"name": "x", "scopes": ["admin:users!group=g"]}).admin


def test_since_must_be_a_date():
    assert parse_since("2026-09-01") == DAY0
    assert parse_since(None) is None
    with pytest.raises(ReportError, match="SINCE=01/09/2026: expected a date"):
        parse_since("01/09/2026")


def course_inputs() -> Inputs:
    records = []
    for day, (user, hours) in enumerate([("ada", 2), ("ada", 1), ("bob", 3)]):
        start = DAY0 + day * 86400 + 9 * 3600
        key = f"{user}{day}"
        records += [
            {"event": "start", "session": key, "user": user, "t": start},
            {"event": "stop", "session": key, "user": user, "t": start + hours * 3600,
             "cpu_s": 60.0 * hours, "peak_rss": hours * 10**8},
        ]  # fmt: skip
    records.append({"event": "start", "session": "z", "user": "zed", "t": DAY0})  # not a student
    return Inputs(
        students=["bob", "ada", "cy"],
        users={"ada": {"last_activity": "2026-09-02T12:00:00Z", "servers": {}}},
        sessions=sessions(records),
        cache={"ada": {"opendata:demo.GamGam": {"bytes": 5000, "fetches": 1}}},
        revisions={"ada": {"revision": "b" * 40}, "bob": {"revision": "a" * 40}},
        numbers={"b" * 40: 2, "a" * 40: 1},
        latest="b" * 40,
        edits={"ada": ["01-intro.ipynb"], "bob": [], "cy": None},
    )


def test_figures_per_student_and_the_csv():
    report = build("lab", course_inputs(), None, DAY0 + 5 * 86400)
    assert [r.student for r in report.rows] == ["ada", "bob", "cy"]
    ada, bob, cy = report.rows
    assert (ada.hours, ada.sessions, ada.cpu_s, ada.peak_rss) == (3.0, 2, 180.0, 2 * 10**8)
    assert (bob.hours, bob.up_to_date, bob.revision_number) == (3.0, False, 1)
    assert (cy.hours, cy.sessions, cy.revision, cy.edited) == (0, 0, None, None)
    assert ada.last_activity == dt.datetime(2026, 9, 2, 12, tzinfo=dt.UTC).timestamp()
    assert bob.last_activity == DAY0 + 2 * 86400 + 12 * 3600  # from the sessions record
    assert report.days[0] == dt.date(2026, 9, 1) and len(report.days) == 6
    assert report.per_day == [[1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0] * 6]
    assert report.totals()["server hours"] == 6.0
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [r["student"] for r in rows] == ["ada", "bob", "cy"]
    assert rows[0]["cache_bytes"] == "5000" and rows[0]["datasets"] == "opendata:demo.GamGam"
    assert rows[0]["edited_files"] == "1" and rows[2]["edited_files"] == ""
    assert rows[1]["up_to_date"] == "no" and rows[0]["up_to_date"] == "yes"


def test_since_cuts_hours_and_days():
    report = build("lab", course_inputs(), DAY0 + 86400 + 10 * 3600, DAY0 + 3 * 86400)
    ada, bob, _ = report.rows
    assert ada.hours == 0.0 and ada.sessions == 0  # both of ada's sessions ended before
    assert bob.hours == 3.0
    assert report.days[0] == dt.date(2026, 9, 2)


def test_the_html_holds_its_plots_and_escapes_names():
    inputs = course_inputs()
    inputs.students.append("<script>")
    page = render_html(build("lab", inputs, None, DAY0 + 5 * 86400), "admin")
    for title in ("Server hours per student", "Sessions per day", "Cache bytes per dataset"):
        assert f'<img alt="{title}"' in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("data:image/svg+xml;base64,") == 3


def test_the_cache_ledger_counts_saves_and_filters(tmp_path):
    ledger = UsageLedger(tmp_path / "usage.json")
    ledger.load()  # nothing yet
    ledger.count("ada", "opendata:a", 100, now=5)
    ledger.count("ada", "opendata:a", 100, now=6)
    ledger.count("bob", "opendata:b", 7, now=7)
    ledger.save()
    again = UsageLedger(tmp_path / "usage.json")
    again.load()
    assert again.view({"ada"}) == {"ada": {"opendata:a": {"bytes": 200, "fetches": 2, "last": 6}}}
    assert set(again.view()) == {"ada", "bob"}
    assert oct((tmp_path / "usage.json").stat().st_mode & 0o777) == "0o600"
    (tmp_path / "usage.json").write_text("not json")
    broken = UsageLedger(tmp_path / "usage.json")
    broken.load()
    assert broken.view() == {}


def test_the_collector_records_a_servers_start_figures_and_stop(tmp_path):
    """The collector's rounds on a synthetic process table (what /proc would say): the
    start time is the process's own, a reaped kernel's CPU time stays counted (it moved
    into the server's cutime), the peak is the largest tree, and a process that vanished
    without the hub stopping it is recorded as stopped."""
    record = tmp_path / "sessions.jsonl"
    table: dict[int, ProcStat] = {}

    def spawner(user: str) -> SimpleNamespace:
        return SimpleNamespace(user=SimpleNamespace(name=user), name="", pid=0, start_timeout=60)

    async def rounds() -> None:
        collector = UsageCollector(record, every=3600, write_every=0, read=lambda: dict(table))
        ada, bob = spawner("ada"), spawner("bob")
        collector.watch(ada)
        collector.watch(bob)
        await collector.sample_once()  # no process yet: nothing recorded
        assert not record.exists()
        ada.pid, bob.pid = 10, 20
        table.update(
            {
                10: ProcStat(10, 1, 2 * TICKS, 100, started_ticks=50 * TICKS),
                11: ProcStat(11, 10, 1 * TICKS, 400),  # a kernel
                20: ProcStat(20, 1, 1 * TICKS, 10, started_ticks=60 * TICKS),
            }
        )
        await collector.sample_once()
        del table[11], table[20]  # the kernel exits; bob's server dies on its own
        table[10] = ProcStat(10, 1, 3 * TICKS, 120, started_ticks=50 * TICKS)
        await collector.sample_once()
        await collector.stopped(ada)
        assert collector.watching == {}
        collector.sampler.cancel()

    asyncio.run(rounds())
    found = {s.user: s for s in sessions(read_records(record))}
    assert found["ada"].start == boot_time() + 50
    assert (found["ada"].cpu_s, found["ada"].peak_rss) == (3.0, 500 * PAGE)
    assert found["ada"].end is not None
    assert found["bob"].end is not None and found["bob"].cpu_s == 1.0
