"""The packages' import direction: api -> broker -> fetch -> tiering -> hotlog. A module
may import its own package and those below it, never one above (DESIGN.md)."""

from __future__ import annotations

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ["hotlog", "tiering", "fetch", "broker", "api"]  # bottom first


def _imported_packages(path: str, package: str) -> set[str]:
    """Top-level packages a module imports (absolute imports, and relative ones resolved
    against its own package)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(package if node.level else (node.module or "").split(".")[0])
    return found


def _modules() -> list[tuple[str, str]]:
    modules = []
    for package in LAYERS:
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            modules += [(package, os.path.join(folder, name)) for name in files if name.endswith(".py")]
    return modules


@pytest.mark.parametrize("package,path", _modules(), ids=lambda v: os.path.relpath(v, REPO) if "/" in v else v)
def test_imports_point_down_only(package: str, path: str) -> None:
    above = set(LAYERS[LAYERS.index(package) + 1:])
    wrong = _imported_packages(path, package) & above
    assert not wrong, f"{os.path.relpath(path, REPO)} ({package}) imports {sorted(wrong)}, a layer above it"


def test_the_check_sees_every_layer_and_catches_an_upward_import(tmp_path) -> None:
    assert {package for package, _ in _modules()} == set(LAYERS)
    module = tmp_path / "upward.py"
    module.write_text("from .log import PartitionLog\nimport os\n\ndef f():\n    from broker.node import Broker\n")
    assert _imported_packages(str(module), "hotlog") == {"hotlog", "os", "broker"}
