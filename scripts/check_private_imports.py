"""No module uses another first-party module's private names (`_x`).

Fails on `from pkg.mod import _x` and on `mod._x` where `mod` is an imported first-party
module. Import cycles are import-linter's job (`lint-imports`, contracts in pyproject.toml);
ruff's PLC2701 sees only the first form, so this small check covers both.
Usage: python scripts/check_private_imports.py  (exit 1 and one line per use when any)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("domain", "activities", "workflows", "worker", "starters", "sandbox", "bench", "tests")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _first_party(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def uses(path: Path) -> list[str]:
    here = _module_of(path)
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    modules: set[str] = set()  # local names bound to first-party modules
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _first_party(a.name):
                    modules.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _first_party(node.module):
            for a in node.names:
                if _private(a.name) and node.module != here:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {a.name}")
                elif (ROOT / node.module.replace(".", "/") / f"{a.name}.py").exists():
                    modules.add(a.asname or a.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in modules):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def main() -> int:
    found = [u for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py")) if "histories" not in p.parts
             for u in uses(p)]
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} use(s) of another module's private names: make the name public or move the code")
        return 1
    print("no cross-module private names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
