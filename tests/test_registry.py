"""The registry mechanism, and the meta-test: every registered entry has a dedicated test of its own."""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import frugalrl
from frugalrl.registry import Registry, UnknownNameError


def _all_registries() -> list[Registry]:
    """Every Registry object defined anywhere in the package (modules import without optional extras)."""
    found: dict[int, Registry] = {}
    for info in pkgutil.walk_packages(frugalrl.__path__, prefix="frugalrl."):
        if info.name.endswith(".__main__"):  # entry-point scripts run on import
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, Registry):
                found[id(value)] = value
    return list(found.values())


def test_unknown_name_lists_valid_names():
    reg = Registry("widget")
    reg.register("alpha")(len)
    reg.register("beta")(len)
    with pytest.raises(UnknownNameError, match=r"unknown widget 'gamma'; valid names: alpha, beta"):
        reg.get("gamma")
    assert reg.get("alpha") is len
    assert reg.names() == ["alpha", "beta"] and "beta" in reg and len(reg) == 2


def test_duplicate_name_is_rejected():
    reg = Registry("widget")
    reg.register("alpha")(len)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha")(abs)
    assert reg.get("alpha") is len


def _covered_entries() -> set[tuple[str, str]]:
    """(kind, name) pairs named by `@pytest.mark.covers(kind, name)` decorators anywhere under tests/."""
    covered = set()
    for path in Path(__file__).parent.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                func = dec.func if isinstance(dec, ast.Call) else None
                if getattr(func, "attr", None) == "covers" or getattr(func, "id", None) == "covers":
                    kind, name = (arg.value for arg in dec.args)
                    covered.add((kind, name))
    return covered


def test_every_registry_entry_has_a_dedicated_test():
    registries = _all_registries()
    assert len(registries) >= 5, f"registry discovery found only {[r.kind for r in registries]}"
    entries = {(reg.kind, name) for reg in registries for name in reg.names()}
    covered = _covered_entries()
    missing = sorted(f"{kind}: {name}" for kind, name in entries - covered)
    assert not missing, "registry entries without a @pytest.mark.covers test: " + ", ".join(missing)
    unknown = covered - entries
    assert not unknown, f"covers markers name entries that do not exist: {sorted(unknown)}"
