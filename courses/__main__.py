"""`make push-notebooks` and `make course-status`.

    python -m courses push --course NAME [--site SITE] [--from FOLDER]
    python -m courses status [--site SITE]

A site with a ``local:`` section publishes into the local stack's mirrors
(:mod:`courses.local`); a cluster site pushes to the course's git remote and asks the
running servers (:mod:`courses.cluster`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from courses.git import CourseError
from courses.local import push, status_text
from sitefile import SiteError, load_site
from sitefile.state import StackPaths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m courses", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["push", "status"])
    parser.add_argument("--course", help="name of the course in the site file (push)")
    parser.add_argument("--site", type=Path, default=Path("examples/site.local.yaml"))
    parser.add_argument("--from", dest="folder", type=Path, help="clusters: push this folder")
    args = parser.parse_args(argv)
    paths = StackPaths.default()
    try:
        site = load_site(args.site)
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
    except CourseError as exc:
        print(f"lakehub: {exc}", file=sys.stderr)
        return 1


raise SystemExit(main())
