"""The library's modules use one another through names without a leading
underscore: ruff's SLF rule (on for ``src``) refuses a private attribute
reached across objects, and this test refuses a private name imported from
another module, which that rule does not see."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "adieu"


def test_no_module_imports_another_modules_private_name() -> None:
    modules = sorted(SRC.glob("*.py"))
    assert len(modules) >= 10
    found = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                found += [
                    f"{path.name}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_")
                ]
    assert found == []
