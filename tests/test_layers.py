"""The layer rule: nothing under core/ imports streamlit or dashboard (imports parsed with ast, so
imports inside functions and ``TYPE_CHECKING`` blocks count too)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("streamlit", "dashboard")


def imported_modules(source: str, filename: str = "<src>") -> list[tuple[int, str]]:
    """(line, module) for every import statement in ``source`` (relative imports keep their dots)."""
    out = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, "." * node.level + (node.module or "")))
        elif isinstance(node, ast.Call):  # importlib.import_module("streamlit") / __import__("streamlit")
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            first = node.args[0] if node.args else None
            if name in ("import_module", "__import__") and isinstance(first, ast.Constant) \
                    and isinstance(first.value, str):
                out.append((node.lineno, first.value))
    return out


def forbidden_imports(source: str, filename: str = "<src>") -> list[tuple[int, str]]:
    return [(line, mod) for line, mod in imported_modules(source, filename)
            if mod.split(".")[0] in FORBIDDEN]


def test_checker_catches_every_import_form():
    src = ("import os\nimport streamlit as st\nfrom dashboard.resources import x\n"
           "def f():\n    import streamlit.components.v1\n    import importlib\n"
           "    importlib.import_module('dashboard.app')\n"
           "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from streamlit import runtime\n"
           "import streamlitish\nfrom . import dashboard_util\n")
    found = sorted(forbidden_imports(src))
    assert [m for _, m in found] == ["streamlit", "dashboard.resources", "streamlit.components.v1",
                                     "dashboard.app", "streamlit"]


def test_core_never_imports_streamlit_or_dashboard():
    files = sorted((REPO / "core").rglob("*.py"))
    assert files, "core/ has no Python files"
    offenders = []
    for path in files:
        for line, mod in forbidden_imports(path.read_text(encoding="utf-8"), str(path)):
            offenders.append(f"{path.relative_to(REPO)}:{line} imports {mod}")
    assert not offenders, "core/ must not import streamlit or dashboard:\n" + "\n".join(offenders)


@pytest.mark.parametrize("path", sorted((REPO / "dashboard").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_cache_decorators_only_in_resources(path):
    """All st.cache_data / st.cache_resource live in dashboard/resources.py."""
    if path.name == "resources.py" and path.parent.name == "dashboard":
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    uses = [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and n.attr in ("cache_data", "cache_resource")]
    assert not uses, f"{path.relative_to(REPO)} uses st.cache_* at lines {uses}; move them to resources.py"


# --------------------------------------------------------------------------------------------------
# the import graph of core/: no cycles, no import against the layer order of docs/DESIGN.md
# --------------------------------------------------------------------------------------------------
#: from the bottom; a module may import its own layer or a lower one. "*.jobs" = every package's job
#: adapter module. The longest matching prefix decides a module's layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("core.errors", "core.progress", "core.device", "core.serialize", "core.figures", "core.config", "core.metrics",
              "core.workspace", "core.runs")),
    ("data", ("core.data",)),
    ("models", ("core.models",)),
    ("features", ("core.features",)),
    ("analysis", ("core.audit", "core.concepts", "core.rare")),
    ("mitigate", ("core.mitigate",)),
    ("report", ("core.report", "core.study", "core.demo")),
    ("jobs", ("*.jobs", "core.jobs")),          # "*.jobs": core.<package>.jobs
    ("commands", ("core.commands", "core.cli", "core.__main__", "core")),
]
HEAVY_OPTIONAL = ("open_clip", "segment_anything", "timm")


def module_files(root: Path, package: str = "core") -> dict[str, Path]:
    """Dotted module name -> file for every .py under ``root/package`` (packages by their __init__)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_edges(modules: dict[str, Path], package: str = "core") -> dict[str, set[str]]:
    """module -> the modules of ``package`` it imports (module level and inside functions alike;
    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module). A package's own
    ``__init__`` imported from inside the package is not an edge (Python runs it first anyway)."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] or [base]
            for target in targets:
                if target.split(".")[0] != package:
                    continue
                resolved = _resolve(target, modules)
                if resolved and resolved != mod and not mod.startswith(resolved + "."):
                    edges[mod].add(resolved)
    return edges


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]] = LAYERS) -> int:
    """Index of ``module``'s layer (the longest matching prefix; ``*.jobs`` matches adapter modules)."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if prefix.startswith("*."):   # a package's adapter module (not a CLI command module of that name)
                if module.endswith(prefix[1:]) and not module.startswith("core.commands.") and len(module) > best_len:
                    best, best_len = i, len(module)
            elif (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    if best is None:
        raise AssertionError(f"module {module} has no layer; add it to LAYERS and to docs/DESIGN.md")
    return best


def layer_violations(edges: dict[str, set[str]], layers: list[tuple[str, tuple[str, ...]]] = LAYERS) -> list[str]:
    out = []
    for mod, targets in sorted(edges.items()):
        for target in sorted(targets):
            if layer_of(target, layers) > layer_of(mod, layers):
                out.append(f"{mod} ({layers[layer_of(mod, layers)][0]}) imports {target} "
                           f"({layers[layer_of(target, layers)][0]})")
    return out


def test_graph_checks_find_a_planted_cycle_and_an_upward_edge():
    edges = {"core.data.a": {"core.models.b"}, "core.models.b": {"core.data.a"}, "core.errors": set(),
             "core.audit.c": {"core.errors"}, "core.workspace": {"core.audit.c"}}
    assert find_cycles(edges) == [["core.data.a", "core.models.b"]]
    assert layer_violations(edges) == ["core.data.a (data) imports core.models.b (models)",
                                       "core.workspace (base) imports core.audit.c (analysis)"]
    assert layer_of("core.mitigate.jobs") == layer_of("core.jobs") > layer_of("core.report")


def test_a_cycle_planted_in_a_copy_of_core_is_found(tmp_path):
    import shutil

    shutil.copytree(REPO / "core", tmp_path / "core", ignore=shutil.ignore_patterns("__pycache__"))
    before = find_cycles(import_edges(module_files(tmp_path)))
    (tmp_path / "core" / "errors.py").open("a").write("\n\ndef _planted():\n    from core.workspace import Workspace\n")
    after = find_cycles(import_edges(module_files(tmp_path)))
    assert any({"core.errors", "core.workspace"} <= set(c) for c in after) and after != before


def test_core_import_graph_has_no_cycles():
    cycles = find_cycles(import_edges(module_files(REPO)))
    assert not cycles, "import cycles in core/ (imports inside functions count):\n" + \
        "\n".join(" <-> ".join(c) for c in cycles)


def test_core_imports_follow_the_layer_order():
    bad = layer_violations(import_edges(module_files(REPO)))
    assert not bad, "imports against the layer order of docs/DESIGN.md:\n" + "\n".join(bad)


def function_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of imports inside function bodies that carry no comment saying why (on the
    import's line or the line above); the heavy optional backends need none."""
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines), filename=str(path))
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
            if all(n.split(".")[0] in HEAVY_OPTIONAL for n in names):
                continue
            here = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
            if "#" in here or above.startswith("#"):
                continue
            out.append((node.lineno, ", ".join(names)))
    return sorted(set(out))


@pytest.mark.parametrize("package", sorted({p.relative_to(REPO / "core").parts[0].removesuffix(".py")
                                            for p in (REPO / "core").glob("*")
                                            if p.suffix == ".py" or (p / "__init__.py").exists()}))
def test_imports_sit_at_module_top_unless_a_comment_says_why(package):
    root = REPO / "core" / package
    files = sorted(root.rglob("*.py")) if root.is_dir() else [REPO / "core" / f"{package}.py"]
    found = [f"{p.relative_to(REPO)}:{line} imports {mod}" for p in files for line, mod in function_level_imports(p)]
    assert not found, ("imports inside functions without a comment saying why (a cycle, or a heavy optional "
                       "backend); move them to the top of the module:\n" + "\n".join(found))
