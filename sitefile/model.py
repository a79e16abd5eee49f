"""The site model: one validated description of a lakehub site.

A sysadmin writes one YAML file (see ``examples/site.local.yaml`` and
``examples/site.cluster.yaml``); everything else (the local JupyterHub configuration, the
z2jh Helm values in ``hub_config.values``) is rendered from the :class:`Site` object built
here (the loader is :mod:`sitefile.load`).  Bad input never produces a traceback: it
raises :class:`SiteError`, whose message names every offending field path.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

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

from lakehub.contract import HUB_ISSUER

# Rucio's own limits for account names (rucio.common.schema.generic: ACCOUNT).
RUCIO_ACCOUNT_PATTERN = re.compile(r"^[a-z0-9_-]+$")
RUCIO_ACCOUNT_MAX = 25
# Rucio scopes share the account alphabet and length limit (plus '.'), see SCOPE.
RUCIO_SCOPE_PATTERN = re.compile(r"^[a-zA-Z_\-.0-9]+$")

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def _matching(pattern: re.Pattern, expected: str, max_length: int | None = None):
    """A validator: the value as it is, or "expected <expected>, got <value>"."""

    def check(value: str) -> str:
        if (max_length is not None and len(value) > max_length) or not pattern.match(value):
            raise ValueError(f"expected {expected}, got {value!r}")
        return value

    return check


# A value echoed in a message is cut to about this many characters (its start and end).
SHOWN_VALUE = 160
# and a whole problem line to this many
SHOWN_PROBLEM = 600
# What a message quotes: Python reprs of strings ('...' or "...", not an apostrophe
# inside a word), lists and mappings (innermost first), and runs without spaces.
_QUOTED = re.compile(r"""(?<![\w'"])('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")(?!\w)""")
_BRACKETED = re.compile(r"\[[^\[\]]*\]|\{[^{}]*\}")
_WORD = re.compile(rf"\S{{{SHOWN_VALUE + 1},}}")


def _cut(text: str, limit: int = SHOWN_VALUE) -> str:
    """``text`` itself, or its start and end around a note of its full length."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[-(limit // 3) :]
    return f"{head}…{tail} ({len(text)} characters)"


def readable(problem: str) -> str:
    """A problem line whose quoted values, lists and long words are cut to a readable
    length; short ones stay as they are."""
    for pattern in (_QUOTED, _BRACKETED, _WORD):
        problem = pattern.sub(lambda m: _cut(m.group(0)), problem)
    return _cut(problem, SHOWN_PROBLEM)


class SiteError(ValueError):
    """A site file that cannot be used; ``str()`` is a readable, multi-line message.

    Every problem the site model, its loader or a renderer reports passes through here,
    so no message echoes a huge value in full (:func:`readable`)."""

    where = "in the site file"

    def __init__(self, source: str, problems: list[str]):
        self.source = _cut(source, SHOWN_PROBLEM)
        self.problems = [readable(p) for p in problems]
        lines = [f"{self.source}: {len(self.problems)} problem(s) {self.where}"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


def _http_url(value: str, query: bool) -> str:
    """An http(s) URL with a host; without a user name or password (no secrets in the site
    file), without a fragment, and without a query unless ``query``."""
    parts = urlsplit(value)
    netloc = parts.netloc.rpartition("@")[2]
    # what messages show: never a password written into the URL
    shown = urlunsplit(parts._replace(netloc="…@" + netloc)) if "@" in parts.netloc else value
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {shown!r}")
    try:
        parts.port  # noqa: B018  (urllib checks the port only when it is read)
    except ValueError:
        raise ValueError(f"the port in {shown!r} is not a number from 0 to 65535") from None
    kept = urlunsplit((parts.scheme, netloc, parts.path, parts.query if query else "", ""))
    if "@" in parts.netloc:
        raise ValueError(
            "expected a URL without a user name or password (secrets never go in the site"
            f" file); write {kept.rstrip('/')!r}"
        )
    if "#" in value or ("?" in value and not query):
        what = (
            "a URL without a fragment ('#...')"
            if query
            else "a base URL without a query ('?...') or a fragment ('#...')"
        )
        raise ValueError(f"expected {what}, got {value!r}; write {kept.rstrip('/')!r}")
    return value.rstrip("/")


# where other paths are appended (a server, an issuer): no query, no fragment
BaseUrl = Annotated[str, AfterValidator(lambda v: _http_url(v, query=False))]
# an endpoint used as it is (OAuth 2): a query is allowed, a fragment is not
EndpointUrl = Annotated[str, AfterValidator(lambda v: _http_url(v, query=True))]


_identifier = _matching(
    _IDENTIFIER, "a short lowercase name (letters, digits, '-', '_'; starts with a letter)"
)


Identifier = Annotated[str, AfterValidator(_identifier)]


def _relative_folder(value: str) -> str:
    path = PurePosixPath(value.strip())
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts == (".",):
        raise ValueError(
            f"expected a folder inside the user's home (relative, no '..'), got {value!r}"
        )
    return value


class _Model(BaseModel):
    # no .inf or .nan where a number is asked for
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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
    rucio_host: BaseUrl
    auth_host: BaseUrl | None = Field(None, description="defaults to rucio_host")
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

    source: Literal[HUB_ISSUER] = Field(
        HUB_ISSUER,
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


# Kubernetes object names: DNS-1123 labels (namespaces) and subdomains (Secrets, classes).
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


_dns_label = _matching(
    _DNS_LABEL,
    "a Kubernetes name of at most 63 characters from a-z, 0-9 and '-', starting and ending"
    " with a letter or digit",
)
_dns_subdomain = _matching(
    _DNS_SUBDOMAIN,
    "a Kubernetes object name (lowercase a-z, 0-9, '-' and '.', starting and ending with a"
    " letter or digit)",
    max_length=253,
)


KubeLabel = Annotated[str, AfterValidator(_dns_label)]
KubeName = Annotated[str, AfterValidator(_dns_subdomain)]

# OAuth scope tokens (RFC 6749 section 3.3): printable ASCII without space, '"' or '\\'.
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")


class OidcAuth(_Model):
    """Login through the site's OpenID Connect provider (GenericOAuthenticator).

    The hub keeps the provider's tokens in its encrypted auth state and exchanges the
    access token for one with the Rucio audience (RFC 8693) when a server starts.  The
    client secret and the auth-state key live in an existing Kubernetes Secret named by
    ``secret_name``; the site file never holds them.
    """

    type: Literal["oidc"]
    issuer: BaseUrl = Field(description="the provider's issuer URL (its 'iss' claim)")
    client_id: str = Field(min_length=1, max_length=255)
    secret_name: KubeName = Field(
        description="existing Secret with the keys 'client-secret' and "
        "'hub.config.CryptKeeper.keys' (the auth-state encryption key)"
    )
    username_claim: str = Field("preferred_username", min_length=1)
    scopes: list[str] = Field(["openid", "profile", "email", "offline_access"], min_length=1)
    token_exchange_audience: str = Field(
        "rucio", min_length=1, description="audience asked for in the RFC 8693 exchange"
    )
    # the provider's endpoints, as its discovery document
    # (<issuer>/.well-known/openid-configuration) lists them
    authorize_url: EndpointUrl
    token_url: EndpointUrl
    userinfo_url: EndpointUrl
    admin_users: list[str] = Field(min_length=1)
    allowed_groups: list[str] = Field(default_factory=list)
    groups_claim: str = Field("groups", min_length=1)
    allow_all: bool = Field(
        False, description="let every account of the provider log in (else: allowed_groups)"
    )

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not _SCOPE_TOKEN.match(s)]
        if bad:
            raise ValueError(f"scopes are single words without spaces or quotes, got {bad}")
        if "openid" not in value:
            raise ValueError(f"OpenID Connect needs the scope 'openid', got {value}")
        return value

    @model_validator(mode="after")
    def _someone_may_log_in(self) -> OidcAuth:
        if not self.allow_all and not self.allowed_groups:
            raise ValueError(
                "auth: only the admin_users could log in; list allowed_groups (from the"
                f" {self.groups_claim!r} claim) or set allow_all: true"
            )
        return self


Auth = Annotated[NativeAuth | OidcAuth, Field(discriminator="type")]
_AUTH_TYPES = "'native', 'oidc'"


# Sizes beyond any real machine: a cache (quota or volume) up to a petabyte, the memory
# of one server or worker up to 64 TiB, a transfer rate up to a terabit per second.
PETABYTE = 10**15
MAX_MEMORY = 64 * 1024**4
MAX_RATE_MBPS = 1_000_000


class Cache(_Model):
    """The shared, read-only dataset cache (hub_services.cache)."""

    path: Path | None = Field(
        None, description="folder of the shared dataset cache; local default <state>/cache"
    )
    rse: str = Field("LAKEHUB_CACHE", pattern=r"^[A-Z0-9_-]{1,60}$")
    quota_gb: float = Field(20.0, gt=0, description="GB (10^9 bytes), at most a petabyte")
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

    @field_validator("quota_gb")
    @classmethod
    def _quota(cls, value: float) -> float:
        if value * 1e9 > PETABYTE:
            raise ValueError(
                f"expected at most {PETABYTE / 1e9:.0f} (GB, a petabyte), got {value:.15g}"
            )
        return value

    @field_validator("transfer_rate_limit_mbps")
    @classmethod
    def _rate(cls, value: float | None) -> float | None:
        if value is not None and value > MAX_RATE_MBPS:
            raise ValueError(
                f"expected at most {MAX_RATE_MBPS} (Mbit/s, a terabit per second), got {value:.15g}"
            )
        return value

    @property
    def quota_bytes(self) -> int:
        return int(self.quota_gb * 1e9)


class Notebooks(_Model):
    source: Path = Field(Path("../notebooks"), description="folder of notebooks to hand out")
    target: Annotated[str, AfterValidator(_relative_folder)] = "atlas-opendata"


# A git remote: a URL with a scheme git understands, or scp-like ``user@host:path``.
_GIT_URL = re.compile(r"^(https?|git|ssh|file)://\S+$|^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+$")
# What a branch name may look like here (a strict subset of git check-ref-format).
_BRANCH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,99}$")


def _branch(value: str) -> str:
    if not _BRANCH.match(value) or ".." in value or value.endswith((".", "/", ".lock")):
        raise ValueError(
            f"expected a git branch name such as 'main' or 'spring-2025', got {value!r}"
        )
    return value


# A course member: a hub username, or an identity provider's group as ``group:<name>``.
_MEMBER = re.compile(r"^(group:)?[^\s:/]{1,100}$")


def _member(value: str) -> str:
    if not _MEMBER.match(value):
        raise ValueError(
            "expected a hub username such as 'alice' or an identity provider's group such"
            f" as 'group:physics-2y' (no spaces, ':' or '/'), got {value!r}"
        )
    return value


CourseMember = Annotated[str, AfterValidator(_member)]


class Course(_Model):
    """Course material in a git repository (or a folder lakehub turns into one), pulled
    into every student's home with nbgitpuller; see docs/instructors.md."""

    name: Identifier = Field(description="short name, used by `make push-notebooks COURSE=`")
    source: str = Field(
        min_length=1,
        description="a git URL (https://, ssh://, git://, file://, user@host:path) or a local"
        " folder (relative to the site file)",
    )
    branch: Annotated[str, AfterValidator(_branch)] = "main"
    target: Annotated[str, AfterValidator(_relative_folder)] = Field(
        description="folder in each student's home"
    )
    students: Literal["everyone"] | list[CourseMember] = Field(
        "everyone",
        description="who takes the course: 'everyone' (every hub user), or a list of hub"
        " usernames and identity-provider groups written 'group:<name>'",
    )
    instructors: list[CourseMember] = Field(
        default_factory=list,
        description="who teaches it (usernames, 'group:<name>'): they see and help this"
        " course's students only",
    )
    profiles: list[str] = Field(
        default_factory=list,
        description="names of the site's profiles this course's members may choose; a"
        " profile no course names is open to every user",
    )
    storage: Quantity | None = Field(
        None,
        description="home volume size for a member's new home on a cluster, e.g. '20Gi'"
        " (a member of several courses gets the largest)",
    )

    @model_validator(mode="after")
    def _members_once(self) -> Course:
        students = [] if self.students == "everyone" else self.students
        for field, members in (("students", students), ("instructors", self.instructors)):
            dupes = sorted({m for m in members if members.count(m) > 1})
            if dupes:
                raise ValueError(f"{field}: listed more than once: {', '.join(dupes)}")
        return self

    @property
    def is_git_url(self) -> bool:
        return bool(_GIT_URL.match(self.source))


def _overlap(a: str, b: str) -> bool:
    pa, pb = PurePosixPath(a.strip()).parts, PurePosixPath(b.strip()).parts
    n = min(len(pa), len(pb))
    return pa[:n] == pb[:n]


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
    dask_gateway_port: Port = Field(
        8013, description="Dask Gateway's proxy: its API, dashboards and scheduler traffic"
    )
    embedded_rucio: bool = Field(
        True, description="start a Rucio server at the default instance's rucio_host"
    )
    rucio_database: Literal["sqlite", "postgresql"] = Field(
        "sqlite",
        description="the embedded Rucio server's database: a SQLite file (one request at a"
        " time), or a PostgreSQL the stack runs on 127.0.0.1 (Debian's postgresql package),"
        " as a site runs Rucio; a class of hundreds needs postgresql",
    )
    rucio_database_port: Port = Field(
        8014, description="PostgreSQL's port when rucio_database is postgresql"
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
            self.dask_gateway_port,
        ]
        if self.rucio_database == "postgresql":
            ports.append(self.rucio_database_port)
        if len(set(ports)) != len(ports):
            raise ValueError(
                "local: hub_port, hub_api_port, proxy_api_port, issuer_port, cache_port,"
                " dask_gateway_port must differ (and rucio_database_port for postgresql),"
                f" got {ports}"
            )
        return self


_IMAGE_REPOSITORY = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)+$|^[a-z0-9]+([._-][a-z0-9]+)*$"
)
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# What JupyterHub's ByteSpecification accepts (powers of 1024): 512M, 2G, 1.5G.
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]$")
# A Kubernetes storage quantity in the usual binary or decimal units: 10Gi, 500G, 1Ti.
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)$")


_memory = _matching(
    _MEMORY,
    "a size with one of the suffixes K, M, G, T (as JupyterHub reads them, powers of 1024),"
    " for example '2G' or '512M'",
)
_quantity = _matching(_QUANTITY, "a storage size such as '100Gi' or '2Ti'")


def memory_bytes(value: str) -> float:
    """``'2G'`` -> 2 * 1024**3, as JupyterHub's ByteSpecification reads it."""
    return float(value[:-1]) * 1024 ** ("KMGT".index(value[-1]) + 1)


def quantity_bytes(value: str) -> float:
    """``'100Gi'`` -> 100 * 1024**3, ``'2T'`` -> 2 * 1000**4 (Kubernetes quantities)."""
    number, unit = re.match(r"^([0-9.]+)([A-Za-z]+)$", value).groups()
    base = 1024 if unit.endswith("i") else 1000
    return float(number) * base ** ("KMGTP".index(unit[0]) + 1)


def _size_within(measure, largest: float, largest_text: str):
    """A validator: a size above zero and at most ``largest`` bytes."""

    def check(value: str) -> str:
        size = measure(value)
        if size <= 0:
            raise ValueError(f"expected a size above zero, got {value!r}")
        if size > largest:
            raise ValueError(f"expected at most {largest_text}, got {value!r}")
        return value

    return check


Memory = Annotated[
    str,
    AfterValidator(_memory),
    AfterValidator(_size_within(memory_bytes, MAX_MEMORY, "'64T' (more than any machine has)")),
]
Quantity = Annotated[
    str,
    AfterValidator(_quantity),
    AfterValidator(_size_within(quantity_bytes, PETABYTE, "a petabyte ('1000T')")),
]


class Dask(_Model):
    """Scale-out with Dask Gateway (docs/scale-out.md): off unless ``enabled``.

    Locally the hub runs a Dask Gateway server as a managed service whose schedulers and
    workers are processes of the user's own system account; on Kubernetes the
    dask-gateway chart runs them as pods.  Each user runs at most one cluster at a time,
    so the worker limit is a limit per user.
    """

    enabled: bool = False
    max_workers_per_user: int = Field(
        4, ge=1, le=1000, description="workers one user's cluster may have at once"
    )
    worker_cores: int = Field(1, ge=1, le=64, description="CPU cores per worker")
    worker_memory: Memory = Field("2G", description="memory per worker, e.g. '2G'")
    idle_timeout_seconds: int = Field(
        1800,
        ge=10,
        le=7 * 86400,
        description="a cluster with no client and no work for this long is shut down",
    )


class Image(_Model):
    repository: str = Field(description="image name without the tag, e.g. ghcr.io/org/lakehub")
    tag: str = Field(description="image tag, e.g. 0.1.0")
    pull_policy: Literal["IfNotPresent", "Always", "Never"] | None = None

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not _IMAGE_REPOSITORY.match(value):
            raise ValueError(
                "expected an image name without tag or digest (lowercase, e.g."
                f" 'registry.example.org/lakehub/singleuser'), got {value!r}"
            )
        return value

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        if not _IMAGE_TAG.match(value):
            raise ValueError(f"expected an image tag such as '0.1.0', got {value!r}")
        return value

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


class Images(_Model):
    singleuser: Image = Image(repository="localhost/lakehub/singleuser", tag="0.1.0")
    hub: Image = Image(repository="localhost/lakehub/hub", tag="0.1.0")
    proxy: Image | None = Field(
        None,
        description="configurable-http-proxy; default z2jh's own"
        " (quay.io/jupyterhub/configurable-http-proxy, the tag its chart names)",
    )


class ProxyService(_Model):
    """How students reach the hub: z2jh's ``proxy-public`` Service."""

    type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = Field(
        "LoadBalancer",
        description="LoadBalancer (clouds), NodePort (a port on every node), ClusterIP"
        " (behind an Ingress of your own)",
    )
    node_port: int | None = Field(
        None, description="NodePort only: the node port for http (30000-32767)"
    )

    @model_validator(mode="after")
    def _node_port(self) -> ProxyService:
        if self.node_port is None:
            return self
        if self.type != "NodePort":
            raise ValueError(
                f"kubernetes.proxy_service.node_port: only for type NodePort (type is"
                f" {self.type}); remove node_port or set type: NodePort"
            )
        if not 30000 <= self.node_port <= 32767:
            raise ValueError(
                "kubernetes.proxy_service.node_port: expected a port between 30000 and 32767"
                f" (Kubernetes' node port range), got {self.node_port}"
            )
        return self


class Profile(_Model):
    """One choice on the spawn page: a size, and optionally another analysis image.

    On clusters the size is the pod's limits and requests.  A local server gets the
    limits as the environment variables ``MEM_LIMIT`` and ``CPU_LIMIT`` only (JupyterHub's
    local spawner enforces neither), and always runs the analysis environment."""

    name: str = Field(min_length=1, max_length=60, description="shown on the spawn page")
    description: str = ""
    cpu: float = Field(gt=0, le=256, description="CPU limit (cores)")
    memory: Memory = Field(description="memory limit, e.g. '4G'")
    cpu_guarantee: float | None = Field(None, gt=0, description="default: the limit")
    memory_guarantee: Memory | None = Field(None, description="default: the limit")
    image: Image | None = Field(
        None, description="clusters only; default: kubernetes.images.singleuser"
    )
    default: bool = False

    @model_validator(mode="after")
    def _guarantees_within_limits(self) -> Profile:
        if self.cpu_guarantee is not None and self.cpu_guarantee > self.cpu:
            raise ValueError(
                f"cpu_guarantee {self.cpu_guarantee} is more than the limit cpu {self.cpu}"
            )
        if self.memory_guarantee is not None and memory_bytes(self.memory_guarantee) > memory_bytes(
            self.memory
        ):
            raise ValueError(
                f"memory_guarantee {self.memory_guarantee} is more than the limit"
                f" memory {self.memory}"
            )
        return self

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "profile"


class NfsExport(_Model):
    server: str = Field(min_length=1, description="NFS server name or IP address")
    path: str = Field(description="exported folder, absolute")

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
        if len(value) > 253 or not _DNS_SUBDOMAIN.match(value.lower()):
            raise ValueError(f"expected a host name or an IP address, got {value!r}")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts:
            raise ValueError(f"expected an absolute path on the NFS server, got {value!r}")
        return value


class CacheClaim(_Model):
    """The shared cache's volume: ReadWriteMany, written by the cache service only."""

    storage_class: KubeName | None = Field(
        None, description="a StorageClass able to provision ReadWriteMany volumes"
    )
    size: Quantity = "100Gi"
    nfs: NfsExport | None = Field(
        None, description="use this NFS export instead of a StorageClass (a static volume)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> CacheClaim:
        if self.nfs is not None and self.storage_class is not None:
            raise ValueError(
                "kubernetes.cache_claim: set either storage_class (provisioned volume) or"
                " nfs (an existing export), not both"
            )
        return self


class CourseVolume(_Model):
    """The courses' shared folders on a cluster: one ReadWriteMany volume, a folder per
    course, mounted only into the pods of that course's members."""

    claim: KubeName | None = Field(
        None, description="an existing ReadWriteMany PersistentVolumeClaim in the namespace"
    )
    nfs: NfsExport | None = Field(None, description="or an NFS export, mounted directly")

    @model_validator(mode="after")
    def _one_source(self) -> CourseVolume:
        if (self.claim is None) == (self.nfs is None):
            raise ValueError(
                "kubernetes.course_volume: set exactly one of claim (an existing"
                " ReadWriteMany PersistentVolumeClaim) or nfs (an export)"
            )
        return self


class Culling(_Model):
    """Stopping idle servers (jupyterhub-idle-culler, run by the z2jh hub)."""

    enabled: bool = True
    timeout_seconds: int = Field(3600, ge=300, le=7 * 86400)
    every_seconds: int = Field(600, ge=60, le=86400)

    @model_validator(mode="after")
    def _every_below_timeout(self) -> Culling:
        if self.every_seconds > self.timeout_seconds:
            raise ValueError(
                f"kubernetes.culling: every_seconds ({self.every_seconds}) must not exceed"
                f" timeout_seconds ({self.timeout_seconds})"
            )
        return self


def _tcp_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"expected a TCP port between 1 and 65535, got {value}")
    return value


class EgressRule(_Model):
    """A destination user pods may reach besides what z2jh allows (public IPs, DNS, hub).

    z2jh keeps user pods away from private addresses; a Rucio server or storage on one
    needs a rule: ``cidr`` for addresses, or ``namespace`` (+ ``pod_labels``) for
    something running in the cluster.  ``ports`` default to those of the Rucio URLs.
    """

    description: str = ""
    cidr: str | None = None
    namespace: KubeLabel | None = None
    pod_labels: dict[str, str] = Field(default_factory=dict)
    ports: list[Annotated[int, Strict(), AfterValidator(_tcp_port)]] | None = Field(
        None, min_length=1
    )

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_network(value, strict=True))
        except ValueError:
            raise ValueError(
                f"expected an address block such as '10.20.0.0/16' or '192.0.2.7/32'"
                f" (host bits zero), got {value!r}"
            ) from None

    @model_validator(mode="after")
    def _one_destination(self) -> EgressRule:
        if (self.cidr is None) == (self.namespace is None):
            raise ValueError("an egress rule names exactly one of cidr or namespace")
        if self.pod_labels and self.namespace is None:
            raise ValueError("pod_labels select pods in a namespace; set namespace as well")
        return self


class Kubernetes(_Model):
    """A deployment on Kubernetes through the zero-to-jupyterhub chart (helm/lakehub)."""

    namespace: KubeLabel = "lakehub"
    public_url: BaseUrl | None = Field(
        None, description="where students open the hub, e.g. https://hub.example.org"
    )
    images: Images = Images()
    cache_claim: CacheClaim = CacheClaim()
    course_volume: CourseVolume | None = Field(
        None,
        description="where the courses' shared folders live (claim or nfs); without it a"
        " cluster's courses have no shared folders",
    )
    culling: Culling = Culling()
    egress: list[EgressRule] = Field(default_factory=list)
    proxy_service: ProxyService = ProxyService()
    # z2jh parts a cluster may do without (each needs an image of z2jh's own)
    prepull: bool = Field(
        True,
        description="pull the user images onto every node before users need them (z2jh's"
        " image pullers: k8s-image-awaiter and pause images)",
    )
    user_scheduler: bool = Field(
        True,
        description="z2jh's user scheduler and placeholder pods, which pack users onto few"
        " nodes (kube-scheduler and pause images)",
    )
    block_cloud_metadata: bool = Field(
        True,
        description="block user pods from the cloud's metadata address 169.254.169.254"
        " (an init container with z2jh's k8s-network-tools image)",
    )
    rucio_admin_secret: KubeName = Field(
        "lakehub-rucio-admin",
        description="existing Secret whose key 'password' is the Rucio admin's password",
    )
    rucio_admin_username: str = Field(
        "root", min_length=1, description="userpass login of the Rucio admin account"
    )
    issuer_key_secret: KubeName = Field(
        "lakehub-issuer-key",
        description="existing Secret with the hub issuer's signing key (key 'issuer-key.json');"
        " native logins only (OIDC sites exchange the provider's token instead)",
    )
    issuer_url: BaseUrl | None = Field(
        None,
        description="native logins: the issuer URL the Rucio server trusts for the hub's"
        " tokens (its 'iss'); default <public_url>/services/lakehub-issuer, where the"
        " chart's token service publishes its public keys through the hub's proxy",
    )

    @model_validator(mode="before")
    @classmethod
    def _profiles_moved(cls, data: object) -> object:
        if isinstance(data, dict) and "profiles" in data:
            raise ValueError(
                "kubernetes.profiles: profiles moved to the top level of the site file"
                " ('profiles:' beside 'courses:'), where the local stack uses them too;"
                " move the list there unchanged"
            )
        return data

    @property
    def token_issuer_url(self) -> str | None:
        """The issuer URL of native-login clusters: given, or the token service
        (JupyterHub service ``lakehub-issuer``) under the public URL."""
        if self.issuer_url is not None:
            return str(self.issuer_url).rstrip("/")
        if self.public_url is not None:
            return str(self.public_url).rstrip("/") + "/services/lakehub-issuer"
        return None


class Site(_Model):
    name: str = Field(min_length=1, max_length=80)
    rucio: Rucio
    tokens: Tokens = Tokens()
    auth: Auth
    cache: Cache = Cache()
    notebooks: Notebooks = Notebooks()
    courses: list[Course] = Field(default_factory=list)
    profiles: list[Profile] = Field(
        default_factory=lambda: [Profile(name="Standard", cpu=2, memory="4G", default=True)],
        min_length=1,
        description="the sizes a user may choose when their server starts; a course's"
        " 'profiles' reserves some for its members",
    )
    dask: Dask = Dask()
    local: Local | None = None
    kubernetes: Kubernetes | None = None
    insecure: bool = Field(
        False,
        description="allow plain http:// to a Rucio server or identity provider on another"
        " machine (tokens and passwords cross the network in clear); closed lab networks"
        " only, and `make check-site` warns about it",
    )

    @model_validator(mode="after")
    def _courses_distinct(self) -> Site:
        names = [c.name for c in self.courses]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"courses: names must be unique; repeated: {', '.join(dupes)}")
        for i, course in enumerate(self.courses):
            where = f"courses[{i}].target"
            if _overlap(course.target, self.notebooks.target):
                raise ValueError(
                    f"{where}: {course.target!r} overlaps notebooks.target"
                    f" {self.notebooks.target!r}; give the course a folder of its own"
                )
            for other in self.courses[:i]:
                if _overlap(course.target, other.target):
                    raise ValueError(
                        f"{where}: {course.target!r} overlaps the target {other.target!r}"
                        f" of course {other.name!r}; each course needs a folder of its own"
                    )
        return self

    @model_validator(mode="after")
    def _profiles_consistent(self) -> Site:
        names = [p.name for p in self.profiles]
        slugs = [p.slug for p in self.profiles]
        dupes = sorted({n for n, s in zip(names, slugs, strict=True) if slugs.count(s) > 1})
        if dupes:
            raise ValueError(f"profiles: names must differ; repeated: {dupes}")
        defaults = [p.name for p in self.profiles if p.default]
        if len(defaults) > 1:
            raise ValueError(f"profiles: at most one default, got {defaults}")
        for i, course in enumerate(self.courses):
            unknown = [p for p in course.profiles if p not in names]
            if unknown:
                raise ValueError(
                    f"courses[{i}].profiles: {unknown} not among the site's profiles"
                    f" ({', '.join(names)}); name a profile of the top-level 'profiles:'"
                )
        return self

    @property
    def default_profile(self) -> Profile:
        return next((p for p in self.profiles if p.default), self.profiles[0])

    @model_validator(mode="after")
    def _oidc_is_for_clusters(self) -> Site:
        if self.auth.type == "oidc" and self.local is not None:
            raise ValueError(
                "auth.type: the local stack (local:) logs students in with 'native';"
                " 'oidc' is for cluster sites (kubernetes:)"
            )
        return self

    @model_validator(mode="after")
    def _native_cluster_names_its_issuer(self) -> Site:
        if self.kubernetes is not None and self.auth.type == "native":
            if self.kubernetes.token_issuer_url is None:
                raise ValueError(
                    "kubernetes.issuer_url: native logins on a cluster need the URL of the"
                    " hub's token issuer that the Rucio server trusts; set it, or set"
                    " kubernetes.public_url (the issuer is then <public_url>/services/"
                    "lakehub-issuer), or use auth.type oidc"
                )
        return self

    @model_validator(mode="after")
    def _cluster_can_reach_rucio(self) -> Site:
        """User pods cannot reach this machine's loopback, nor private addresses that no
        egress rule opens (z2jh's network policy blocks them)."""
        if self.kubernetes is None:
            return self
        blocks = [
            ipaddress.ip_network(r.cidr) for r in self.kubernetes.egress if r.cidr is not None
        ]
        for n, instance in enumerate(self.rucio.instances):
            for field_name in ("rucio_host", "auth_host"):
                url = getattr(instance, field_name)
                host = urlsplit(url).hostname if url else None
                if not host:
                    continue
                where = f"rucio.instances[{n}].{field_name}"
                if _is_loopback(host):
                    raise ValueError(
                        f"{where}: {url!r} is a loopback address; pods on the cluster cannot"
                        " reach it (use the Rucio server's cluster or public address)"
                    )
                try:
                    address = ipaddress.ip_address(host)
                except ValueError:
                    continue  # a name: resolved by the cluster's DNS, not checkable here
                if address.is_private and not any(address in b for b in blocks):
                    raise ValueError(
                        f"{where}: {host} is a private address and user pods may not reach"
                        " it; add a kubernetes.egress rule whose cidr contains it"
                    )
        return self

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
            "local.dask_gateway_port": self.local.dask_gateway_port,
        }
        clash = [name for name, port in used.items() if port == url.port]
        if clash:
            raise ValueError(
                f"{where}: the embedded Rucio port {url.port} clashes with {clash[0]}; pick another"
            )
        return self

    @model_validator(mode="after")
    def _quota_fits_the_volume(self) -> Site:
        if self.kubernetes is None:
            return self
        size = self.kubernetes.cache_claim.size
        volume_gb = quantity_bytes(size) / 1e9
        if self.cache.quota_gb > volume_gb:
            raise ValueError(
                f"cache.quota_gb: {self.cache.quota_gb:g} GB does not fit the cache volume"
                f" (kubernetes.cache_claim.size {size!r} is {volume_gb:.1f} GB); set quota_gb"
                f" to at most {int(volume_gb)} or make the volume larger"
            )
        return self

    @model_validator(mode="after")
    def _clear_text_only_when_asked_for(self) -> Site:
        plain = self.plain_http_urls
        if plain and not self.insecure:
            (where, url), others = plain[0], [w for w, _ in plain[1:]]
            also = f" (so are {', '.join(others)})" if others else ""
            raise ValueError(
                f"{where}: {url!r} is plain http:// to another machine{also}: tokens and"
                " passwords would cross the network in clear; use https://, or on a closed"
                " lab network set insecure: true at the top of the site file"
            )
        return self

    @property
    def plain_http_urls(self) -> list[tuple[str, str]]:
        """(field path, URL) of the servers that would get tokens or passwords in clear:
        plain http:// to a host other than this machine."""
        urls = []
        for n, instance in enumerate(self.rucio.instances):
            urls.append((f"rucio.instances[{n}].rucio_host", instance.rucio_host))
            urls.append((f"rucio.instances[{n}].auth_host", instance.auth_host))
        if isinstance(self.auth, OidcAuth):
            for name in ("issuer", "authorize_url", "token_url", "userinfo_url"):
                urls.append((f"auth.{name}", getattr(self.auth, name)))
        if self.kubernetes is not None:
            urls.append(("kubernetes.public_url", self.kubernetes.public_url))
            urls.append(("kubernetes.issuer_url", self.kubernetes.issuer_url))
        return [
            (where, url)
            for where, url in urls
            if url is not None
            and urlsplit(url).scheme == "http"
            and not _is_loopback(urlsplit(url).hostname or "")
        ]

    @property
    def warnings(self) -> list[str]:
        """What a valid site does that a sysadmin should know about (``make check-site``
        prints these)."""
        if not self.insecure:
            return []
        plain = self.plain_http_urls
        if not plain:
            return [
                "insecure: true, but every server URL is https:// or on this machine; remove it"
            ]
        listed = ", ".join(f"{where} ({url})" for where, url in plain)
        return [
            f"insecure: true: tokens and passwords cross the network in clear to {listed};"
            " anyone on that network can read and reuse them; use https:// outside a"
            " closed lab network"
        ]

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
        elif item in ("native", "oidc") or str(item).startswith("function-"):
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
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # a discriminated union (auth): name the field that picks the kind
        ctx = error.get("ctx", {})
        field = str(ctx.get("discriminator", "type")).strip("'\"")
        expected = ctx.get("expected_tags") or _AUTH_TYPES
        if kind == "union_tag_not_found":
            return f"{where}.{field}: required field is missing (one of {expected})"
        return f"{where}.{field}: expected one of {expected}, got {ctx.get('tag')!r}"
    if kind == "literal_error":
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
