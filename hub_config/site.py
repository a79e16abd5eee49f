"""The site model: one validated description of a lakehub site.

A sysadmin writes one YAML file (see ``examples/site.local.yaml``); everything else
(the local JupyterHub configuration, later the z2jh values) is rendered from the
:class:`Site` object built here.  Bad input never produces a traceback: :func:`load_site`
raises :class:`SiteError`, whose message names every offending field path.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

# Rucio's own limits for account names (rucio.common.schema.generic: ACCOUNT).
RUCIO_ACCOUNT_PATTERN = re.compile(r"^[a-z0-9_-]+$")
RUCIO_ACCOUNT_MAX = 25
# Rucio scopes share the account alphabet and length limit (plus '.'), see SCOPE.
RUCIO_SCOPE_PATTERN = re.compile(r"^[a-zA-Z_\-.0-9]+$")

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class SiteError(ValueError):
    """A site file that cannot be used; ``str()`` is a readable, multi-line message."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s) in the site file"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    try:
        parts.port  # noqa: B018  (urllib checks the port only when it is read)
    except ValueError:
        raise ValueError(f"the port in {value!r} is not a number from 0 to 65535") from None
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"expected a short lowercase name (letters, digits, '-', '_'; starts with a letter),"
            f" got {value!r}"
        )
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]


def _relative_folder(value: str) -> str:
    path = PurePosixPath(value.strip())
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts == (".",):
        raise ValueError(
            f"expected a folder inside the user's home (relative, no '..'), got {value!r}"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountMapping(_Model):
    """How a hub username becomes a Rucio account name (see spawner_hooks.names)."""

    strategy: Literal["derive"] = Field(
        "derive",
        description="derive: the username itself when Rucio accepts it, otherwise a "
        "sanitised form with a hash suffix",
    )
    prefix: str = Field("", description="prepended to every derived account, e.g. 'jh-'")

    @field_validator("prefix")
    @classmethod
    def _prefix_is_rucio_safe(cls, value: str) -> str:
        if value and (not RUCIO_ACCOUNT_PATTERN.match(value) or len(value) > 8 or "--" in value):
            raise ValueError(
                f"expected at most 8 characters from a-z, 0-9, '-', '_' without '--', got {value!r}"
            )
        return value


class RucioInstance(_Model):
    name: Identifier
    display_name: str | None = None
    rucio_host: HttpUrl
    auth_host: HttpUrl | None = Field(None, description="defaults to rucio_host")
    vo: str = Field("def", pattern=r"^[a-z0-9]{1,3}$")
    ca_cert: Path | None = Field(
        None, description="CA bundle the clients trust; None means the system bundle"
    )
    admin_account: str = Field(
        "root", description="the Rucio account the hub uses to create user accounts"
    )
    account_mapping: AccountMapping = AccountMapping()

    @property
    def auth_url(self) -> str:
        return self.auth_host or self.rucio_host

    @property
    def title(self) -> str:
        return self.display_name or self.name


class Rucio(_Model):
    instances: list[RucioInstance] = Field(min_length=1)
    default_instance: str | None = Field(None, description="defaults to the first instance")

    @model_validator(mode="after")
    def _names_unique_and_default_known(self) -> Rucio:
        names = [i.name for i in self.instances]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"instance names must be unique; repeated: {', '.join(dupes)}")
        if self.default_instance is not None and self.default_instance not in names:
            raise ValueError(
                f"default_instance {self.default_instance!r} is not one of the instances"
                f" ({', '.join(names)})"
            )
        return self

    @property
    def default(self) -> RucioInstance:
        wanted = self.default_instance or self.instances[0].name
        return next(i for i in self.instances if i.name == wanted)


class Tokens(_Model):
    """How the hub obtains the Rucio token it gives each session."""

    source: Literal["hub_issuer"] = Field(
        "hub_issuer",
        description="hub_issuer: a signing key held by the hub mints short-lived JWTs that "
        "the Rucio server trusts (the embedded local default)",
    )
    lifetime_seconds: int = Field(3600, ge=60, le=86400)


class NativeAuth(_Model):
    """Accounts with passwords kept by the hub (NativeAuthenticator).

    Students sign up at /hub/signup; an admin approves them at /hub/authorize.
    """

    type: Literal["native"]
    admin_users: list[str] = Field(min_length=1)
    minimum_password_length: int = Field(10, ge=8, le=128)


class Cache(_Model):
    """The shared, read-only dataset cache (hub_services.cache)."""

    path: Path | None = Field(
        None, description="folder of the shared dataset cache; local default <state>/cache"
    )
    rse: str = Field("LAKEHUB_CACHE", pattern=r"^[A-Z0-9_-]{1,60}$")
    quota_gb: float = Field(20.0, gt=0)
    pinned: list[str] = Field(default_factory=list, description="DIDs never evicted")
    transfer_rate_limit_mbps: float | None = Field(None, gt=0)
    max_parallel_transfers: int = Field(4, ge=1, le=15)
    rule_poll_seconds: float = Field(10.0, ge=1, le=3600)

    @field_validator("pinned")
    @classmethod
    def _dids(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.match(r"^[A-Za-z0-9_.-]{1,25}:[A-Za-z0-9_.+-]+$", v)]
        if bad:
            raise ValueError(f"expected DIDs like 'scope:name', got {bad}")
        return value


class Notebooks(_Model):
    source: Path = Field(Path("../notebooks"), description="folder of notebooks to hand out")
    target: Annotated[str, AfterValidator(_relative_folder)] = "atlas-opendata"


DemoLayout = Literal["GamGam", "2lep", "4lep", "1lep"]


class DemoData(_Model):
    """Generated ATLAS-Open-Data-like samples, one dataset ``demo.<layout>`` per layout."""

    scope: str = Field("opendata", max_length=25, pattern=RUCIO_SCOPE_PATTERN.pattern)
    layouts: list[DemoLayout] = Field(["GamGam", "2lep", "4lep", "1lep"], min_length=1)
    rse: str = Field("LAKEHUB_DEMO", pattern=r"^[A-Z0-9_-]{1,60}$")
    files: int = Field(2, ge=1, le=50)
    events: int = Field(30_000, ge=100, le=5_000_000)
    seed: int = 1

    @staticmethod
    def dataset_name(layout: str) -> str:
        return f"demo.{layout}"


def _port(value: int) -> int:
    if not 1024 <= value <= 65535:
        raise ValueError(f"expected a TCP port between 1024 and 65535, got {value}")
    return value


Port = Annotated[int, Strict(), AfterValidator(_port)]


class Local(_Model):
    """The embedded single-machine stack that ``make up`` runs (all on 127.0.0.1)."""

    hub_port: Port = 8000
    hub_api_port: Port = 8081
    proxy_api_port: Port = 8001
    issuer_port: Port = 8009
    cache_port: Port = 8012
    embedded_rucio: bool = Field(
        True, description="start a Rucio server at the default instance's rucio_host"
    )
    demo_data: DemoData = DemoData()

    @model_validator(mode="after")
    def _ports_distinct(self) -> Local:
        ports = [
            self.hub_port,
            self.hub_api_port,
            self.proxy_api_port,
            self.issuer_port,
            self.cache_port,
        ]
        if len(set(ports)) != len(ports):
            raise ValueError(
                "local: hub_port, hub_api_port, proxy_api_port, issuer_port, cache_port must"
                f" differ, got {ports}"
            )
        return self


class Site(_Model):
    name: str = Field(min_length=1, max_length=80)
    rucio: Rucio
    tokens: Tokens = Tokens()
    auth: NativeAuth  # OIDC login joins as a second kind with the Kubernetes bundle
    cache: Cache = Cache()
    notebooks: Notebooks = Notebooks()
    local: Local | None = None

    @model_validator(mode="after")
    def _embedded_rucio_is_loopback(self) -> Site:
        if self.local is None or not self.local.embedded_rucio:
            return self
        where = f"rucio.instances[{self.rucio.instances.index(self.rucio.default)}].rucio_host"
        url = urlsplit(self.rucio.default.rucio_host)
        if url.scheme != "http" or url.port is None or not _is_loopback(url.hostname or ""):
            raise ValueError(
                f"{where}: local.embedded_rucio needs http://127.0.0.1:<port>,"
                f" got {self.rucio.default.rucio_host!r}"
            )
        if url.port < 1024:
            raise ValueError(f"{where}: the embedded Rucio needs a port from 1024, got {url.port}")
        used = {
            "local.hub_port": self.local.hub_port,
            "local.hub_api_port": self.local.hub_api_port,
            "local.proxy_api_port": self.local.proxy_api_port,
            "local.issuer_port": self.local.issuer_port,
            "local.cache_port": self.local.cache_port,
        }
        clash = [name for name, port in used.items() if port == url.port]
        if clash:
            raise ValueError(
                f"{where}: the embedded Rucio port {url.port} clashes with {clash[0]}; pick another"
            )
        return self

    @property
    def embedded_rucio_port(self) -> int | None:
        if self.local is None or not self.local.embedded_rucio:
            return None
        return urlsplit(self.rucio.default.rucio_host).port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _location(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("native",) or str(item).startswith("function-"):
            continue  # discriminator tags and validator names are noise for a reader
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


_PATH_PREFIX = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*: ")


def _describe(error: dict) -> str:
    where = _location(error["loc"])
    kind = error["type"]
    if kind == "missing":
        return f"{where}: required field is missing"
    if kind == "extra_forbidden":
        return f"{where}: unknown field (check the spelling; see examples/site.local.yaml)"
    message = error["msg"].removeprefix("Value error, ")
    if _PATH_PREFIX.match(message):  # a model-level check that names its own field
        return message
    if kind in ("literal_error", "union_tag_invalid"):
        return f"{where}: {message}"
    received = error.get("input")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{where}: {message} (got {received!r})"
    return f"{where}: {message}"


def parse_site(data: object, source: str = "site file") -> Site:
    """Validate already-parsed YAML; raise SiteError naming each bad field."""
    if not isinstance(data, dict):
        raise SiteError(
            source,
            [f"(top level): expected a mapping of settings, got {type(data).__name__}"],
        )
    try:
        return Site.model_validate(data)
    except ValidationError as exc:
        raise SiteError(source, [_describe(e) for e in exc.errors()]) from None


def load_site(path: str | os.PathLike[str]) -> Site:
    """Read, validate and resolve a site file.

    Relative paths inside the file (notebooks.source, cache.path, rucio ca_cert) are
    resolved against the folder holding the site file.
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
    return resolve_paths(site, path.parent.resolve())


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
        }
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m hub_config.site FILE``: validate a site file and say what it describes."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hub_config.site SITE.yaml", file=sys.stderr)
        return 2
    try:
        site = load_site(args[0])
    except SiteError as exc:
        print(exc, file=sys.stderr)
        return 1
    default = site.rucio.default
    print(f"{args[0]}: OK - site {site.name!r}, Rucio {default.name} at {default.rucio_host}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
