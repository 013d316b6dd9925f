"""The package's import structure: no cycles, and no module imports from a layer above it.

Every import counts, including those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import saltseg

PACKAGE = Path(saltseg.__file__).parent

# Bottom to top; a module may import from its own layer and those below.
LAYERS = [
    ["saltseg.errors", "saltseg.io", "saltseg.rle", "saltseg.metrics", "saltseg.quiet"],
    ["saltseg.postprocess", "saltseg.outputs", "saltseg.models", "saltseg.losses"],
    ["saltseg.config"],
    ["saltseg.data"],
    ["saltseg.tta", "saltseg.evaluate", "saltseg.checkpoints"],
    ["saltseg.runs"],
    ["saltseg.training", "saltseg.inference", "saltseg.mosaic"],
    ["saltseg.report", "saltseg.volume", "saltseg.pretrain", "saltseg.selftrain"],
    ["saltseg.demo", "saltseg.cli", "saltseg.__main__", "saltseg"],
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return {m for m in found if m == "saltseg" or m.startswith("saltseg.")}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        targets = {m for m in _imports(path, name) if m in paths}
        graph[name] = targets - {name}
    return graph


def _layer(module: str) -> int:
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                length = len(prefix)
                if best is None or length > best[0]:
                    best = (length, rank)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def test_every_module_has_a_layer():
    for module in _graph():
        _layer(module)


def test_no_module_imports_from_a_layer_above():
    upward = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_cycles():
    graph = _graph()
    # The lazy API in saltseg/__init__.py names modules as strings, not imports; the package
    # itself is imported by its submodules only through "import saltseg" (none do).
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_checker_sees_function_level_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from saltseg.training.kfold import train_kfold\n")
    assert "saltseg.training.kfold" in _imports(source, "saltseg.x")
