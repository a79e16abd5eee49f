"""The site file: its model (:mod:`sitefile.model`, pydantic), its one loader
(:mod:`sitefile.load`) and where a local site keeps its state (:mod:`sitefile.state`).

Layer 1: imports nothing of lakehub but the vocabulary (:mod:`lakehub.contract`).
"""

from sitefile.load import load_site, read, resolve_paths
from sitefile.model import (
    Course,
    DemoData,
    Image,
    Kubernetes,
    OidcAuth,
    Profile,
    RucioInstance,
    Site,
    SiteError,
    memory_bytes,
    parse_site,
)

__all__ = [
    "Course",
    "DemoData",
    "Image",
    "Kubernetes",
    "OidcAuth",
    "Profile",
    "RucioInstance",
    "Site",
    "SiteError",
    "load_site",
    "memory_bytes",
    "parse_site",
    "read",
    "resolve_paths",
]
