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
