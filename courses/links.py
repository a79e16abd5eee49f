"""The link that pulls a course into a student's home and opens it (nbgitpuller)."""

from __future__ import annotations

from urllib.parse import urlencode

from sitefile import Course


def nbgitpuller_link(
    hub_url: str, course: Course, open_path: str | None = None, app: str = "lab"
) -> str:
    """A link that pulls ``course`` into the logged-in student's home and opens it.

    ``/hub/user-redirect/`` sends each student to their own server (starting it if
    needed), where nbgitpuller's extension answers ``git-pull``.
    """
    target = course.target.strip().strip("/")
    urlpath = f"{app}/tree/{target}" + (f"/{open_path.lstrip('/')}" if open_path else "")
    query = urlencode(
        {"repo": course.source, "branch": course.branch, "targetpath": target, "urlpath": urlpath}
    )
    return f"{hub_url.rstrip('/')}/hub/user-redirect/git-pull?{query}"
