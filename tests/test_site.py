"""Unit tests for the site model (sitefile).

The valid base is ``examples/site.local.yaml``; every bad-input test changes one thing
in a copy of it and checks that the error a sysadmin reads names the field and says
what is wrong, without any Python traceback text.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sitefile import SiteError, load_site, parse_site
from sitefile.model import SHOWN_PROBLEM, readable

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "site.local.yaml"

TRACEBACK_MARKERS = ("Traceback", 'File "', "pydantic_core", "ValidationError", "For further")


@pytest.fixture(scope="module")
def example_data() -> dict:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture
def data(example_data) -> dict:
    """A private deep copy of the example that a test may change freely."""
    return copy.deepcopy(example_data)


def _first_instance(d: dict) -> dict:
    return d["rucio"]["instances"][0]


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _make_named_files(site_file: Path, d: dict) -> None:
    """Create the folders and CA files that ``d`` names, relative to ``site_file``."""
    base = site_file.parent
    (base / d["notebooks"]["source"]).mkdir(parents=True, exist_ok=True)
    for course in d.get("courses", []):
        if "://" not in course["source"] and "@" not in course["source"]:
            (base / course["source"]).mkdir(parents=True, exist_ok=True)
    for instance in d["rucio"]["instances"]:
        if instance.get("ca_cert"):
            ca = base / instance["ca_cert"]
            ca.parent.mkdir(parents=True, exist_ok=True)
            ca.write_text(PEM)


def _problems(d: object) -> tuple[SiteError, str]:
    with pytest.raises(SiteError) as info:
        parse_site(d, source="my-site.yaml")
    err = info.value
    text = str(err)
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, f"traceback-like text {marker!r} in:\n{text}"
    assert text.startswith("my-site.yaml: ")
    # one line per problem, each as a bullet under the heading
    assert len(err.problems) >= 1
    for problem in err.problems:
        assert f"  - {problem}" in text.splitlines()
    return err, text


def _only_problem(d: object) -> str:
    err, _ = _problems(d)
    assert len(err.problems) == 1, err.problems
    return err.problems[0]


def _refused(d: dict, mutate, where: str, what: list[str]) -> str:
    """``mutate(d)`` leaves one problem: it starts with ``where`` and says each of ``what``."""
    mutate(d)
    problem = _only_problem(d)
    assert problem.startswith(where), problem
    for fragment in what:
        assert fragment in problem, f"{fragment!r} not in {problem!r}"
    return problem


def _params(table: list[tuple]) -> list:
    """pytest parameters from rows (id, mutation, field path, texts)."""
    return [pytest.param(*row[1:], id=row[0]) for row in table]


# --------------------------------------------------------------------------- the example


def test_example_loads_and_describes_the_embedded_stack():
    site = load_site(EXAMPLE)
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert site.name == raw["name"]
    assert [i.name for i in site.rucio.instances] == [i["name"] for i in raw["rucio"]["instances"]]
    assert site.auth.admin_users == raw["auth"]["admin_users"]
    assert site.local is not None
    assert site.local.embedded_rucio is True
    assert site.embedded_rucio_port is not None
    assert str(site.embedded_rucio_port) in site.rucio.default.rucio_host


def test_relative_notebooks_source_is_resolved_against_the_site_folder():
    site = load_site(EXAMPLE)
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    expected = (EXAMPLE.parent / raw["notebooks"]["source"]).resolve()
    assert site.notebooks.source.is_absolute()
    assert site.notebooks.source == expected
    # the target stays a path inside the user's home, not resolved anywhere
    assert site.notebooks.target == raw["notebooks"]["target"]


def test_relative_paths_resolve_against_the_file_folder_not_the_cwd(tmp_path, monkeypatch, data):
    folder = tmp_path / "conf" / "site"
    folder.mkdir(parents=True)
    data["notebooks"]["source"] = "course/nb"
    data["cache"] = {"path": "cache-dir"}
    _first_instance(data)["ca_cert"] = "certs/ca.pem"
    site_file = folder / "site.yaml"
    site_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    _make_named_files(site_file, data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    site = load_site(Path("..") / "conf" / "site" / "site.yaml")

    base = folder.resolve()
    assert site.notebooks.source == base / "course" / "nb"
    assert site.cache.path == base / "cache-dir"
    assert site.rucio.instances[0].ca_cert == base / "certs" / "ca.pem"


def test_absolute_paths_are_left_alone(tmp_path, data):
    data["notebooks"]["source"] = str(tmp_path / "abs-notebooks")
    site_file = tmp_path / "sub" / "site.yaml"
    site_file.parent.mkdir()
    site_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    _make_named_files(site_file, data)
    assert load_site(site_file).notebooks.source == tmp_path / "abs-notebooks"


def test_parse_site_does_not_resolve_paths(data):
    data["notebooks"]["source"] = "../somewhere"
    site = parse_site(data)
    assert not site.notebooks.source.is_absolute()


# --------------------------------------------------------------------------- defaults


def _minimal() -> dict:
    return {
        "name": "minimal",
        "rucio": {
            "instances": [
                {"name": "first", "rucio_host": "https://rucio-one.example.org"},
                {"name": "second", "rucio_host": "https://rucio-two.example.org/"},
            ]
        },
        "auth": {"type": "native", "admin_users": ["boss"]},
    }


def test_defaults_for_a_minimal_site():
    site = parse_site(_minimal())
    assert site.tokens.lifetime_seconds == 3600
    assert site.tokens.source == "hub_issuer"
    assert site.rucio.default_instance is None
    assert site.rucio.default.name == "first"
    assert site.local is None
    assert site.embedded_rucio_port is None
    first = site.rucio.instances[0]
    # auth host falls back to the Rucio host; the title to the name
    assert first.auth_url == first.rucio_host
    assert first.title == first.name
    assert first.account_mapping.prefix == ""
    # a trailing slash is dropped so URLs can be joined safely
    assert not site.rucio.instances[1].rucio_host.endswith("/")


def test_explicit_default_instance_is_used():
    d = _minimal()
    d["rucio"]["default_instance"] = "second"
    assert parse_site(d).rucio.default.name == "second"


def test_tokens_lifetime_can_be_set_within_range(data):
    data["tokens"]["lifetime_seconds"] = 600
    assert parse_site(data).tokens.lifetime_seconds == 600


def test_site_is_immutable():
    site = parse_site(_minimal())
    with pytest.raises(ValueError):
        site.name = "changed"


# --------------------------------------------------------------------------- bad input

Mutation = Callable[[dict], None]


def _drop(key: str) -> Mutation:
    return lambda d: d.pop(key)


def _set(path: tuple, value) -> Mutation:
    def change(d: dict) -> None:
        node = d
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return change


def _duplicate_instance(d: dict) -> None:
    d["rucio"]["instances"].append(copy.deepcopy(_first_instance(d)))


# (id, mutation, text that must appear (field path), texts that say what is wrong)
BAD_INPUT = [
    ("missing-name", _drop("name"), "name", ["required field is missing"]),
    ("missing-rucio", _drop("rucio"), "rucio", ["required field is missing"]),
    (
        "unknown-top-level",
        _set(("nmae",), "typo"),
        "nmae",
        ["unknown field", "spelling"],
    ),
    (
        "unknown-nested",
        _set(("rucio", "instances", 0, "rucio_hots"), "http://127.0.0.1:8010"),
        "rucio.instances[0].rucio_hots",
        ["unknown field"],
    ),
    (
        "port-is-string",
        _set(("local", "hub_port"), "eighty"),
        "local.hub_port",
        ["integer", "'eighty'"],
    ),
    ("name-is-list", _set(("name",), ["a", "b"]), "name", ["string", "['a', 'b']"]),
    ("port-too-low", _set(("local", "hub_port"), 80), "local.hub_port", ["1024", "65535", "80"]),
    (
        "port-too-high",
        _set(("local", "issuer_port"), 70000),
        "local.issuer_port",
        ["65535", "70000"],
    ),
    (
        "duplicate-local-ports",
        _set(("local", "proxy_api_port"), 8000),
        "local",
        ["must differ", "proxy_api_port", "8000"],
    ),
    (
        "rucio-database-unknown",
        _set(("local", "rucio_database"), "mysql"),
        "local.rucio_database",
        ["'sqlite'", "'postgresql'"],
    ),
    (
        "rucio-database-port-taken",
        lambda d: (
            _set(("local", "rucio_database"), "postgresql")(d),
            _set(("local", "rucio_database_port"), 8000)(d),
        ),
        "local",
        ["must differ", "rucio_database_port", "8000"],
    ),
    (
        "instance-name-uppercase",
        _set(("rucio", "instances", 0, "name"), "Local"),
        "rucio.instances[0].name",
        ["lowercase", "'Local'"],
    ),
    (
        "duplicate-instance-names",
        _duplicate_instance,
        "rucio",
        ["unique", "local"],
    ),
    (
        "default-instance-unknown",
        _set(("rucio", "default_instance"), "elsewhere"),
        "rucio",
        ["default_instance", "'elsewhere'", "not one of the instances"],
    ),
    (
        "rucio-host-not-http",
        _set(("rucio", "instances", 0, "rucio_host"), "ftp://127.0.0.1:8010"),
        "rucio.instances[0].rucio_host",
        ["http://", "https://", "ftp://127.0.0.1:8010"],
    ),
    (
        "rucio-host-no-scheme",
        _set(("rucio", "instances", 0, "rucio_host"), "127.0.0.1:8010"),
        "rucio.instances[0].rucio_host",
        ["http://"],
    ),
    (
        "embedded-rucio-not-loopback",
        _set(("rucio", "instances", 0, "rucio_host"), "http://rucio.example.org:8010"),
        "local.embedded_rucio",
        ["rucio_host", "127.0.0.1", "http://rucio.example.org:8010"],
    ),
    (
        "embedded-rucio-over-https",
        _set(("rucio", "instances", 0, "rucio_host"), "https://127.0.0.1:8010"),
        "local.embedded_rucio",
        ["rucio_host", "https://127.0.0.1:8010"],
    ),
    (
        "embedded-rucio-port-clashes-with-hub",
        _set(("rucio", "instances", 0, "rucio_host"), "http://127.0.0.1:8000"),
        "local.",
        ["embedded Rucio", "8000", "clash"],
    ),
    (
        "admin-users-empty",
        _set(("auth", "admin_users"), []),
        "auth.admin_users",
        ["at least 1"],
    ),
    (
        "auth-type-unknown",
        _set(("auth", "type"), "ldap"),
        "auth.type",
        ["'native'"],
    ),
    (
        "notebooks-target-absolute",
        _set(("notebooks", "target"), "/etc/notebooks"),
        "notebooks.target",
        ["relative", "'/etc/notebooks'"],
    ),
    (
        "notebooks-target-dotdot",
        _set(("notebooks", "target"), "course/../../other-user"),
        "notebooks.target",
        ["..", "'course/../../other-user'"],
    ),
    (
        "account-prefix-invalid-characters",
        _set(("rucio", "instances", 0, "account_mapping"), {"prefix": "JH!"}),
        "rucio.instances[0].account_mapping.prefix",
        ["a-z", "'JH!'"],
    ),
    (
        "account-prefix-too-long",
        _set(("rucio", "instances", 0, "account_mapping"), {"prefix": "verylongprefix"}),
        "rucio.instances[0].account_mapping.prefix",
        ["8 characters", "'verylongprefix'"],
    ),
    (
        "account-mapping-strategy-unknown",
        _set(("rucio", "instances", 0, "account_mapping"), {"strategy": "email"}),
        "rucio.instances[0].account_mapping.strategy",
        ["'derive'"],
    ),
    (
        "tokens-lifetime-too-short",
        _set(("tokens", "lifetime_seconds"), 5),
        "tokens.lifetime_seconds",
        ["greater than or equal to 60"],
    ),
    (
        "tokens-lifetime-too-long",
        _set(("tokens", "lifetime_seconds"), 7 * 86400),
        "tokens.lifetime_seconds",
        ["less than or equal to 86400"],
    ),
    (
        "no-instances",
        _set(("rucio", "instances"), []),
        "rucio.instances",
        ["at least 1"],
    ),
    (
        "instance-is-not-a-mapping",
        _set(("rucio", "instances"), ["local"]),
        "rucio.instances[0]",
        ["'local'"],
    ),
    (
        "vo-invalid",
        _set(("rucio", "instances", 0, "vo"), "ATLAS"),
        "rucio.instances[0].vo",
        ["pattern"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "where", "what"),
    [pytest.param(m, w, t, id=i) for i, m, w, t in BAD_INPUT],
)
def test_bad_input_names_the_field_and_the_problem(data, mutate, where, what):
    mutate(data)
    problem = _only_problem(data)
    assert where in problem, problem
    for fragment in what:
        assert fragment in problem, f"{fragment!r} not in {problem!r}"


def test_the_field_path_leads_the_problem_line(data):
    data["local"]["hub_port"] = 1
    problem = _only_problem(data)
    assert problem.startswith("local.hub_port: ")


def test_every_problem_is_reported_not_only_the_first(data):
    data.pop("name")
    data["tokens"]["lifetime_seconds"] = 1
    data["local"]["hub_port"] = 1
    data["rucio"]["instances"][0]["rucio_hots"] = "x"
    err, text = _problems(data)
    assert len(err.problems) == 4
    assert text.splitlines()[0] == "my-site.yaml: 4 problem(s) in the site file"
    joined = "\n".join(err.problems)
    for path in (
        "name:",
        "tokens.lifetime_seconds:",
        "local.hub_port:",
        "rucio.instances[0].rucio_hots:",
    ):
        assert path in joined


def test_site_error_is_a_value_error(data):
    data.pop("auth")
    with pytest.raises(ValueError, match="auth: required field is missing"):
        parse_site(data)


def test_bad_port_inside_rucio_host_names_the_rucio_host_field(data):
    # The URL check must catch an unusable port, not the later embedded-Rucio check:
    # a sysadmin needs to be told which field to fix.
    _first_instance(data)["rucio_host"] = "http://127.0.0.1:99999"
    problem = _only_problem(data)
    assert "rucio.instances[0].rucio_host" in problem
    assert "99999" in problem


def test_bad_port_inside_rucio_host_is_rejected_without_an_embedded_stack(data):
    data.pop("local")
    _first_instance(data)["rucio_host"] = "https://rucio.example.org:notaport"
    problem = _only_problem(data)
    assert "rucio.instances[0].rucio_host" in problem


@pytest.mark.parametrize("target", [".", "./", "./.", ""])
def test_notebooks_target_must_not_be_the_home_itself(data, target):
    data["notebooks"]["target"] = target
    problem = _only_problem(data)
    assert problem.startswith("notebooks.target: ")


def test_embedded_rucio_off_allows_a_remote_rucio(data):
    data["local"]["embedded_rucio"] = False
    _first_instance(data)["rucio_host"] = "https://rucio.example.org"
    site = parse_site(data)
    assert site.embedded_rucio_port is None


@pytest.mark.parametrize("prefix", ["jh-", "a_", "x1", "lh_", "jh--", "a--b"])
def test_every_prefix_the_site_accepts_works_for_account_names(data, prefix):
    # The site must not accept a prefix that makes every spawn fail later on.
    from spawner_hooks.names import rucio_account

    _first_instance(data)["account_mapping"] = {"prefix": prefix}
    try:
        site = parse_site(data)
    except SiteError as exc:
        assert "account_mapping.prefix" in str(exc)
        return
    accepted = site.rucio.default.account_mapping.prefix
    assert rucio_account("alice", accepted).startswith(accepted)


# --------------------------------------------------------------------------- files


def test_yaml_syntax_error_reports_the_line(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("name: demo\nrucio:\n  instances: [\n    - name: x\n", encoding="utf-8")
    with pytest.raises(SiteError) as info:
        load_site(bad)
    text = str(info.value)
    assert str(bad) in text
    assert "not valid YAML" in text
    assert "line 4" in text or "line 5" in text
    assert "Traceback" not in text


def test_yaml_syntax_error_line_number_points_at_the_broken_line(tmp_path):
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    broken_at = next(n for n, line in enumerate(lines) if line.startswith("tokens:"))
    lines[broken_at] = "tokens: {source: hub_issuer"  # unclosed flow mapping
    lines.insert(broken_at + 1, "  : : :")
    bad = tmp_path / "site.yaml"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SiteError) as info:
        load_site(bad)
    (problem,) = info.value.problems
    assert problem.startswith("line ")
    reported = int(problem.split()[1].rstrip(","))
    assert broken_at + 1 <= reported <= broken_at + 3


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SiteError) as info:
        load_site(missing)
    assert info.value.problems == ["the file does not exist"]
    assert str(missing) in str(info.value)


def test_a_folder_is_not_a_site_file(tmp_path):
    with pytest.raises(SiteError) as info:
        load_site(tmp_path)
    assert "cannot read" in str(info.value)
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "list"), ("just a sentence\n", "str"), ("", "NoneType"), ("42\n", "int")],
)
def test_top_level_must_be_a_mapping(tmp_path, text, kind):
    f = tmp_path / "site.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(SiteError) as info:
        load_site(f)
    (problem,) = info.value.problems
    assert problem.startswith("(top level): ")
    assert "mapping" in problem
    assert kind in problem


def test_parse_site_rejects_non_mapping_directly():
    with pytest.raises(SiteError, match=r"\(top level\): expected a mapping"):
        parse_site(["name", "rucio"])


def test_non_utf8_file_is_a_readable_error(tmp_path):
    f = tmp_path / "site.yaml"
    f.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SiteError) as info:
        load_site(f)
    assert "cannot read the file" in str(info.value)


# --------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sitefile", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )


def test_cli_accepts_the_example():
    done = _cli(str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
    site = load_site(EXAMPLE)
    assert repr(site.name) in done.stdout
    assert site.rucio.default.rucio_host in done.stdout


def test_cli_rejects_a_bad_file_without_a_traceback(tmp_path, data):
    data["local"]["hub_port"] = "eighty"
    data["nmae"] = "typo"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = _cli(str(bad))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "OK" not in done.stdout
    assert "local.hub_port" in done.stderr
    assert "nmae" in done.stderr
    assert "2 problem(s)" in done.stderr


def test_cli_reports_a_missing_file_without_a_traceback(tmp_path):
    done = _cli(str(tmp_path / "missing.yaml"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "does not exist" in done.stderr


def test_cli_usage_without_arguments():
    done = _cli()
    assert done.returncode == 2
    assert "usage" in done.stderr


# --------------------------------------------------------------------------- cluster sites

CLUSTER_EXAMPLE = REPO_ROOT / "examples" / "site.cluster.yaml"


@pytest.fixture
def cluster() -> dict:
    """A private copy of the cluster example (OIDC login, kubernetes section)."""
    data = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_cluster_example_loads_with_oidc_and_kubernetes():
    site = load_site(CLUSTER_EXAMPLE)
    raw = yaml.safe_load(CLUSTER_EXAMPLE.read_text(encoding="utf-8"))
    assert site.local is None
    assert site.auth.type == "oidc"
    assert site.auth.secret_name == raw["auth"]["secret_name"]
    assert site.auth.token_exchange_audience == "rucio"
    assert "openid" in site.auth.scopes
    k8s = site.kubernetes
    assert k8s is not None
    assert k8s.namespace == raw["kubernetes"]["namespace"]
    assert [p.name for p in site.profiles] == [p["name"] for p in raw["profiles"]]
    assert site.default_profile.default is True
    assert k8s.cache_claim.storage_class == raw["kubernetes"]["cache_claim"]["storage_class"]
    assert [r.cidr for r in k8s.egress] == [r["cidr"] for r in raw["kubernetes"]["egress"]]


def test_kubernetes_defaults():
    d = _minimal()
    d["kubernetes"] = {"issuer_url": "https://hub.example.org/services/lakehub-issuer"}
    k8s = parse_site(d).kubernetes
    assert k8s is not None
    assert k8s.namespace == "lakehub"
    assert k8s.images.singleuser.reference == "localhost/lakehub/singleuser:0.1.0"
    assert k8s.images.hub.reference == "localhost/lakehub/hub:0.1.0"
    assert k8s.cache_claim.size == "100Gi"
    assert k8s.cache_claim.nfs is None
    assert k8s.culling.enabled and k8s.culling.timeout_seconds == 3600
    assert k8s.egress == []
    assert k8s.rucio_admin_secret == "lakehub-rucio-admin"


def test_native_cluster_issuer_defaults_to_the_token_service_behind_the_public_url():
    d = _minimal()
    d["kubernetes"] = {"public_url": "https://hub.example.org/"}
    assert (
        parse_site(d).kubernetes.token_issuer_url
        == "https://hub.example.org/services/lakehub-issuer"
    )
    d["kubernetes"]["issuer_url"] = "https://tokens.example.org/"
    assert parse_site(d).kubernetes.token_issuer_url == "https://tokens.example.org"


def test_oidc_defaults(cluster):
    for key in ("username_claim", "scopes", "token_exchange_audience"):
        cluster["auth"].pop(key)
    auth = parse_site(cluster).auth
    assert auth.username_claim == "preferred_username"
    assert auth.scopes[0] == "openid"
    assert auth.token_exchange_audience == "rucio"
    assert auth.allow_all is False


def test_nfs_cache_claim_and_a_namespace_egress_rule(cluster):
    cluster["kubernetes"]["cache_claim"] = {
        "nfs": {"server": "nfs.example.org", "path": "/exports/cache"},
        "size": "2Ti",
    }
    cluster["kubernetes"]["egress"].append(
        {"namespace": "rucio", "pod_labels": {"app": "rucio-server"}}
    )
    k8s = parse_site(cluster).kubernetes
    assert k8s.cache_claim.nfs.server == "nfs.example.org"
    assert k8s.egress[1].namespace == "rucio"
    assert k8s.egress[1].ports is None  # the Rucio URLs' ports, filled in by the values


def test_private_rucio_address_inside_an_egress_block_is_accepted(cluster):
    _first_instance(cluster)["rucio_host"] = "https://10.40.3.7"
    _first_instance(cluster)["auth_host"] = "https://10.40.3.8:8443"
    assert parse_site(cluster).rucio.default.rucio_host == "https://10.40.3.7"


# (id, mutation of the cluster example, field path, texts that say what is wrong)
CLUSTER_BAD_INPUT = [
    (
        "oidc-issuer-not-a-url",
        _set(("auth", "issuer"), "keycloak.example.org/realms/physics"),
        "auth.issuer",
        ["http://", "https://"],
    ),
    (
        "oidc-missing-token-url",
        lambda d: d["auth"].pop("token_url"),
        "auth.token_url",
        ["required field is missing"],
    ),
    (
        "oidc-missing-secret-name",
        lambda d: d["auth"].pop("secret_name"),
        "auth.secret_name",
        ["required field is missing"],
    ),
    (
        "oidc-secret-name-not-a-kubernetes-name",
        _set(("auth", "secret_name"), "My_OIDC_Secret"),
        "auth.secret_name",
        ["Kubernetes", "'My_OIDC_Secret'"],
    ),
    (
        "oidc-scopes-without-openid",
        _set(("auth", "scopes"), ["profile", "email"]),
        "auth.scopes",
        ["'openid'"],
    ),
    (
        "oidc-scope-with-a-space",
        _set(("auth", "scopes"), ["openid", "profile email"]),
        "auth.scopes",
        ["'profile email'"],
    ),
    (
        "oidc-nobody-allowed",
        lambda d: d["auth"].pop("allowed_groups"),
        "auth",
        ["allowed_groups", "allow_all"],
    ),
    (
        "oidc-with-the-local-stack",
        _set(("local",), {}),
        "auth.type",
        ["'native'", "'oidc'", "local"],
    ),
    (
        "auth-without-type",
        lambda d: d["auth"].pop("type"),
        "auth.type",
        ["required field is missing", "'native'", "'oidc'"],
    ),
    (
        "native-cluster-without-issuer-or-public-url",
        lambda d: (
            d.__setitem__("auth", {"type": "native", "admin_users": ["teacher"]}),
            d["kubernetes"].pop("public_url", None),
        ),
        "kubernetes.issuer_url",
        ["native", "issuer", "Rucio"],
    ),
    (
        "namespace-uppercase",
        _set(("kubernetes", "namespace"), "LakeHub"),
        "kubernetes.namespace",
        ["Kubernetes name", "'LakeHub'"],
    ),
    (
        "image-tag-with-a-colon",
        _set(("kubernetes", "images", "singleuser"), {"repository": "x/y", "tag": "1:2"}),
        "kubernetes.images.singleuser.tag",
        ["'1:2'"],
    ),
    (
        "image-repository-with-a-tag",
        _set(("kubernetes", "images", "hub"), {"repository": "Reg/Hub:1", "tag": "1"}),
        "kubernetes.images.hub.repository",
        ["without tag", "'Reg/Hub:1'"],
    ),
    (
        "profile-memory-in-kubernetes-units",
        _set(("profiles", 0, "memory"), "4Gi"),
        "profiles[0].memory",
        ["K, M, G, T", "'4Gi'"],
    ),
    (
        "profile-cpu-zero",
        _set(("profiles", 1, "cpu"), 0),
        "profiles[1].cpu",
        ["greater than 0"],
    ),
    (
        "profile-guarantee-above-limit",
        _set(("profiles", 0, "memory_guarantee"), "8G"),
        "profiles[0]",
        ["memory_guarantee", "8G", "4G"],
    ),
    (
        "profiles-same-name",
        _set(("profiles", 1, "name"), "standard"),
        "profiles",
        ["names must differ", "Standard"],
    ),
    (
        "profiles-two-defaults",
        _set(("profiles", 1, "default"), True),
        "profiles",
        ["at most one default", "Large"],
    ),
    (
        "no-profiles",
        _set(("profiles",), []),
        "profiles",
        ["at least 1"],
    ),
    (
        "cache-claim-size-without-unit-letters",
        _set(("kubernetes", "cache_claim", "size"), "lots"),
        "kubernetes.cache_claim.size",
        ["100Gi", "'lots'"],
    ),
    (
        "cache-claim-nfs-and-storage-class",
        _set(("kubernetes", "cache_claim", "nfs"), {"server": "10.1.1.1", "path": "/exports/x"}),
        "kubernetes.cache_claim",
        ["storage_class", "nfs", "not both"],
    ),
    (
        "cache-claim-nfs-relative-path",
        lambda d: d["kubernetes"].update(
            cache_claim={"nfs": {"server": "nfs.example.org", "path": "exports/x"}}
        ),
        "kubernetes.cache_claim.nfs.path",
        ["absolute", "'exports/x'"],
    ),
    (
        "culling-timeout-too-short",
        _set(("kubernetes", "culling", "timeout_seconds"), 60),
        "kubernetes.culling.timeout_seconds",
        ["greater than or equal to 300"],
    ),
    (
        "culling-every-above-timeout",
        _set(("kubernetes", "culling"), {"timeout_seconds": 600, "every_seconds": 900}),
        "kubernetes.culling",
        ["every_seconds", "900", "600"],
    ),
    (
        "egress-cidr-with-host-bits",
        _set(("kubernetes", "egress", 0, "cidr"), "10.40.0.1/16"),
        "kubernetes.egress[0].cidr",
        ["host bits", "'10.40.0.1/16'"],
    ),
    (
        "egress-rule-with-two-destinations",
        _set(("kubernetes", "egress", 0, "namespace"), "rucio"),
        "kubernetes.egress[0]",
        ["exactly one of cidr or namespace"],
    ),
    (
        "egress-port-out-of-range",
        _set(("kubernetes", "egress", 0, "ports"), [443, 70000]),
        "kubernetes.egress[0].ports[1]",
        ["65535", "70000"],
    ),
    (
        "kubernetes-unknown-field",
        _set(("kubernetes", "namepsace"), "lakehub"),
        "kubernetes.namepsace",
        ["unknown field"],
    ),
    (
        "rucio-on-loopback-for-a-cluster",
        _set(("rucio", "instances", 0, "rucio_host"), "http://127.0.0.1:8010"),
        "rucio.instances[0].rucio_host",
        ["loopback", "pods"],
    ),
    (
        "rucio-on-a-private-address-no-egress-rule-opens",
        _set(("rucio", "instances", 0, "auth_host"), "https://192.168.7.7"),
        "rucio.instances[0].auth_host",
        ["192.168.7.7", "private", "kubernetes.egress"],
    ),
]


@pytest.mark.parametrize(("mutate", "where", "what"), _params(CLUSTER_BAD_INPUT))
def test_cluster_bad_input_names_the_field_and_the_problem(cluster, mutate, where, what):
    _refused(cluster, mutate, where, what)


def test_cli_accepts_the_cluster_example():
    done = _cli(str(CLUSTER_EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout


# --------------------------------------------------------------------------- courses


def _course(**change) -> dict:
    return {"name": "demo", "source": "../courses/demo", "target": "course-demo", **change}


COURSE_BAD_INPUT = [
    ("course-name-not-an-identifier", [_course(name="Week 1")], "courses[0].name", ["lowercase"]),
    (
        "course-missing-source",
        [{"name": "demo", "target": "x"}],
        "courses[0].source",
        ["required field is missing"],
    ),
    (
        "course-target-outside-home",
        [_course(target="../elsewhere")],
        "courses[0].target",
        ["inside the user's home"],
    ),
    (
        "course-target-absolute",
        [_course(target="/srv/course")],
        "courses[0].target",
        ["inside the user's home"],
    ),
    ("course-bad-branch", [_course(branch="-x..y")], "courses[0].branch", ["git branch name"]),
    ("course-unknown-field", [_course(folder="x")], "courses[0].folder", ["unknown field"]),
    ("course-names-repeat", [_course(), _course(target="other")], "courses", ["unique", "demo"]),
    (
        "course-targets-repeat",
        [_course(), _course(name="other")],
        "courses[1].target",
        ["overlaps", "demo"],
    ),
    (
        "course-target-inside-another",
        [_course(), _course(name="b", target="course-demo/b")],
        "courses[1].target",
        ["overlaps"],
    ),
    (
        "course-target-is-the-notebooks-folder",
        [_course(target="atlas-opendata")],
        "courses[0].target",
        ["notebooks.target"],
    ),
]


@pytest.mark.parametrize(
    ("courses", "where", "what"),
    [pytest.param(c, w, t, id=i) for i, c, w, t in COURSE_BAD_INPUT],
)
def test_course_bad_input_names_the_field_and_the_problem(data, courses, where, what):
    data["courses"] = courses
    problem = _only_problem(data)
    assert problem.startswith(where), problem
    for fragment in what:
        assert fragment in problem, f"{fragment!r} not in {problem!r}"


def test_courses_folder_sources_resolve_against_the_site_file_and_urls_stay(tmp_path, data):
    data["courses"] = [
        _course(),
        {
            "name": "remote",
            "source": "https://git.example.org/physics.git",
            "target": "physics",
            "branch": "spring-2025",
        },
        {"name": "ssh", "source": "git@git.example.org:course/lab.git", "target": "lab"},
    ]
    site_file = tmp_path / "sub" / "site.yaml"
    site_file.parent.mkdir()
    site_file.write_text(yaml.safe_dump(data))
    _make_named_files(site_file, data)
    site = load_site(site_file)
    demo, remote, ssh = site.courses
    assert not demo.is_git_url and demo.source == str((tmp_path / "courses" / "demo").resolve())
    assert remote.is_git_url and remote.source == "https://git.example.org/physics.git"
    assert remote.branch == "spring-2025" and ssh.is_git_url and ssh.branch == "main"


def test_the_example_names_a_course_for_everyone_and_one_with_members():
    site = load_site(EXAMPLE)
    assert [c.name for c in site.courses] == ["demo", "hyy"]
    for course in site.courses:
        assert Path(course.source) == REPO_ROOT / "examples" / "courses" / course.name
        assert any(Path(course.source).glob("*.ipynb"))
    demo, hyy = site.courses
    assert demo.students == "everyone" and demo.instructors == []
    assert hyy.students == ["student"] and hyy.instructors == ["instructor"]


# --------------------------------------------------------------------------- unsafe or doomed
# Input that would pass a syntax check but can only fail later, or is unsafe (issue 16):
# plain http to other machines, files that are not there, sizes beyond any machine, URLs
# with a query or fragment, and messages that would echo a huge value.

# (id, mutation of the cluster example, field path, texts that say what to write instead)
CLEAR_TEXT = [
    (
        "rucio-over-plain-http",
        _set(("rucio", "instances", 0, "rucio_host"), "http://rucio.lab.example.org:8010"),
        "rucio.instances[0].rucio_host",
        ["plain http://", "https://", "insecure: true"],
    ),
    (
        "rucio-auth-over-plain-http",
        _set(("rucio", "instances", 0, "auth_host"), "http://rucio-auth.example.org"),
        "rucio.instances[0].auth_host",
        ["in clear", "https://", "insecure: true"],
    ),
    (
        "identity-provider-token-endpoint-over-plain-http",
        _set(("auth", "token_url"), "http://keycloak.example.org/realms/physics/token"),
        "auth.token_url",
        ["plain http://", "insecure: true"],
    ),
    (
        "identity-provider-over-plain-http-names-every-field",
        lambda d: d["auth"].update(
            issuer="http://kc.example.org/realms/p", userinfo_url="http://kc.example.org/u"
        ),
        "auth.issuer",
        ["auth.userinfo_url", "insecure: true"],
    ),
    (
        "hub-over-plain-http",
        _set(("kubernetes", "public_url"), "http://hub.example.org"),
        "kubernetes.public_url",
        ["plain http://", "insecure: true"],
    ),
]


@pytest.mark.parametrize(("mutate", "where", "what"), _params(CLEAR_TEXT))
def test_plain_http_to_another_machine_is_refused_unless_insecure(cluster, mutate, where, what):
    _refused(cluster, mutate, f"{where}: ", what)
    cluster["insecure"] = True
    site = parse_site(cluster)
    (warning,) = site.warnings
    assert where in warning and "in clear" in warning


def test_the_one_node_lab_site_says_insecure_and_is_warned_about(cluster):
    """A lab cluster on one machine: Rucio on the node's own address over plain http."""
    _first_instance(cluster).update(rucio_host="http://192.0.2.2:8010")
    _first_instance(cluster).pop("auth_host")
    cluster["kubernetes"]["egress"] = [{"cidr": "192.0.2.2/32", "ports": [8010]}]
    cluster["insecure"] = True
    site = parse_site(cluster)
    assert site.plain_http_urls == [("rucio.instances[0].rucio_host", "http://192.0.2.2:8010")]
    (warning,) = site.warnings
    assert "rucio.instances[0].rucio_host (http://192.0.2.2:8010)" in warning


def test_plain_http_on_this_machine_needs_no_switch(data):
    site = parse_site(data)  # the local example: Rucio on http://127.0.0.1
    assert site.rucio.default.rucio_host.startswith("http://127.0.0.1:")
    assert site.plain_http_urls == [] and site.warnings == []


def test_a_needless_insecure_switch_is_warned_about(cluster):
    cluster["insecure"] = True
    (warning,) = parse_site(cluster).warnings
    assert "remove it" in warning


# (id, mutation of the cluster example, field path, texts that say what to write instead)
URL_PARTS = [
    (
        "rucio-host-with-a-query",
        _set(("rucio", "instances", 0, "rucio_host"), "https://rucio.example.org/?vo=atlas"),
        "rucio.instances[0].rucio_host",
        ["base URL", "query", "write 'https://rucio.example.org'"],
    ),
    (
        "auth-host-with-a-fragment",
        _set(("rucio", "instances", 0, "auth_host"), "https://auth.example.org/api#top"),
        "rucio.instances[0].auth_host",
        ["fragment", "write 'https://auth.example.org/api'"],
    ),
    (
        "issuer-with-a-query",
        _set(("auth", "issuer"), "https://kc.example.org/realms/physics?x=1"),
        "auth.issuer",
        ["base URL", "write 'https://kc.example.org/realms/physics'"],
    ),
    (
        "token-endpoint-with-a-fragment",
        _set(("auth", "token_url"), "https://kc.example.org/token?hint=a#x"),
        "auth.token_url",
        ["fragment", "write 'https://kc.example.org/token?hint=a'"],
    ),
    (
        "public-url-with-an-empty-query",
        _set(("kubernetes", "public_url"), "https://hub.example.org/?"),
        "kubernetes.public_url",
        ["write 'https://hub.example.org'"],
    ),
    (
        "issuer-url-with-a-query",
        _set(("kubernetes", "issuer_url"), "https://hub.example.org/services/x?a=b"),
        "kubernetes.issuer_url",
        ["write 'https://hub.example.org/services/x'"],
    ),
    (
        "rucio-host-not-http-with-a-password",
        _set(("rucio", "instances", 0, "rucio_host"), "ftp://root:hunter2@rucio.example.org"),
        "rucio.instances[0].rucio_host",
        ["http://", "'ftp://…@rucio.example.org'"],
    ),
    (
        "rucio-host-with-a-password",
        _set(("rucio", "instances", 0, "rucio_host"), "https://root:hunter2@rucio.example.org"),
        "rucio.instances[0].rucio_host",
        ["password", "write 'https://rucio.example.org'"],
    ),
]


@pytest.mark.parametrize(("mutate", "where", "what"), _params(URL_PARTS))
def test_a_query_or_fragment_where_only_a_base_url_works(cluster, mutate, where, what):
    problem = _refused(cluster, mutate, f"{where}: ", what)
    assert "hunter2" not in problem  # a password in a URL is never echoed


def test_an_endpoint_may_carry_a_query(cluster):
    cluster["auth"]["authorize_url"] += "?kc_idp_hint=campus"
    assert parse_site(cluster).auth.authorize_url.endswith("?kc_idp_hint=campus")


# (id, mutation of the cluster example, field path, texts that say what to write instead)
SIZES = [
    (
        "quota-beyond-a-petabyte",
        _set(("cache", "quota_gb"), 2_000_000),
        "cache.quota_gb",
        ["at most 1000000", "petabyte", "2000000"],
    ),
    ("quota-zero", _set(("cache", "quota_gb"), 0), "cache.quota_gb", ["greater than 0"]),
    ("quota-negative", _set(("cache", "quota_gb"), -5), "cache.quota_gb", ["greater than 0"]),
    ("quota-infinite", _set(("cache", "quota_gb"), float("inf")), "cache.quota_gb", ["finite"]),
    (
        "quota-larger-than-the-volume",
        _set(("cache", "quota_gb"), 700),
        "cache.quota_gb",
        ["700 GB", "kubernetes.cache_claim.size '600Gi'", "at most 644"],
    ),
    (
        "volume-of-zero",
        _set(("kubernetes", "cache_claim", "size"), "0Gi"),
        "kubernetes.cache_claim.size",
        ["above zero", "'0Gi'"],
    ),
    (
        "volume-beyond-a-petabyte",
        _set(("kubernetes", "cache_claim", "size"), "5000Pi"),
        "kubernetes.cache_claim.size",
        ["petabyte", "'5000Pi'"],
    ),
    (
        "transfer-rate-beyond-any-network",
        _set(("cache", "transfer_rate_limit_mbps"), 1e9),
        "cache.transfer_rate_limit_mbps",
        ["at most 1000000", "terabit"],
    ),
    (
        "profile-memory-of-zero",
        _set(("profiles", 1, "memory"), "0G"),
        "profiles[1].memory",
        ["above zero", "'0G'"],
    ),
    (
        "profile-memory-beyond-any-machine",
        _set(("profiles", 0, "memory"), "100000T"),
        "profiles[0].memory",
        ["'64T'", "'100000T'"],
    ),
    (
        "worker-memory-of-zero",
        _set(("dask", "worker_memory"), "0.0M"),
        "dask.worker_memory",
        ["above zero"],
    ),
    (
        "culling-every-negative",
        _set(("kubernetes", "culling", "every_seconds"), -60),
        "kubernetes.culling.every_seconds",
        ["greater than or equal to 60"],
    ),
]


@pytest.mark.parametrize(("mutate", "where", "what"), _params(SIZES))
def test_sizes_and_counts_beyond_any_machine_or_below_one(cluster, mutate, where, what):
    _refused(cluster, mutate, f"{where}: ", what)


def test_the_quota_may_fill_the_volume_exactly(cluster):
    cluster["kubernetes"]["cache_claim"]["size"] = "500G"
    cluster["cache"]["quota_gb"] = 500
    assert parse_site(cluster).cache.quota_bytes == 500 * 10**9


def _local_site_in(folder: Path, d: dict) -> Path:
    site_file = folder / "site.yaml"
    site_file.write_text(yaml.safe_dump(d), encoding="utf-8")
    _make_named_files(site_file, d)
    return site_file


def test_a_local_quota_larger_than_its_disk_is_refused(tmp_path, data):
    disk = shutil.disk_usage(tmp_path).total
    data["cache"] = {"path": str(tmp_path / "cache"), "quota_gb": 2 * disk / 1e9}
    with pytest.raises(SiteError) as info:
        load_site(_local_site_in(tmp_path, data))
    (problem,) = info.value.problems
    assert problem.startswith("cache.quota_gb: ")
    assert f"at most {int(disk / 1e9)}" in problem and "larger disk" in problem


def _named_file_cases(tmp_path: Path) -> dict:
    """id -> (change to the local example, field path, texts); paths inside ``tmp_path``."""
    not_pem = tmp_path / "key.txt"
    not_pem.write_text("this is not a certificate\n")
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    cases = [
        (
            "ca-cert-missing",
            _set(("rucio", "instances", 0, "ca_cert"), str(tmp_path / "nope.pem")),
            "rucio.instances[0].ca_cert",
            ["does not exist", "nope.pem"],
        ),
        (
            "ca-cert-is-a-folder",
            _set(("rucio", "instances", 0, "ca_cert"), str(tmp_path)),
            "rucio.instances[0].ca_cert",
            ["not a file"],
        ),
        (
            "ca-cert-is-not-pem",
            _set(("rucio", "instances", 0, "ca_cert"), str(not_pem)),
            "rucio.instances[0].ca_cert",
            ["no PEM certificate", "key.txt"],
        ),
        (
            "notebooks-folder-missing",
            _set(("notebooks", "source"), str(tmp_path / "no-notebooks")),
            "notebooks.source",
            ["does not exist", "no-notebooks"],
        ),
        (
            "notebooks-folder-is-a-file",
            _set(("notebooks", "source"), str(a_file)),
            "notebooks.source",
            ["is a file, not a folder"],
        ),
        (
            "course-folder-missing",
            _set(("courses",), [_course(source=str(tmp_path / "no-course"))]),
            "courses[0].source",
            ["does not exist", "no-course"],
        ),
        (
            "cache-path-is-a-file",
            _set(("cache",), {"path": str(a_file)}),
            "cache.path",
            ["is a file"],
        ),
    ]
    return {i: (m, w, t) for i, m, w, t in cases}


NAMED_FILES = [
    "ca-cert-missing",
    "ca-cert-is-a-folder",
    "ca-cert-is-not-pem",
    "notebooks-folder-missing",
    "notebooks-folder-is-a-file",
    "course-folder-missing",
    "cache-path-is-a-file",
]


def test_every_named_file_case_runs(tmp_path):
    assert sorted(_named_file_cases(tmp_path)) == sorted(NAMED_FILES)


@pytest.mark.parametrize("case", NAMED_FILES)
def test_a_named_file_that_is_missing_or_unreadable(tmp_path, data, case):
    mutate, where, what = _named_file_cases(tmp_path)[case]
    site_file = _local_site_in(tmp_path, data)  # every named file exists
    mutate(data)
    site_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(SiteError) as info:
        load_site(site_file)
    (problem,) = info.value.problems
    assert problem.startswith(f"{where}: "), problem
    assert all(fragment in problem for fragment in what), (what, problem)


@pytest.fixture
def open_folder():
    """A folder in /tmp that every account may enter (pytest's tmp_path is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="lakehub-site-test-", dir="/tmp"))
    folder.chmod(0o755)  # noqa: S103  (other accounts must reach the site file)
    yield folder
    shutil.rmtree(folder)


def test_files_the_account_cannot_read(open_folder, data):
    """`make check-site` run by an account that cannot read the CA bundle or enter the
    notebooks folder (both root's alone); the kernel's own permission checks decide."""
    if os.geteuid() != 0:
        pytest.fail("this test makes files that only root can read: run it as root")
    data["courses"] = []
    site_file = _local_site_in(open_folder, data)
    ca = open_folder / "ca.pem"
    ca.write_text(PEM)
    ca.chmod(0o600)
    notebooks = open_folder / "private-notebooks"
    notebooks.mkdir(mode=0o700)
    data["rucio"]["instances"][0]["ca_cert"] = str(ca)
    data["notebooks"]["source"] = str(notebooks)
    site_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    site_file.chmod(0o644)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    done = subprocess.run(
        [*nobody, sys.executable, "-m", "sitefile", str(site_file)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "LAKEHUB_STATE": str(open_folder / "state")},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    problems = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 2, done.stderr
    assert problems[0].startswith("  - rucio.instances[0].ca_cert: ")
    assert "cannot be read (Permission denied)" in problems[0]
    assert problems[1].startswith("  - notebooks.source: ")
    assert "cannot be read" in problems[1]


def test_named_files_are_checked_by_the_loader_not_the_model(data, tmp_path):
    data["notebooks"]["source"] = str(tmp_path / "not-yet")
    parse_site(data)  # pure: no disk


def test_a_cluster_site_names_no_local_files(tmp_path, cluster):
    """The hub on Kubernetes reads its site file far from the notebooks folder."""
    site_file = tmp_path / "etc" / "lakehub" / "site.yaml"
    site_file.parent.mkdir(parents=True)
    site_file.write_text(yaml.safe_dump(cluster), encoding="utf-8")
    site = load_site(site_file)
    assert not site.notebooks.source.exists()


# (id, mutation of the local example, field path at the start of the line)
HUGE = 20_000
LONG_VALUES = [
    ("long-url", _set(("rucio", "instances", 0, "rucio_host"), "ftp://" + "a" * HUGE), "rucio"),
    ("long-name", _set(("rucio", "instances", 0, "name"), "A" * HUGE), "rucio.instances[0].name"),
    ("long-default", _set(("rucio", "default_instance"), "z " * HUGE), "rucio: "),
    ("long-list", lambda d: d.setdefault("cache", {}).update(pinned=["x"] * HUGE), "cache.pinned"),
    ("huge-number", _set(("local", "hub_port"), 10**500), "local.hub_port"),
    ("long-key", _set(("k" * HUGE,), 1), "kkkk"),
    ("long-target", _set(("notebooks", "target"), "/" + "d/" * HUGE), "notebooks.target"),
]


@pytest.mark.parametrize(
    ("mutate", "where"),
    [pytest.param(m, w, id=i) for i, m, w in LONG_VALUES],
)
def test_a_huge_value_is_cut_in_the_message(data, mutate, where):
    mutate(data)
    problem = _only_problem(data)
    assert problem.startswith(where), problem[:200]
    assert len(problem) <= SHOWN_PROBLEM, len(problem)
    cut = re.search(r"….*\((\d+) characters\)", problem)
    assert cut and int(cut.group(1)) > 400, problem


def test_the_cut_keeps_short_values_and_the_words_around_them():
    words = "courses[0].target: expected a folder inside the user's home (relative, no '..'), got"
    assert readable(f"{words} 'x/../y'") == f"{words} 'x/../y'"
    cut = readable(f"{words} '{'y' * 5000}'; pick another")
    assert cut.startswith(f"{words} 'yyy") and cut.endswith("' (5002 characters); pick another")


def test_check_site_warns_about_insecure_and_still_succeeds(tmp_path, cluster):
    _first_instance(cluster).update(rucio_host="http://rucio.lab.example.org:8010")
    cluster["insecure"] = True
    site_file = tmp_path / "lab.yaml"
    site_file.write_text(yaml.safe_dump(cluster), encoding="utf-8")
    done = _make_check_site(site_file)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
    assert f"{site_file}: warning: insecure: true" in done.stderr
    assert "rucio.instances[0].rucio_host (http://rucio.lab.example.org:8010)" in done.stderr


def test_check_site_refuses_plain_http_with_the_field_path(tmp_path, cluster):
    _first_instance(cluster).update(rucio_host="http://rucio.lab.example.org:8010")
    site_file = tmp_path / "lab.yaml"
    site_file.write_text(yaml.safe_dump(cluster), encoding="utf-8")
    for done in (_make_check_site(site_file), _cli(str(site_file))):
        assert done.returncode != 0
        assert "Traceback" not in done.stderr and "OK" not in done.stdout
        assert "  - rucio.instances[0].rucio_host: " in done.stderr
        assert "insecure: true" in done.stderr
    assert done.returncode == 1  # make reports it as "Error 1" and exits 2


def _make_check_site(site_file: Path) -> subprocess.CompletedProcess:
    """`make check-site SITE=...` as a sysadmin types it."""
    return subprocess.run(
        ["make", "--no-print-directory", "check-site", f"SITE={site_file}"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )
