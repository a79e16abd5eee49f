"""`make push-notebooks`, `make course-status` and `make course-report`.

    python -m courses push --course NAME [--site SITE] [--from FOLDER]
    python -m courses status [--site SITE]
    python -m courses report --course NAME|all [--since YYYY-MM-DD] [--token-file F] [--out D]

A site with a ``local:`` section publishes into the local stack's mirrors
(:mod:`courses.local`); a cluster site pushes to the course's git remote and asks the
running servers (:mod:`courses.cluster`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from courses.git import CourseError
from courses.local import push, status_text
from courses.report import ReportError, parse_since, run
from sitefile import SiteError, load_site
from sitefile.state import StackPaths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m courses", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["push", "status", "report"])
    parser.add_argument("--course", help="name of the course in the site file (push)")
    parser.add_argument("--site", type=Path, default=Path("examples/site.local.yaml"))
    parser.add_argument("--from", dest="folder", type=Path, help="clusters: push this folder")
    parser.add_argument("--since", help="report: count activity from this day (YYYY-MM-DD)")
    parser.add_argument("--token-file", type=Path, help="report: default $JUPYTERHUB_API_TOKEN")
    parser.add_argument("--out", type=Path, default=Path("."), help="report: where to write")
    parser.add_argument("--hub-url", help="report on clusters: default kubernetes.public_url")
    args = parser.parse_args(argv)
    paths = StackPaths.default()
    try:
        site = load_site(args.site)
        if args.command == "report":
            return report_command(site, paths, args)
        if site.local is None:  # a cluster site: the course remotes and the running pods
            from courses import cluster

            forward = [args.command, "--site", str(args.site)]
            forward += ["--course", args.course] if args.course else []
            forward += ["--from", str(args.folder)] if args.folder else []
            return cluster.main(forward)
        if args.folder:
            print(
                "lakehub: FROM= is for cluster sites; here the course's source folder"
                " in the site file is what gets published",
                file=sys.stderr,
            )
            return 2
        if args.command == "status":
            print(status_text(site, paths))
            return 0
        if not args.course:
            names = ", ".join(c.name for c in site.courses) or "none in the site file"
            print(f"usage: make push-notebooks COURSE=<name>  (courses: {names})", file=sys.stderr)
            return 2
        print(push(site, paths, args.course).text())
        return 0
    except SiteError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (CourseError, ReportError) as exc:
        print(f"lakehub: {exc}", file=sys.stderr)
        return 1


def report_command(site, paths: StackPaths, args) -> int:
    parse_since(args.since)  # a bad date is reported before anything else
    if not args.course:
        names = ", ".join(c.name for c in site.courses) or "none in the site file"
        print(f"usage: make course-report COURSE=<name>|all  (courses: {names})", file=sys.stderr)
        return 2
    if args.token_file is not None:
        from courses.cluster import read_token

        token = read_token(args.token_file)
    else:  # an instructor's own token, else the local stack's admin token
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "").strip()
        if not token and paths.admin_token.exists():
            token = paths.admin_token.read_text().strip()
    if not token:
        raise ReportError("no hub token: set JUPYTERHUB_API_TOKEN or give TOKEN_FILE=")
    written = run(
        site, paths, args.course, token, since=args.since, out=args.out, hub_url=args.hub_url
    )
    if not written:
        print("no courses in the site file (add a courses: list; see docs/instructors.md)")
    for path in written:
        print(f"==> wrote {path}")
    return 0


raise SystemExit(main())
