"""Reading a site file: one loader for every reader (the local stack, `make check-site`,
the z2jh values renderer, the hub on Kubernetes, the cache warm-up).

:func:`read` returns the validated :class:`~sitefile.model.Site` and the file as parsed
YAML (the values renderer puts the latter into the site ConfigMap, so the hub reads
exactly what the sysadmin wrote); :func:`load_site` returns the site only.  Bad input is
a :class:`~sitefile.model.SiteError` naming each field, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from sitefile.model import Site, SiteError, parse_site


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
    site = parse_site(data, str(path))
    return resolve_paths(site, path.parent.resolve()), data


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
    default = site.rucio.default
    print(f"{args[0]}: OK - site {site.name!r}, Rucio {default.name} at {default.rucio_host}")
    return 0
