"""Nothing outside a backend's own module imports its inference library (read from the source:
``import x``, ``from x import``, and ``importlib.import_module("x")``)."""

from __future__ import annotations

import ast
from pathlib import Path

import ggic

PACKAGE = Path(ggic.__file__).resolve().parent
#: inference library -> the one module allowed to import it
OWNERS = {
    "dlr": PACKAGE / "classifier" / "backends" / "dlr.py",
    "onnxruntime": PACKAGE / "classifier" / "backends" / "onnx.py",
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def test_only_a_backends_own_module_imports_its_library():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for library, owner in OWNERS.items():
            if library in imported_roots(path) and path != owner:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {library}")
    assert offenders == []


def test_the_owners_do_import_their_library():
    for library, owner in OWNERS.items():
        assert library in imported_roots(owner)
