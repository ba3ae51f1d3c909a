"""Import circles in the Python package: which modules of python/ferrocorn import each other in a loop.

usage: python3 .ci/py_layers.py [PACKAGE_DIR]   (default: python/ferrocorn)

Edges come from `import` and `from ... import` statements anywhere in a module (function-level
imports included: a late import hides a circle, it does not remove it), resolved to the longest
module of the package; `if TYPE_CHECKING:` blocks are left out (they never run). The compiled
extension `_ferrocorn` is a leaf. Prints each circle, then `circles: N`; exits 1 if there is one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_names(package: Path) -> dict[str, Path]:
    root = package.parent
    names = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    names[f"{package.name}._ferrocorn"] = package / "_ferrocorn.pyi"
    return names


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node outside `if TYPE_CHECKING:` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return [node for node in ast.walk(tree) if id(node) not in skipped]


def imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    if path.suffix == ".pyi":
        return set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = resolve(target, modules)
            if resolved is not None and resolved != module:
                found.add(resolved)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def main() -> int:
    package = Path(sys.argv[1] if len(sys.argv) > 1 else "python/ferrocorn")
    modules = module_names(package)
    graph = {name: imports(name, path, modules) for name, path in modules.items()}
    found = circles(graph)
    for component in found:
        print("circle:", " ".join(component))
    print(f"circles: {len(found)} over {len(graph)} modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
