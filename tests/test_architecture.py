"""The layers of docs/architecture.md, checked on every module's imports (``ast``).

The layer table is read from the document itself, so the picture a newcomer reads and
the rule the code follows cannot drift apart.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"
PRODUCT_TOP = 5  # layers 0..5 are the product; above it only tools for tests and trying


def layer_table() -> dict[str, int]:
    """``package -> layer`` from the table under "The layers" in the document."""
    layers = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| (\d+) \| (`[a-z_]+`(?:, `[a-z_]+`)*) \|", line)
        if m:
            for package in re.findall(r"`([a-z_]+)`", m.group(2)):
                layers[package] = int(m.group(1))
    return layers


LAYERS = layer_table()


def modules() -> list[Path]:
    return sorted(p for package in LAYERS for p in (REPO / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def first_party(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported(path)} & set(LAYERS)


def test_the_document_has_every_top_level_package():
    packages = {
        p.name
        for p in REPO.iterdir()
        if p.is_dir() and ((p / "__init__.py").exists() or p.name == "tests")
    }
    assert packages == set(LAYERS), "docs/architecture.md's layer table and the tree differ"
    assert LAYERS["lakehub"] == 0 and LAYERS["tests"] == LAYERS["benchmarks"]


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_import_points_down(path):
    own = path.relative_to(REPO).parts[0]
    up = sorted(
        name
        for name in first_party(path)
        if name != own and LAYERS[name] >= LAYERS[own] and not {own, name} <= {"tests"}
    )
    assert up == [], f"{path.relative_to(REPO)} (layer {LAYERS[own]}) imports {up}"


def test_no_two_packages_import_each_other():
    edges = {
        (p.relative_to(REPO).parts[0], name)
        for p in modules()
        for name in first_party(p)
        if name != p.relative_to(REPO).parts[0]
    }
    mutual = sorted((a, b) for a, b in edges if (b, a) in edges and a < b)
    assert mutual == []


def test_the_product_never_imports_the_stack_the_testkit_benchmarks_or_tests():
    outside = {name for name, layer in LAYERS.items() if layer > PRODUCT_TOP}
    found = [
        (str(p.relative_to(REPO)), sorted(first_party(p) & outside))
        for p in modules()
        if LAYERS[p.relative_to(REPO).parts[0]] <= PRODUCT_TOP and first_party(p) & outside
    ]
    assert found == []


def test_tests_never_import_benchmarks():
    found = [str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("*.py")]
    found = [p for p in found if "benchmarks" in first_party(REPO / p)]
    assert found == []


def test_the_vocabulary_needs_only_the_standard_library():
    names = {n.split(".")[0] for n in imported(REPO / "lakehub" / "contract.py")}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names


def test_the_session_library_imports_no_hub_side_code():
    """lakehub/ is all the single-user image carries of lakehub's code."""
    found = {
        str(p.relative_to(REPO)): first_party(p) - {"lakehub"}
        for p in (REPO / "lakehub").rglob("*.py")
    }
    assert {p: names for p, names in found.items() if names} == {}


def test_the_check_sees_an_import_that_points_up(tmp_path):
    """The rule itself: a sitefile module importing a hook is caught."""
    bad = tmp_path / "sitefile" / "x.py"
    bad.parent.mkdir()
    bad.write_text("from spawner_hooks.hooks import LakehubHooks\nimport lakehub.contract\n")
    assert first_party(bad) == {"spawner_hooks", "lakehub"}
    assert LAYERS["spawner_hooks"] > LAYERS["sitefile"]
