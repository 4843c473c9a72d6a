"""The structure DESIGN.md describes, checked on the source: layering, no package cycles, short functions,
and an update and a config module that name no algorithm."""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "frugalrl"

# Packages of parts: pure pieces a config names. They may use each other, never the machinery that runs them.
PARTS = ("algos", "rewards", "data", "selection", "replay")
RUNNERS = ("engine", "config", "config_parts", "config_checks", "training", "bench", "cli")
MAX_FUNCTION_LINES = 60


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imported_packages(tree: ast.AST) -> set[str]:
    """frugalrl packages imported anywhere in the module, function-level (lazy) imports included."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "frugalrl" and len(parts) > 1:
                found.add(parts[1])
    return found


def _package_graph() -> dict[str, set[str]]:
    graph = defaultdict(set)
    for path, tree in _modules():
        package = _package_of(path)
        graph[package] |= _imported_packages(tree) - {package}
    return graph


@pytest.mark.parametrize("package", PARTS)
def test_parts_never_import_the_machinery_that_runs_them(package):
    assert not _package_graph()[package] & set(RUNNERS)


def test_engine_and_eval_take_plain_arguments_not_the_config():
    graph = _package_graph()
    assert not graph["engine"] & {"config", "config_parts", "config_checks", "training", "bench", "cli"}
    assert not graph["eval"] & {"engine", "config", "training"}


def test_no_package_cycles():
    graph = _package_graph()
    state: dict[str, str] = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                pytest.fail(f"package cycle: {' -> '.join([*trail, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = "done"

    for package in list(graph):
        if package not in state:
            visit(package, [])


def test_no_function_is_longer_than_a_screen():
    long = [
        f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long


def _algorithm_names() -> set[str]:
    from frugalrl.algos import advantage_estimators, policy_losses
    from frugalrl.engine.critic import critics
    from frugalrl.replay import replay_kinds
    from frugalrl.selection import group_filters, selectors

    registries = (advantage_estimators, policy_losses, replay_kinds, selectors, group_filters, critics)
    return {name for registry in registries for name in registry.names()} - {"none"}


def _strings_and_names(tree: ast.AST, *, skip_field_defaults: bool = False) -> set[str]:
    """String constants and identifiers of a module; with `skip_field_defaults`, not the default of `_f(...)`."""
    skipped = set()
    if skip_field_defaults:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_f" and node.args:
                skipped.add(id(node.args[0]))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            found.add(node.value)
        elif isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
    return found


def test_the_update_names_no_replay_kind_estimator_or_loss():
    tree = ast.parse((SRC / "engine" / "update.py").read_text())
    # "clipped" is the settings' default loss; every other name would be a branch on the algorithm.
    assert not (_strings_and_names(tree) & _algorithm_names()) - {"clipped"}


@pytest.mark.parametrize("module", ["config.py", "config_parts.py"])
def test_the_config_modules_name_no_algorithm(module):
    tree = ast.parse((SRC / module).read_text())
    assert not _strings_and_names(tree, skip_field_defaults=True) & _algorithm_names()
