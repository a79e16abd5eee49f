"""Unit tests for what a session receives: Rucio client config, rucio-jupyterlab config,
environment, hub-issued tokens, private file writes, notebook hand-out and the home
writer.  Everything runs on temporary folders; nothing talks to a network.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import stat
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, JoseError
from joserfc.jwk import KeySet, RSAKey

from lakehub import contract, jupyter_ext
from lakehub.files import atomic_write, write_private
from lakehub.jupyter_ext import instances_using_token_file
from sitefile import RucioInstance
from spawner_hooks import home_writer, notebooks, session
from spawner_hooks.notebooks import Action
from tokens import mint as tokens

LOCAL = RucioInstance(name="local", rucio_host="http://127.0.0.1:8010")
REMOTE = RucioInstance(
    name="remote",
    display_name="Remote Rucio",
    rucio_host="https://rucio.example.org",
    auth_host="https://rucio-auth.example.org",
    vo="abc",
    ca_cert="/etc/pki/remote-ca.pem",
)
TOKEN_PATH = "/home/alice/.lakehub/rucio-token"

# What rucio-jupyterlab (rucio_jupyterlab.config.schema) demands of a local instance,
# restated here because that package lives in the analysis environment, not in dev.
RUCIO_JUPYTERLAB_INSTANCE = {
    "type": "object",
    "required": ["name", "display_name", "rucio_base_url", "mode"],
    "properties": {
        "name": {"type": "string"},
        "display_name": {"type": "string"},
        "rucio_base_url": {"type": "string"},
        "rucio_auth_url": {"type": "string"},
        "rucio_ca_cert": {"type": "string"},
        "vo": {"type": "string"},
        "mode": {"type": "string", "enum": ["replica", "download"]},
        "wildcard_enabled": {"type": "boolean"},
        "oidc_auth": {"type": "string", "enum": ["env", "file"]},
        "oidc_file_name": {"type": "string"},
    },
    "if": {"properties": {"mode": {"const": "replica"}}},
    "then": {"required": ["destination_rse", "rse_mount_path"]},
    "else": {"required": ["rucio_ca_cert"]},
}
RUCIO_JUPYTERLAB_INSTANCES = {"type": "array", "items": RUCIO_JUPYTERLAB_INSTANCE}
RUCIO_AUTH_TYPES = {"userpass", "x509", "x509_proxy", "oidc", None}


# =========================================================================== rucio.cfg


def _parse_cfg(text: str) -> configparser.ConfigParser:
    # rucio-clients reads the file with a standard ConfigParser (with interpolation)
    cfg = configparser.ConfigParser()
    cfg.read_string(text)
    return cfg


def test_rucio_cfg_uses_the_token_for_the_account():
    cfg = _parse_cfg(session.rucio_cfg(LOCAL, "alice"))
    client = cfg["client"]
    assert client["auth_type"] == "oidc"
    assert client["account"] == "alice"
    assert client["rucio_host"] == LOCAL.rucio_host
    # no separate auth host: the Rucio host authenticates too
    assert client["auth_host"] == LOCAL.rucio_host
    assert client["vo"] == LOCAL.vo
    assert client["ca_cert"] == session.SYSTEM_CA_BUNDLE


def test_rucio_cfg_takes_auth_host_and_ca_from_the_instance():
    client = _parse_cfg(session.rucio_cfg(REMOTE, "bob--abcdefghij"))["client"]
    assert client["rucio_host"] == REMOTE.rucio_host
    assert client["auth_host"] == REMOTE.auth_host
    assert client["ca_cert"] == str(REMOTE.ca_cert)
    assert client["vo"] == "abc"
    assert client["account"] == "bob--abcdefghij"


def test_rucio_cfg_explicit_ca_cert_wins():
    client = _parse_cfg(session.rucio_cfg(REMOTE, "bob", ca_cert="/srv/ca.pem"))["client"]
    assert client["ca_cert"] == "/srv/ca.pem"


@pytest.mark.parametrize("instance", [LOCAL, REMOTE])
def test_rucio_cfg_holds_no_credentials(instance):
    cfg = _parse_cfg(session.rucio_cfg(instance, "alice"))
    forbidden = ("password", "passwd", "secret", "username", "token", "key", "x509", "proxy")
    for section in cfg.sections():
        for key in cfg[section]:
            assert not any(word in key for word in forbidden), f"[{section}] {key}"


# =========================================================================== rucio-jupyterlab


def _jl_config(**kw) -> dict:
    args = {"instances": [LOCAL, REMOTE], "default": "local", "token_path": TOKEN_PATH}
    args.update(kw)
    return session.rucio_jupyterlab_config(**args)


def test_rucio_jupyterlab_config_satisfies_the_extension_schema():
    conf = _jl_config()
    rucio = conf["RucioConfig"]
    jsonschema.validate(rucio["instances"], RUCIO_JUPYTERLAB_INSTANCES)
    assert rucio["default_auth_type"] in RUCIO_AUTH_TYPES
    assert rucio["default_auth_type"] == "oidc"
    names = [i["name"] for i in rucio["instances"]]
    assert names == ["local", "remote"]
    assert rucio["default_instance"] in names
    # the file must be loadable as JSON config
    assert json.loads(json.dumps(conf)) == conf


def test_rucio_jupyterlab_instances_read_the_token_file():
    for inst in _jl_config()["RucioConfig"]["instances"]:
        assert inst["oidc_auth"] == "file"
        assert inst["oidc_file_name"] == TOKEN_PATH
        if inst["mode"] == "download":
            assert inst["rucio_ca_cert"]


def test_rucio_jupyterlab_instance_details_follow_the_site():
    by_name = {i["name"]: i for i in _jl_config()["RucioConfig"]["instances"]}
    assert by_name["remote"]["display_name"] == "Remote Rucio"
    assert by_name["local"]["display_name"] == "local"  # falls back to the name
    assert by_name["remote"]["rucio_base_url"] == REMOTE.rucio_host
    assert by_name["remote"]["rucio_auth_url"] == REMOTE.auth_host
    assert by_name["local"]["rucio_auth_url"] == LOCAL.rucio_host
    assert by_name["remote"]["rucio_ca_cert"] == str(REMOTE.ca_cert)
    assert by_name["local"]["rucio_ca_cert"] == session.SYSTEM_CA_BUNDLE
    assert by_name["remote"]["vo"] == "abc"


def test_rucio_jupyterlab_default_instance_is_passed_through():
    assert _jl_config(default="remote")["RucioConfig"]["default_instance"] == "remote"


def test_rucio_jupyterlab_config_enables_the_lakehub_extension():
    assert _jl_config()["ServerApp"]["jpserver_extensions"]["lakehub"] is True


def test_lakehub_extension_sees_every_token_file_instance():
    conf = _jl_config()
    assert instances_using_token_file(conf) == ["local", "remote"]


def test_lakehub_extension_ignores_non_oidc_setups():
    conf = _jl_config()
    conf["RucioConfig"]["default_auth_type"] = "userpass"
    assert instances_using_token_file(conf) == []
    assert instances_using_token_file({}) == []
    assert instances_using_token_file({"RucioConfig": None}) == []


def test_lakehub_extension_skips_instances_not_using_a_file():
    conf = _jl_config()
    conf["RucioConfig"]["instances"][1]["oidc_auth"] = "env"
    assert instances_using_token_file(conf) == ["local"]


def test_the_icon_font_is_served_only_when_its_files_are_there(tmp_path):
    assert jupyter_ext.icon_font_folders(tmp_path) == []
    for name in jupyter_ext.ICON_FONT_FILES:
        (tmp_path / name).write_bytes(b"font")
    assert jupyter_ext.icon_font_folders(tmp_path) == [
        str(jupyter_ext.LAB_CUSTOM_DIR),
        str(tmp_path),
    ]


def test_custom_css_loads_the_font_from_beside_itself_only():
    """Every url() in lakehub's custom.css names a font file served from the same folder
    URL; nothing points at another server."""
    css = (jupyter_ext.LAB_CUSTOM_DIR / "custom.css").read_text(encoding="utf-8")
    urls = re.findall(r"url\(\s*['\"]?([^'\")]+)", css)
    assert sorted(urls) == sorted(jupyter_ext.ICON_FONT_FILES)
    assert re.search(r"font-family:\s*\"Material Icons\"", css)
    assert ".material-icons" in css


# =========================================================================== environment


def test_session_env_holds_paths_only():
    root = PurePosixPath("/home/alice/.lakehub")
    paths = session.SessionPaths(root)
    env = session.session_env(paths)
    assert env["RUCIO_CONFIG"] == str(paths.rucio_cfg)
    assert env["BEARER_TOKEN_FILE"] == str(paths.token)
    assert env["JUPYTER_CONFIG_PATH"] == str(paths.jupyter_config_dir)
    for name, value in env.items():
        path = PurePosixPath(value)
        assert path.is_absolute(), name
        assert path == root or root in path.parents, name
        assert "\n" not in value and " " not in value
    # the server config sits where JUPYTER_CONFIG_PATH makes Jupyter look
    assert paths.jupyter_server_config.parent == PurePosixPath(env["JUPYTER_CONFIG_PATH"])


def test_session_env_never_carries_a_token(signing_key):
    token = tokens.Issuer("http://127.0.0.1:8009", signing_key).mint("alice", 1_700_000_000)
    env = session.session_env(session.SessionPaths(PurePosixPath("/h/.lakehub")))
    for value in env.values():
        assert token not in value
        assert not value.startswith("ey")  # no JWT of any kind


def test_session_env_token_path_override():
    paths = session.SessionPaths(PurePosixPath("/h/.lakehub"))
    env = session.session_env(paths, token_path="/run/secrets/rucio-token")
    assert env["BEARER_TOKEN_FILE"] == "/run/secrets/rucio-token"


def test_session_env_names_the_courses_and_the_session_reads_them_back():
    from lakehub.courses import courses_from_environment

    paths = session.SessionPaths(PurePosixPath("/h/.lakehub"))
    courses = [
        {"name": "phys101", "target": "phys101", "repo": "https://git.example/p", "branch": "main"},
        {"name": "lab", "target": "labs/week 1", "repo": "file:///srv/lab.git", "branch": "w1"},
    ]
    env = session.session_env(paths, courses=courses)
    assert courses_from_environment(env) == courses
    assert "LAKEHUB_COURSES" not in session.session_env(paths)
    # a broken or hand-edited variable means no courses, never an error in the server
    for bad in ("not json", '{"name": "x"}', '[{"name": 1, "target": "t"}]', "[3]"):
        assert courses_from_environment({"LAKEHUB_COURSES": bad}) == []


def test_notice_lists_every_problem():
    text = session.notice_markdown(["Rucio (local): down", "second thing"])
    assert "- Rucio (local): down" in text
    assert "- second thing" in text


def test_status_json_round_trips():
    doc = json.loads(session.status_json("alice", ["x"], 123))
    assert doc == {"rucio_account": "alice", "problems": ["x"], "token_expires": 123}


# =========================================================================== tokens

ISSUER_URL = "http://127.0.0.1:8009"
NOW = 1_700_000_000


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("issuer")


@pytest.fixture(scope="module")
def signing_key(key_dir) -> RSAKey:
    return tokens.create_signing_key(key_dir / "signing-key.json")


@pytest.fixture(scope="module")
def other_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "someone-else"})


def _verify(token: str, key: RSAKey) -> jwt.Token:
    return jwt.decode(token, KeySet.import_key_set(tokens.public_jwks(key)), algorithms=["RS256"])


def test_minted_token_verifies_against_the_published_keys(signing_key):
    issuer = tokens.Issuer(ISSUER_URL, signing_key, lifetime=900)
    decoded = _verify(issuer.mint("alice", NOW), signing_key)
    assert decoded.header["alg"] == "RS256"
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.header["kid"]
    assert decoded.header["kid"] == signing_key.kid
    jwks_kids = [k["kid"] for k in issuer.jwks()["keys"]]
    assert decoded.header["kid"] in jwks_kids


def test_minted_token_claims_are_what_rucio_checks(signing_key):
    issuer = tokens.Issuer(ISSUER_URL, signing_key, lifetime=900)
    claims = _verify(issuer.mint("Jürgen", NOW), signing_key).claims
    assert claims["iss"] == ISSUER_URL
    assert claims["sub"] == "Jürgen"
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert "rucio" in aud
    assert {"openid", "profile"} <= set(claims["scope"].split())
    assert claims["exp"] == NOW + 900
    assert claims["iat"] <= NOW <= claims["exp"]
    registry = jwt.JWTClaimsRegistry(
        now=NOW + 1,
        iss={"essential": True, "value": ISSUER_URL},
        sub={"essential": True, "value": "Jürgen"},
        aud={"essential": True, "value": "rucio"},
        exp={"essential": True},
    )
    registry.validate(claims)


def test_minted_token_expires_after_its_lifetime(signing_key):
    issuer = tokens.Issuer(ISSUER_URL, signing_key, lifetime=60)
    claims = _verify(issuer.mint("alice", NOW), signing_key).claims
    with pytest.raises(ExpiredTokenError):
        jwt.JWTClaimsRegistry(now=NOW + 61).validate(claims)


def test_each_token_is_unique(signing_key):
    issuer = tokens.Issuer(ISSUER_URL, signing_key)
    a = _verify(issuer.mint("alice", NOW), signing_key).claims
    b = _verify(issuer.mint("alice", NOW), signing_key).claims
    assert a["jti"] != b["jti"]


def test_token_does_not_verify_against_another_key(signing_key, other_key):
    token = tokens.Issuer(ISSUER_URL, signing_key).mint("alice", NOW)
    with pytest.raises(JoseError):  # unknown kid in another issuer's key set
        _verify(token, other_key)
    other_public = RSAKey.import_key(other_key.as_dict(private=False))
    with pytest.raises(BadSignatureError):  # the bare key: the signature itself is wrong
        jwt.decode(token, other_public, algorithms=["RS256"])


def test_token_from_another_key_with_the_same_kid_is_rejected(signing_key):
    impostor = RSAKey.generate_key(2048, parameters={"kid": signing_key.kid})
    token = tokens.Issuer(ISSUER_URL, impostor).mint("alice", NOW)
    with pytest.raises(BadSignatureError):
        _verify(token, signing_key)


def test_public_jwks_has_no_private_parts(signing_key):
    (jwk,) = tokens.public_jwks(signing_key)["keys"]
    assert jwk["kty"] == "RSA"
    assert jwk["kid"] == signing_key.kid
    for private in ("d", "p", "q", "dp", "dq", "qi"):
        assert private not in jwk


def test_nonpositive_lifetime_is_refused():
    for lifetime in (0, -5):
        with pytest.raises(ValueError):
            tokens.access_token_claims(issuer=ISSUER_URL, subject="a", now=NOW, lifetime=lifetime)


def test_signing_key_file_is_private_and_reused(key_dir, signing_key):
    path = key_dir / "signing-key.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = tokens.create_signing_key(path)
    assert again.kid == signing_key.kid
    assert tokens.public_jwks(again) == tokens.public_jwks(signing_key)
    # a token from the reloaded key verifies with the first key's public half
    _verify(tokens.Issuer(ISSUER_URL, again).mint("alice", NOW), signing_key)
    loaded = tokens.load_signing_key(path)
    assert loaded.kid == signing_key.kid


def test_signing_key_file_stays_private_under_a_permissive_umask(tmp_path):
    previous = os.umask(0)
    try:
        path = tmp_path / "k.json"
        tokens.create_signing_key(path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_discovery_document_points_at_the_issuer():
    doc = tokens.discovery_document(ISSUER_URL)
    assert doc["issuer"] == ISSUER_URL
    assert doc["jwks_uri"].startswith(ISSUER_URL + "/")
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    for endpoint in ("authorization_endpoint", "token_endpoint"):
        assert doc[endpoint].startswith(ISSUER_URL + "/")


def test_oidc_identity_is_rucio_style():
    identity = tokens.oidc_identity("alice", ISSUER_URL)
    assert identity == f"SUB=alice, ISS={ISSUER_URL}"
    assert tokens.oidc_identity("bob", ISSUER_URL) != identity
    assert tokens.oidc_identity("alice", "http://other") != identity


# =========================================================================== files


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_write_private_is_0600_even_with_a_permissive_umask(tmp_path):
    target = tmp_path / "secret"
    previous = os.umask(0)
    try:
        write_private(target, "s3cr3t")
        write_private(tmp_path / "bytes-secret", b"\x00\x01")
    finally:
        os.umask(previous)
    assert target.read_text() == "s3cr3t"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "bytes-secret").stat().st_mode) == 0o600
    assert _leftovers(tmp_path, {"secret", "bytes-secret"}) == []


def test_write_private_tightens_an_existing_open_file(tmp_path):
    target = tmp_path / "secret"
    target.write_text("old")
    target.chmod(0o666)
    write_private(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_failed_write_keeps_the_old_content_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "secret"
    write_private(target, "old content")
    with pytest.raises(TypeError):
        write_private(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old content"
    assert _leftovers(tmp_path, {"secret"}) == []


def test_atomic_write_creates_parents_and_honours_mode(tmp_path):
    target = tmp_path / "a" / "b" / "c.json"
    atomic_write(target, "{}", 0o644)
    assert target.read_text() == "{}"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


# =========================================================================== notebooks.plan

S, H, D, N = "src-hash", "home-hash", "delivered-hash", "new-src-hash"

# (case from the docstring, source, home, delivered, expected action)
PLAN_CASES = [
    ("never delivered, absent -> copy", {"f": S}, {}, {}, Action.COPY),
    ("delivered, untouched, source new -> update", {"f": N}, {"f": D}, {"f": D}, Action.UPDATE),
    ("changed by the student -> keep", {"f": S}, {"f": H}, {"f": S}, Action.KEEP_EDITED),
    ("changed, and source new -> keep", {"f": N}, {"f": H}, {"f": S}, Action.KEEP_EDITED),
    ("changed to the new source -> keep", {"f": N}, {"f": N}, {"f": S}, Action.KEEP_EDITED),
    ("delivered then deleted -> leave deleted", {"f": S}, {}, {"f": S}, Action.KEEP_DELETED),
    ("deleted, source new -> leave deleted", {"f": N}, {}, {"f": S}, Action.KEEP_DELETED),
    ("student's own file first -> keep", {"f": S}, {"f": H}, {}, Action.KEEP_UNRELATED),
    ("student's file equals source", {"f": S}, {"f": S}, {}, Action.UNCHANGED),
    ("delivered, untouched, same source", {"f": S}, {"f": S}, {"f": S}, Action.UNCHANGED),
]


@pytest.mark.parametrize(
    ("source", "home", "delivered", "expected"),
    [pytest.param(s, h, d, e, id=i) for i, s, h, d, e in PLAN_CASES],
)
def test_plan(source, home, delivered, expected):
    assert notebooks.plan(source, home, delivered) == {"f": expected}


def test_plan_covers_source_files_only():
    actions = notebooks.plan({"a": S}, {"a": S, "mine": H}, {"a": S, "gone": D})
    assert set(actions) == {"a"}


def test_plan_never_overwrites_a_file_the_student_changed():
    # property: whatever the hashes, a home file that differs from what lakehub
    # delivered (or that lakehub never delivered) is never copied over
    values = [None, "x", "y", "z"]
    for src in values[1:]:
        for have in values:
            for gave in values:
                home = {} if have is None else {"f": have}
                delivered = {} if gave is None else {"f": gave}
                action = notebooks.plan({"f": src}, home, delivered)["f"]
                if action in (Action.COPY, Action.UPDATE) and have is not None:
                    assert have == gave, (src, have, gave, action)
                if action is Action.COPY:
                    assert have is None and gave is None


# =========================================================================== notebooks.sync


@pytest.fixture
def course(tmp_path) -> dict[str, Path]:
    source = tmp_path / "source"
    (source / "part2").mkdir(parents=True)
    (source / "intro.ipynb").write_text("intro v1")
    (source / "exercise.ipynb").write_text("exercise v1")
    (source / "part2" / "fit.ipynb").write_text("fit v1")
    (source / "data.txt").write_text("data v1")
    (source / ".ipynb_checkpoints").mkdir()
    (source / ".ipynb_checkpoints" / "intro-checkpoint.ipynb").write_text("checkpoint")
    home = tmp_path / "home"
    home.mkdir()
    return {
        "source": source,
        "target": home / "course",
        "manifest": home / ".lakehub" / notebooks.MANIFEST,
    }


def _sync(c: dict[str, Path]) -> dict[str, Action]:
    return notebooks.sync(c["source"], c["target"], c["manifest"])


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if "lakehub-tmp" in p.name or p.suffix == ".tmp"]


def test_first_sync_copies_everything(course):
    actions = _sync(course)
    expected = {"intro.ipynb", "exercise.ipynb", "part2/fit.ipynb", "data.txt"}
    assert actions == dict.fromkeys(expected, Action.COPY)
    for rel in expected:
        assert (course["target"] / rel).read_text() == (course["source"] / rel).read_text()
    assert set(json.loads(course["manifest"].read_text())) == expected
    _no_temp_files(course["target"])


def test_checkpoints_are_not_handed_out(course):
    _sync(course)
    assert not (course["target"] / ".ipynb_checkpoints").exists()
    # nor does a checkpoint folder in the home disturb anything
    (course["target"] / ".ipynb_checkpoints").mkdir()
    (course["target"] / ".ipynb_checkpoints" / "intro-checkpoint.ipynb").write_text("mine")
    actions = _sync(course)
    assert all(not rel.startswith(".ipynb_checkpoints") for rel in actions)
    assert set(actions.values()) == {Action.UNCHANGED}
    assert (course["target"] / ".ipynb_checkpoints" / "intro-checkpoint.ipynb").read_text() == (
        "mine"
    )


def test_second_sync_without_changes_does_nothing(course):
    _sync(course)
    before = {p: p.stat().st_mtime_ns for p in course["target"].rglob("*") if p.is_file()}
    actions = _sync(course)
    assert set(actions.values()) == {Action.UNCHANGED}
    after = {p: p.stat().st_mtime_ns for p in course["target"].rglob("*") if p.is_file()}
    assert before == after


def test_student_edit_survives_a_source_change(course):
    _sync(course)
    (course["target"] / "exercise.ipynb").write_text("my solution")
    (course["source"] / "exercise.ipynb").write_text("exercise v2")
    actions = _sync(course)
    assert actions["exercise.ipynb"] is Action.KEEP_EDITED
    assert (course["target"] / "exercise.ipynb").read_text() == "my solution"
    # and it still survives the next source change
    (course["source"] / "exercise.ipynb").write_text("exercise v3")
    assert _sync(course)["exercise.ipynb"] is Action.KEEP_EDITED
    assert (course["target"] / "exercise.ipynb").read_text() == "my solution"


def test_untouched_file_gets_the_new_version(course):
    _sync(course)
    (course["source"] / "part2" / "fit.ipynb").write_text("fit v2")
    actions = _sync(course)
    assert actions["part2/fit.ipynb"] is Action.UPDATE
    assert (course["target"] / "part2" / "fit.ipynb").read_text() == "fit v2"
    # the manifest now remembers v2, so a later v3 updates again
    (course["source"] / "part2" / "fit.ipynb").write_text("fit v3")
    assert _sync(course)["part2/fit.ipynb"] is Action.UPDATE
    assert (course["target"] / "part2" / "fit.ipynb").read_text() == "fit v3"
    _no_temp_files(course["target"])


def test_deleted_file_stays_deleted(course):
    _sync(course)
    (course["target"] / "intro.ipynb").unlink()
    assert _sync(course)["intro.ipynb"] is Action.KEEP_DELETED
    assert not (course["target"] / "intro.ipynb").exists()
    (course["source"] / "intro.ipynb").write_text("intro v2")
    assert _sync(course)["intro.ipynb"] is Action.KEEP_DELETED
    assert not (course["target"] / "intro.ipynb").exists()


def test_students_own_file_of_the_same_name_is_kept(course):
    course["target"].mkdir(parents=True)
    (course["target"] / "data.txt").write_text("my own data")
    actions = _sync(course)
    assert actions["data.txt"] is Action.KEEP_UNRELATED
    assert (course["target"] / "data.txt").read_text() == "my own data"
    # it was never delivered, so a later source change must not touch it either
    (course["source"] / "data.txt").write_text("data v2")
    assert _sync(course)["data.txt"] is Action.KEEP_UNRELATED
    assert (course["target"] / "data.txt").read_text() == "my own data"
    # the other files were still handed out
    assert (course["target"] / "intro.ipynb").read_text() == "intro v1"


def test_new_source_file_is_handed_out_later(course):
    _sync(course)
    (course["source"] / "bonus.ipynb").write_text("bonus")
    actions = _sync(course)
    assert actions["bonus.ipynb"] is Action.COPY
    assert (course["target"] / "bonus.ipynb").read_text() == "bonus"


def test_missing_source_does_nothing(tmp_path):
    actions = notebooks.sync(tmp_path / "absent", tmp_path / "t", tmp_path / "m.json")
    assert actions == {}
    assert not (tmp_path / "t").exists()


# =========================================================================== home_writer


@pytest.fixture
def restore_umask():
    # apply() sets the process umask (it normally runs in a child process)
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def _bundle(home: Path, source: Path | None, *, token: str | None, notice: str) -> dict:
    paths = session.SessionPaths(PurePosixPath(home) / ".lakehub")
    return {
        "home": str(home),
        "session_dir": str(paths.root),
        "files": {
            str(paths.rucio_cfg): session.rucio_cfg(LOCAL, "alice"),
            str(paths.jupyter_server_config): json.dumps(
                session.rucio_jupyterlab_config([LOCAL], "local", str(paths.token))
            ),
        },
        "private": {str(paths.token): token} if token else {},
        "notice_name": contract.NOTICE_FILE,
        "notice": notice,
        "notebooks": {
            "source": str(source),
            "target": "course",
            "manifest": str(paths.root / notebooks.MANIFEST),
        }
        if source
        else None,
    }


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "alice"
    h.mkdir()
    return h


@pytest.fixture
def nb_source(tmp_path) -> Path:
    src = tmp_path / "nb-source"
    src.mkdir()
    (src / "intro.ipynb").write_text("{}")
    (src / "second.ipynb").write_text('{"cells": []}')
    return src


def test_apply_writes_the_session(home, nb_source, restore_umask):
    bundle = _bundle(home, nb_source, token="header.payload.sig", notice="")
    report = home_writer.apply(bundle)

    session_dir = home / ".lakehub"
    assert stat.S_IMODE(session_dir.stat().st_mode) == 0o700
    for path, text in bundle["files"].items():
        assert Path(path).read_text() == text
    token_file = session_dir / "rucio-token"
    assert token_file.read_text() == "header.payload.sig"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert not (home / contract.NOTICE_FILE).exists()
    assert report == {"notebooks": {"intro.ipynb": "copy", "second.ipynb": "copy"}}
    assert (home / "course" / "intro.ipynb").read_text() == "{}"
    # the written config is what the hub meant to write
    cfg = _parse_cfg((session_dir / "rucio.cfg").read_text())
    assert cfg["client"]["account"] == "alice"
    assert json.loads((session_dir / "jupyter" / "jupyter_server_config.json").read_text())
    _no_temp_files(home)


def test_apply_makes_an_existing_session_dir_private(home, restore_umask):
    (home / ".lakehub").mkdir(mode=0o755)
    (home / ".lakehub").chmod(0o755)
    home_writer.apply(_bundle(home, None, token="t", notice=""))
    assert stat.S_IMODE((home / ".lakehub").stat().st_mode) == 0o700


def test_apply_writes_and_then_removes_the_notice(home, restore_umask):
    notice_text = session.notice_markdown(["Rucio (local): not reachable"])
    home_writer.apply(_bundle(home, None, token=None, notice=notice_text))
    notice = home / contract.NOTICE_FILE
    assert notice.read_text() == notice_text
    assert "Rucio (local): not reachable" in notice.read_text()

    home_writer.apply(_bundle(home, None, token="t", notice=""))
    assert not notice.exists()


def test_apply_replaces_the_token(home, restore_umask):
    home_writer.apply(_bundle(home, None, token="first", notice=""))
    home_writer.apply(_bundle(home, None, token="second", notice=""))
    token_file = home / ".lakehub" / "rucio-token"
    assert token_file.read_text() == "second"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_apply_reports_notebook_sync_on_later_spawns(home, nb_source, restore_umask):
    home_writer.apply(_bundle(home, nb_source, token="t", notice=""))
    (home / "course" / "intro.ipynb").write_text("edited by alice")
    (nb_source / "intro.ipynb").write_text('{"v": 2}')
    (nb_source / "second.ipynb").write_text('{"v": 2}')
    report = home_writer.apply(_bundle(home, nb_source, token="t", notice=""))
    assert report["notebooks"] == {"intro.ipynb": "keep-edited", "second.ipynb": "update"}
    assert (home / "course" / "intro.ipynb").read_text() == "edited by alice"
    assert (home / "course" / "second.ipynb").read_text() == '{"v": 2}'


def test_apply_without_a_notebook_source_reports_nothing(home, tmp_path, restore_umask):
    assert home_writer.apply(_bundle(home, None, token="t", notice="")) == {"notebooks": {}}
    missing = tmp_path / "no-such-folder"
    report = home_writer.apply(_bundle(home, missing, token="t", notice=""))
    assert report == {"notebooks": {}}
    assert not (home / "course").exists()


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"a.ipynb": 5}'])
def test_a_damaged_manifest_never_blocks_the_sync_nor_overwrites_work(tmp_path, damage):
    source, home = tmp_path / "src", tmp_path / "home"
    source.mkdir()
    (source / "a.ipynb").write_text("course v1")
    (source / "b.ipynb").write_text("course b")
    home.mkdir()
    (home / "a.ipynb").write_text("student work")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(damage)
    actions = notebooks.sync(source, home, manifest)
    assert (home / "a.ipynb").read_text() == "student work"
    assert (home / "b.ipynb").read_text() == "course b"
    assert actions["a.ipynb"] is notebooks.Action.KEEP_UNRELATED
    assert json.loads(manifest.read_text()) == {"b.ipynb": notebooks.scan(source)["b.ipynb"]}
