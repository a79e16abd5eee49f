"""Unit tests for the site model (hub_config.site).

The valid base is ``examples/site.local.yaml``; every bad-input test changes one thing
in a copy of it and checks that the error a sysadmin reads names the field and says
what is wrong, without any Python traceback text.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from hub_config.site import SiteError, load_site, parse_site

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
        [sys.executable, "-m", "hub_config.site", *args],
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
