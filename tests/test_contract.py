"""Names that cross a process boundary are defined once, in lakehub/contract.py.

Two checks: the literal strings of the vocabulary appear nowhere else in the product
(Python string literals, the chart's templates and values, the images' files), and the
chart, rendered with every example site's values, names its objects, environment and
mounts exactly as the vocabulary does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from hub_config import values as hv
from lakehub import contract

REPO = Path(__file__).resolve().parent.parent
PRODUCT = (
    "lakehub",
    "sitefile",
    "tokens",
    "courses",
    "spawner_hooks",
    "hub_services",
    "hub_config",
)
# Values that are ordinary words as well as names: searching for them finds English, not
# copies ("lakehub" is also every logger's and the extension's name).
ORDINARY_WORDS = {"lakehub", "hub", "password", "jupyter"}
# The same characters meaning something else, each with its reason.
OTHER_MEANINGS = {
    ("sitefile/state.py", ".lakehub"): "the repository's own state folder ($LAKEHUB_HOME)",
    ("hub_config/values.py", "dask-gateway"): "the dask-gateway chart's name (Chart.yaml)",
    ("helm/lakehub/Chart.yaml", "dask-gateway"): "the dask-gateway chart's name",
    ("helm/lakehub/values.yaml", "dask-gateway"): "the dask-gateway chart's values key",
}
VOCABULARY = {
    value: name
    for name, value in vars(contract).items()
    if name.isupper() and isinstance(value, str) and value not in ORDINARY_WORDS
}


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def python_copies(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in VOCABULARY
        and id(node) not in skip
    ]


def text_copies(path: Path) -> list[tuple[int, str]]:
    """Whole-token occurrences outside comments (``#`` lines and template comments)."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(
        r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", lambda m: "\n" * m.group().count("\n"), text, flags=re.S
    )
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        code = re.sub(r"(^|\s)#.*$", "", line)
        for value in VOCABULARY:
            if re.search(r"(?<![\w./-])" + re.escape(value) + r"(?![\w-])", code):
                found.append((number, value))
    return found


def product_files() -> list[Path]:
    files = [p for package in PRODUCT for p in (REPO / package).rglob("*.py")]
    files += [p for p in (REPO / "helm" / "lakehub").rglob("*") if p.suffix in (".yaml", ".tpl")]
    files += [
        p
        for p in (REPO / "images").rglob("*")
        if p.is_file() and (p.name.startswith("Dockerfile") or p.suffix in (".json", ".py", ".sh"))
    ]
    return sorted(f for f in files if f != REPO / "lakehub" / "contract.py")


def copies(path: Path) -> list[tuple[int, str]]:
    found = python_copies(path) if path.suffix == ".py" else text_copies(path)
    rel = str(path.relative_to(REPO))
    return [(n, v) for n, v in found if (rel, v) not in OTHER_MEANINGS]


def test_every_shared_name_is_defined_once():
    found = {
        f"{path.relative_to(REPO)}:{line}": f"{value!r} (contract.{VOCABULARY[value]})"
        for path in product_files()
        for line, value in copies(path)
    }
    assert found == {}, "import these from lakehub.contract instead"


def test_the_check_finds_a_copied_name(tmp_path):
    planted = tmp_path / "x.py"
    planted.write_text(f'"""{contract.ENV_TOKEN_URL}"""\nURL = "{contract.ENV_TOKEN_URL}"\n')
    assert python_copies(planted) == [(2, contract.ENV_TOKEN_URL)]  # not the docstring
    template = tmp_path / "t.yaml"
    template.write_text(
        f"# {contract.SITE_MOUNT}\n- name: {contract.ENV_CACHE_URL}\n"
        f"  mountPath: {contract.CACHE_MOUNT}/sub\n"
    )
    assert text_copies(template) == [(2, contract.ENV_CACHE_URL), (3, contract.CACHE_MOUNT)]


# --------------------------------------------------------------------------- the chart


EXAMPLES = sorted(
    p
    for p in (REPO / "examples").glob("site*.yaml")
    if "kubernetes" in (yaml.safe_load(p.read_text(encoding="utf-8")) or {})
)


@pytest.fixture(scope="module", params=EXAMPLES, ids=lambda p: p.name)
def release(request, helm, chart, tmp_path_factory):
    import subprocess

    values = hv.values_for_file(request.param)
    path = tmp_path_factory.mktemp("contract") / "values.yaml"
    path.write_text(hv.dump(values))
    done = subprocess.run(
        [*helm, "template", "lakehub", str(chart), "-n", "lakehub", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return values, [o for o in yaml.safe_load_all(done.stdout) if o]


def containers(objects: list[dict], component: str) -> list[dict]:
    return [
        c
        for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        for c in o["spec"]["template"]["spec"]["containers"]
    ]


def test_the_chart_and_the_values_use_the_vocabulary(release):
    values, objects = release
    named = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {
        ("Deployment", contract.CACHE_SERVICE),
        ("Service", contract.CACHE_SERVICE),
        ("Deployment", contract.ISSUER_SERVICE),
        ("Service", contract.ISSUER_SERVICE),
        ("ConfigMap", contract.SITE_CONFIGMAP),
        ("PersistentVolumeClaim", contract.CACHE_CLAIM),
        ("Secret", contract.HUB_SECRET),
    } <= named
    jh = values["jupyterhub"]
    assert {contract.CACHE_SERVICE, contract.ISSUER_SERVICE} <= set(jh["hub"]["services"])
    # the hub's environment and mounts: the names hub_config.kubernetes reads
    assert set(jh["hub"]["extraEnv"]) <= {
        v for k, v in vars(contract).items() if k.startswith("ENV_")
    }
    assert contract.SITE_MOUNT in {m["mountPath"] for m in jh["hub"]["extraVolumeMounts"]}
    # lakehub's services: their hub token from z2jh's Secret under the service's key
    for component, service in (
        ("cache", contract.CACHE_SERVICE),
        ("tokens", contract.ISSUER_SERVICE),
    ):
        (container,) = containers(objects, component)
        env = {e["name"]: e for e in container["env"]}
        assert env["JUPYTERHUB_SERVICE_PREFIX"]["value"] == contract.service_prefix(service) + "/"
        assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": contract.HUB_SECRET,
            "key": contract.hub_service_token_key(service),
        }
    (cache,) = containers(objects, "cache")
    assert contract.CACHE_MOUNT in {m["mountPath"] for m in cache["volumeMounts"]}
    # user pods: the cache read-only at its mount, the session told where the cache is
    su = jh["singleuser"]
    assert contract.CACHE_MOUNT in {m["mountPath"] for m in su["storage"]["extraVolumeMounts"]}
    assert set(su["extraEnv"]) <= {v for k, v in vars(contract).items() if k.startswith("ENV_")} | {
        k for k in su["extraEnv"] if k.startswith("DASK_")
    }
