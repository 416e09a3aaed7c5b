"""Builders of synthetic biased datasets from real data that packages ship.

``BUILDERS`` maps a kind name to a builder with the common signature

    fn(out_dir: Path, *, seed: int = 0, progress: ProgressFn | None = None, **params) -> Manifest

that writes PNGs plus ``manifest.parquet`` into ``out_dir`` (paths relative to it) and returns the
`Manifest`, whose ``attrs`` hold the kind, parameters, seed and the realised conflicting fraction per
split (``attrs["conflict_fraction"]``, see `core.data.manifest`). Entries import their module on
first call, so importing this package stays cheap.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

# kind -> (module, function)
_TARGETS: dict[str, tuple[str, str]] = {
    "colored-mnist": ("core.data.synthetic.colored_mnist", "build_colored_mnist"),
    "biased-mnist": ("core.data.synthetic.biased_mnist", "build_biased_mnist"),
    "multi-color-mnist": ("core.data.synthetic.biased_mnist", "build_multi_color_mnist"),
    "digits-on-textures": ("core.data.synthetic.textures", "build_digits_on_textures"),
}


def _lazy(kind: str) -> Callable[..., Any]:
    module_name, func_name = _TARGETS[kind]

    def builder(out_dir: Path, *, seed: int = 0, progress=None, **params: Any):
        fn = getattr(importlib.import_module(module_name), func_name)
        return fn(out_dir, seed=seed, progress=progress, **params)

    builder.__name__ = func_name
    builder.__qualname__ = func_name
    builder.__doc__ = f"Lazy entry for `{module_name}.{func_name}` (see its docstring)."
    return builder


BUILDERS: dict[str, Callable[..., Any]] = {kind: _lazy(kind) for kind in _TARGETS}


def get_builder(kind: str) -> Callable[..., Any]:
    """The builder registered under ``kind``; `SpurAuditError` listing the kinds otherwise."""
    from core.errors import check_choice

    check_choice("dataset kind", kind, list(BUILDERS))
    return BUILDERS[kind]


def resolve_builder(kind: str) -> Callable[..., Any]:
    """The real builder function behind ``kind`` (imports its module), e.g. to read its signature."""
    get_builder(kind)
    if kind in _TARGETS:
        module_name, func_name = _TARGETS[kind]
        return getattr(importlib.import_module(module_name), func_name)
    return BUILDERS[kind]


__all__ = ["BUILDERS", "get_builder", "resolve_builder"]
