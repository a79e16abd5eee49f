"""Reading a site file: one loader for every reader (the local stack, `make check-site`,
the z2jh values renderer, the hub on Kubernetes, the cache warm-up).

:func:`read` returns the validated :class:`~sitefile.model.Site` and the file as parsed
YAML (the values renderer puts the latter into the site ConfigMap, so the hub reads
exactly what the sysadmin wrote); :func:`load_site` returns the site only.  Bad input is
a :class:`~sitefile.model.SiteError` naming each field, never a traceback.

The model (:func:`~sitefile.model.parse_site`) never touches the disk; the files and
folders a local site names are checked here, once their paths are resolved: the CA
bundles, the notebooks and course folders this machine reads, and whether the cache quota
fits the file system that holds the cache.  A cluster site's hub reads none of them
(the images carry the notebooks; ``hub_config.values`` refuses CA paths and course
folders), so they are not checked for it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import yaml

from sitefile.model import Site, SiteError, parse_site
from sitefile.state import StackPaths


def read(path: str | os.PathLike[str]) -> tuple[Site, dict]:
    """Read, validate and resolve a site file; also return the parsed YAML.

    Relative paths inside the file (notebooks.source, course folders, cache.path, rucio
    ca_cert) are resolved against the folder holding the site file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SiteError(str(path), ["the file does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteError(str(path), [f"cannot read the file: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SiteError(str(path), [f"{where}not valid YAML ({problem})"]) from None
    site = resolve_paths(parse_site(data, str(path)), path.parent.resolve())
    problems = file_problems(site)
    if problems:
        raise SiteError(str(path), problems)
    return site, data


def load_site(path: str | os.PathLike[str]) -> Site:
    """Read, validate and resolve a site file (see :func:`read`)."""
    return read(path)[0]


def resolve_paths(site: Site, base: Path) -> Site:
    """Return a copy of ``site`` whose relative paths are anchored at ``base``."""

    def anchor(p: Path | None) -> Path | None:
        if p is None:
            return None
        return p if p.is_absolute() else (base / p).resolve()

    instances = [i.model_copy(update={"ca_cert": anchor(i.ca_cert)}) for i in site.rucio.instances]
    return site.model_copy(
        update={
            "rucio": site.rucio.model_copy(update={"instances": instances}),
            "notebooks": site.notebooks.model_copy(
                update={"source": anchor(site.notebooks.source)}
            ),
            "cache": site.cache.model_copy(update={"path": anchor(site.cache.path)}),
            "courses": [
                c if c.is_git_url else c.model_copy(update={"source": str(anchor(Path(c.source)))})
                for c in site.courses
            ],
        }
    )


def _named(where: str, path: Path, folder: bool) -> list[str]:
    """A folder this process can list, or a file it can read that holds a PEM
    certificate (the only kind of file a site names: CA bundles)."""
    kind, other = ("folder", "file") if folder else ("file", "folder")
    try:
        if not path.exists():
            return [f"{where}: the {kind} {str(path)!r} does not exist; create it or name another"]
        if path.is_dir() != folder:
            return [f"{where}: {str(path)!r} is a {other}, not a {kind}; name the {kind} itself"]
        if folder:
            os.listdir(path)
            return []
        with path.open("rb") as f:
            head = f.read(1_000_000)
    except OSError as exc:
        return [
            f"{where}: {str(path)!r} cannot be read ({exc.strerror}); fix its permissions or"
            " name another"
        ]
    if b"-----BEGIN CERTIFICATE-----" not in head:
        return [
            f"{where}: {str(path)!r} holds no PEM certificate ('-----BEGIN CERTIFICATE-----');"
            " name the CA bundle in PEM form"
        ]
    return []


def _cache_fits(site: Site) -> list[str]:
    """The cache is a folder, and its quota fits the file system it will live on."""
    folder = site.cache.path or StackPaths.default().cache
    try:
        if folder.is_file():
            return [f"cache.path: {str(folder)!r} is a file; name a folder"]
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        total = shutil.disk_usage(existing).total
    except OSError as exc:
        return [f"cache.path: {str(folder)!r} cannot be read ({exc.strerror})"]
    if site.cache.quota_bytes <= total:
        return []
    return [
        f"cache.quota_gb: {site.cache.quota_gb:g} GB is more than the whole file system that"
        f" holds {str(folder)!r} ({total / 1e9:.1f} GB); set quota_gb to at most"
        f" {int(total / 1e9)} or put cache.path on a larger disk"
    ]


def file_problems(site: Site) -> list[str]:
    """What is wrong with the files and folders a local site names (after
    :func:`resolve_paths`); a site without ``local:`` has none that this machine reads."""
    if site.local is None:
        return []
    problems = []
    for n, instance in enumerate(site.rucio.instances):
        if instance.ca_cert is not None:
            problems += _named(f"rucio.instances[{n}].ca_cert", instance.ca_cert, folder=False)
    problems += _named("notebooks.source", site.notebooks.source, folder=True)
    for n, course in enumerate(site.courses):
        if not course.is_git_url:
            problems += _named(f"courses[{n}].source", Path(course.source), folder=True)
    return problems + _cache_fits(site)


def main(argv: list[str] | None = None) -> int:
    """``python -m sitefile FILE``: validate a site file and say what it describes."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sitefile SITE.yaml", file=sys.stderr)
        return 2
    try:
        site = load_site(args[0])
    except SiteError as exc:
        print(exc, file=sys.stderr)
        return 1
    for warning in site.warnings:
        print(f"{args[0]}: warning: {warning}", file=sys.stderr)
    default = site.rucio.default
    print(f"{args[0]}: OK - site {site.name!r}, Rucio {default.name} at {default.rucio_host}")
    return 0
