"""Course figures.

``course_report_s_200_students``: seconds to build `make course-report` for a course of
200 students with a month of activity: reading the hub's sessions record (JSON lines:
each student 0 to 2 sessions a day of 20 minutes to 3 hours, with the collector's sample
lines every 5 minutes), folding it into sessions, building the rows, drawing the three
plots and writing the HTML and CSV.  Goal: < 10 s.

What stands in for what: the records are synthesized (no real servers ran); the hub's
user models, the cache's ledger (2 to 4 datasets per student), the revisions record and
each student's edited files are synthesized in memory, so the hub REST calls and the
``git diff`` per student are not part of the time.  The value is the median of
``--course-report-rounds`` runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import IO

from benchmarks.common import Family, count, emit, log
from courses.report import Inputs, build, write_report
from courses.usage import read_records, sessions

GOAL_S = 10.0
DAYS = 30
SAMPLE_EVERY = 300
DATASETS = [
    "opendata:demo.GamGam",
    "opendata:demo.2lep",
    "opendata:demo.4lep",
    "opendata:demo.1lep",
]


def synthesize(record: Path, students: int, now: float, rng: random.Random) -> Inputs:
    """A month of activity for ``students``: the sessions record on disk, the rest in
    memory."""
    names = [f"student{i:03d}" for i in range(students)]
    records: list[dict] = []
    for name in names:
        for day in range(DAYS):
            for k in range(rng.choice((0, 0, 1, 1, 2))):
                start = now - (DAYS - day) * 86400 + rng.uniform(8, 20) * 3600
                length = rng.uniform(20 * 60, 3 * 3600)
                base = {"session": f"{name}-{day}-{k}", "user": name, "server": ""}
                records.append({**base, "event": "start", "t": start})
                t, cpu, rss = start, 0.0, 200_000_000
                while t + SAMPLE_EVERY < start + length:
                    t += SAMPLE_EVERY
                    cpu += rng.uniform(5, 120)
                    rss = max(rss, int(rng.uniform(2e8, 3e9)))
                    records.append(
                        {**base, "event": "sample", "t": t, "cpu_s": cpu, "peak_rss": rss}
                    )
                end = {"event": "stop", "t": start + length, "cpu_s": cpu, "peak_rss": rss}
                records.append({**base, **end})
    record.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    log(f"synthesized {len(records)} record lines for {students} students")
    latest = "b" * 40
    return Inputs(
        students=names,
        users={
            n: {"name": n, "last_activity": dt.datetime.fromtimestamp(now, dt.UTC).isoformat()}
            for n in names
        },
        cache={
            n: {
                d: {"bytes": rng.randrange(10**7, 10**9), "fetches": 1, "last": int(now)}
                for d in rng.sample(DATASETS, rng.randint(2, 4))
            }
            for n in names
        },
        revisions={n: {"revision": rng.choice((latest, "a" * 40))} for n in names},
        numbers={latest: 2, "a" * 40: 1},
        latest=latest,
        edits={n: [f"0{i}-exercise.ipynb" for i in range(rng.randint(0, 3))] for n in names},
    )


def one_round(record: Path, inputs: Inputs, out: Path, now: float) -> float:
    began = time.perf_counter()
    inputs.sessions = sessions(read_records(record))
    report = build("bench", inputs, now - DAYS * 86400, now)
    write_report(report, out, "bench")
    return time.perf_counter() - began


def course_report(args: argparse.Namespace, out: IO[str]) -> None:
    rng = random.Random(15)
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="lakehub-bench-report-") as folder:
        record = Path(folder) / "sessions.jsonl"
        inputs = synthesize(record, args.course_report_students, now, rng)
        times = [
            one_round(record, inputs, Path(folder) / "out", now)
            for _ in range(args.course_report_rounds)
        ]
        page = Path(folder) / "out" / "course-report-bench.html"
        size = page.stat().st_size
    emit(
        out,
        "course_report_s_200_students",
        round(statistics.median(times), 3),
        goal=f"< {GOAL_S:.0f} s",
        n=args.course_report_rounds,
        students=args.course_report_students,
        days=DAYS,
        sessions=len(inputs.sessions),
        html_bytes=size,
        runs_s=[round(t, 3) for t in times],
        stands_in=(
            "synthesized sessions record (no servers); hub user models, cache ledger,"
            " revisions and edits in memory (no hub REST calls, no git diff)"
        ),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    count(parser, "--course-report-students", 200, "students of the synthetic course")
    count(parser, "--course-report-rounds", 3, "report builds timed")


FAMILIES = (Family(("course_report_s_200_students",), course_report, add_arguments),)
