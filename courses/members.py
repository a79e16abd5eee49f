"""`make course-members`: add people to a course, or take them out, on a running hub.

    python -m courses.members --course NAME [--instructors] [--add a,b] [--remove c]
                              [--site SITE] [--hub-url URL] [--token-file FILE]

The course's hub group (``course-<name>``, or ``course-<name>-instructors`` with
``--instructors``) changes through the hub's REST API; members added here count as much as
those the site file lists and no login takes them away (:mod:`courses.groups`).  A user
the hub does not know yet is created, as the hub does for the site file's usernames at
start, so a student added before their first login finds the course there.  Without
``--add``/``--remove`` it lists the members.

A site with a ``local:`` section talks to the local stack's hub with its admin token;
on a cluster give ``--hub-url`` (default: ``kubernetes.public_url``) and a token of an
admin (``--token-file`` or ``$JUPYTERHUB_API_TOKEN``) with the scopes ``groups``,
``read:groups``, ``admin:groups`` (a course group nobody joined yet) and ``admin:users``
(users the hub does not know yet).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from courses.cluster import read_token, reported
from courses.git import CourseError, find_course
from lakehub.contract import course_group, instructors_group
from sitefile import Site, load_site
from sitefile.state import StackPaths

SCOPES = ["groups", "read:groups", "admin:groups", "admin:users"]


@dataclass
class Change:
    group: str
    members: list[str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def text(self) -> str:
        done = [f"added {', '.join(self.added)}"] if self.added else []
        done += [f"removed {', '.join(self.removed)}"] if self.removed else []
        names = ", ".join(self.members) or "(nobody)"
        return f"{self.group}: {names}" + (f"  ({'; '.join(done)})" if done else "")


def names(text: str | None) -> list[str]:
    """``a,b, c`` -> ``[a, b, c]`` (empty parts dropped, order kept, no repeats)."""
    return list(dict.fromkeys(n.strip() for n in (text or "").split(",") if n.strip()))


class HubGroups:
    """The few hub API calls this needs (a token that may manage the group)."""

    def __init__(self, hub_url: str, token: str):
        self.api = httpx.Client(
            base_url=f"{hub_url.rstrip('/')}/hub/api",
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )

    def _check(self, r: httpx.Response, what: str) -> httpx.Response:
        if r.status_code == 403:
            raise CourseError(
                f"the hub refused to {what} (HTTP 403): the token needs the scopes"
                f" {', '.join(SCOPES)}"
            )
        if r.is_error:
            raise CourseError(f"the hub could not {what}: HTTP {r.status_code} {r.text[:200]}")
        return r

    def members(self, group: str) -> list[str] | None:
        r = self.api.get(f"/groups/{group}")
        if r.status_code == 404:
            return None
        return sorted(self._check(r, f"read the group {group}").json()["users"])

    def ensure_group(self, group: str) -> None:
        if self.members(group) is None:
            self._check(self.api.post(f"/groups/{group}"), f"create the group {group}")

    def ensure_users(self, users: list[str]) -> None:
        for user in users:
            r = self.api.get(f"/users/{user}")
            if r.status_code == 404:
                self._check(self.api.post(f"/users/{user}"), f"create the user {user}")
            else:
                self._check(r, f"read the user {user}")

    def change(self, group: str, add: list[str], remove: list[str]) -> Change:
        before = self.members(group)
        if before is None and not add:
            return Change(group, [], [], [])
        self.ensure_group(group)
        before = before or []
        if add:
            self.ensure_users(add)
            body = {"users": add}
            self._check(self.api.post(f"/groups/{group}/users", json=body), f"add to {group}")
        gone = [u for u in remove if u in before]
        if gone:
            body = {"users": gone}
            r = self.api.request("DELETE", f"/groups/{group}/users", json=body)
            self._check(r, f"remove from {group}")
        after = self.members(group) or []
        return Change(group, after, [u for u in add if u not in before], gone)

    def close(self) -> None:
        self.api.close()


def hub_access(site: Site, hub_url: str | None, token_file: Path | None) -> tuple[str, str]:
    """Where the hub is and which token to use: the local stack's own, or the given."""
    if site.local is not None and not hub_url:
        paths = StackPaths.default()
        try:
            token = paths.admin_token.read_text().strip()
        except OSError:
            raise CourseError(
                f"no admin token at {paths.admin_token}: is the local stack up (make up)?"
            ) from None
        return f"http://127.0.0.1:{site.local.hub_port}", token
    url = hub_url or str(getattr(site.kubernetes, "public_url", "") or "")
    if not url:
        raise CourseError("--hub-url: the site names no kubernetes.public_url")
    return url, read_token(token_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m courses.members", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--course", required=True, help="name of the course in the site file")
    parser.add_argument("--instructors", action="store_true", help="its instructors' group")
    parser.add_argument("--add", help="usernames, comma-separated")
    parser.add_argument("--remove", help="usernames, comma-separated")
    parser.add_argument("--site", type=Path, default=Path("examples/site.local.yaml"))
    parser.add_argument("--hub-url", help="clusters (default: kubernetes.public_url)")
    parser.add_argument("--token-file", type=Path, help="default: $JUPYTERHUB_API_TOKEN")
    args = parser.parse_args(argv)

    def run() -> int:
        site = load_site(args.site)
        course = find_course(site, args.course)
        group = (instructors_group if args.instructors else course_group)(course.name)
        add, remove = names(args.add), names(args.remove)
        both = sorted(set(add) & set(remove))
        if both:
            raise CourseError(f"both added and removed: {', '.join(both)}")
        hub = HubGroups(*hub_access(site, args.hub_url, args.token_file))
        try:
            print(hub.change(group, add, remove).text())
        finally:
            hub.close()
        return 0

    return reported(run)


if __name__ == "__main__":
    raise SystemExit(main())
