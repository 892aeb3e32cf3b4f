"""The package's import graph: layers point downward, no cycles, no borrowed private names.

tinyseg is read bottom-up, so its imports must point one way:

    backend -> ops -> autograd -> functional -> nn -> models -> engine / cli

Each module of the package is placed on one of those layers (``LAYERS`` below;
the utilities ``boxes``, ``data``, ``metrics`` and ``viz`` sit between them),
and may import only from its own layer or a lower one. Every import counts,
including those inside functions: a lazy import still makes a lower layer know
about a higher one. A ``_private`` name belongs to its module; another module
that needs it needs a public name instead.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tinyseg"

# Lowest first. A module is placed by its longest matching prefix.
LAYERS = [
    ("backend", ["tinyseg.backend", "tinyseg.validate"]),
    ("ops", ["tinyseg.ops", "tinyseg.boxes", "tinyseg.overlaps", "tinyseg.anchors",
             "tinyseg.data"]),
    ("autograd", ["tinyseg.autograd", "tinyseg.gradcheck"]),
    # the COCO JSON export writes what the metrics read, with the metrics' input checks
    ("functional", ["tinyseg.functional", "tinyseg.optim", "tinyseg.metrics",
                    "tinyseg.data.coco_json"]),
    ("nn", ["tinyseg.nn"]),
    ("models", ["tinyseg.models", "tinyseg.recipes", "tinyseg.viz"]),
    ("engine/cli", ["tinyseg.engine", "tinyseg.checkpoint", "tinyseg.cli", "tinyseg.homework",
                    "tinyseg.__main__", "tinyseg"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int:
    best, rank = "", None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, i
    if rank is None:
        raise AssertionError(f"{name} is on no layer: add it to LAYERS in {__file__}")
    return rank


def imports_of(name: str):
    """(imported module, names taken, line) for every tinyseg import in module ``name``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tinyseg"):
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("tinyseg"):
                continue
            taken = []
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in MODULES:          # `from . import functional` imports a module
                    yield sub, [], node.lineno
                else:
                    taken.append(alias.name)
            if taken:
                yield source, taken, node.lineno


def module_aliases(name: str) -> dict:
    """Local names bound to tinyseg modules (``from .. import boxes``, ``import x as y``)."""
    aliases = {}
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES and alias.asname:
                    aliases[alias.asname] = alias.name
    return aliases


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_every_module_is_on_a_layer():
    assert len(MODULES) > 30
    for name in MODULES:
        layer_of(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    mine = layer_of(name)
    for target, _, line in imports_of(name):
        if target == "tinyseg" and name != "tinyseg":
            raise AssertionError(f"{name}:{line} imports the top-level package; import the module")
        theirs = layer_of(target)
        assert theirs <= mine, (
            f"{name} (layer {LAYERS[mine][0]}) imports {target} (layer {LAYERS[theirs][0]}) "
            f"at line {line}: imports must point down the layers"
        )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_crosses_modules(name):
    for target, taken, line in imports_of(name):
        private = [n for n in taken if is_private(n)]
        assert not private, f"{name}:{line} imports {private} from {target}"
    aliases = module_aliases(name)
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and is_private(node.attr)):
            raise AssertionError(
                f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}, a private name"
            )


def test_no_import_cycles():
    graph = {name: {t for t, _, _ in imports_of(name) if t in MODULES and t != name}
             for name in MODULES}
    # A package's __init__ importing its own submodules is how packages work; a submodule
    # importing its package's __init__ back would close a loop, and is reported.
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_checker_sees_a_lazy_upward_import(tmp_path, monkeypatch):
    """The test must be able to fail: an import inside a function is still an import."""
    fake = tmp_path / "tinyseg"
    (fake / "ops").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "engine.py").write_text("")
    (fake / "ops" / "__init__.py").write_text("")
    (fake / "ops" / "bad.py").write_text(
        "def f():\n    from ..engine import _helper\n    return _helper\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    monkeypatch.setattr(sys.modules[__name__], "MODULES",
                        {module_name(p): p for p in fake.rglob("*.py")})
    with pytest.raises(AssertionError, match="imports must point down"):
        test_imports_point_down("tinyseg.ops.bad")
    with pytest.raises(AssertionError, match=r"\['_helper'\]"):
        test_no_private_name_crosses_modules("tinyseg.ops.bad")
