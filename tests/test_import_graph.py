"""The package's import graph: no cycle between modules, and no arrow from a lower layer to a
higher one (every import counts, also those inside functions)."""

import ast
from pathlib import Path

import pyrogen

ROOT = Path(pyrogen.__file__).parent
#: the layers, lowest first: a module imports from its own layer or lower ones only
LAYERS = [
    {"pyrogen", "pyrogen.primitives", "pyrogen.files", "pyrogen.viz", "pyrogen.data", "pyrogen.nn"},
    {"pyrogen.infer"},
    {"pyrogen.models"},
    {"pyrogen.metrics", "pyrogen.diagnostics"},
    {"pyrogen.train"},
    {"pyrogen.families"},
    {"pyrogen.cli", "pyrogen.cli_parser", "pyrogen.__main__"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in modules else base)
    return {t for t in targets if t in modules and t != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(name: str) -> int:
    for depth in range(name.count(".") + 1, 0, -1):
        prefix = ".".join(name.split(".")[:depth])
        for i, layer in enumerate(LAYERS):
            if prefix in layer and (prefix != "pyrogen" or name == "pyrogen"):
                return i
    raise AssertionError(f"module {name} is in no layer; add it to LAYERS")


def test_every_module_has_a_layer_and_imports_none_above_it():
    graph = _graph()
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets if _layer(b) > _layer(a)]
    assert not upward, upward


def test_models_and_infer_do_not_import_each_other_both_ways():
    graph = _graph()
    infer_to_models = [f"{a} -> {b}" for a, t in graph.items() if a.startswith("pyrogen.infer")
                       for b in t if b.startswith("pyrogen.models")]
    assert not infer_to_models


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_model_name_comparisons_in_the_command_line():
    names = {"vae", "cvae", "mixture", "dfcvae", "classifier", "gan", "aae", "ali"}
    for module in ("cli.py", "cli_parser.py"):
        tree = ast.parse((ROOT / module).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                constants = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant)]
                assert not names & set(constants), f"{module}:{node.lineno} compares with a family name"
