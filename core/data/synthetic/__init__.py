"""Builders of synthetic biased datasets from real data that packages ship.

``BUILDERS`` maps a kind name to a builder with the common signature

    fn(out_dir: Path, *, seed: int = 0, progress: ProgressFn | None = None, **params) -> Manifest

that writes PNGs plus ``manifest.parquet`` into ``out_dir`` (paths relative to it) and returns the
`Manifest`, whose ``attrs`` hold the kind, parameters, seed and the realised conflicting fraction per
split (``attrs["conflict_fraction"]``, see `core.data.manifest`).
"""
from __future__ import annotations

from typing import Any, Callable

from core.data.synthetic.biased_mnist import build_biased_mnist, build_multi_color_mnist
from core.data.synthetic.colored_mnist import build_colored_mnist
from core.data.synthetic.textures import build_digits_on_textures
from core.errors import check_choice

#: kind -> builder (the order is the order the CLI lists the kinds in)
BUILDERS: dict[str, Callable[..., Any]] = {
    "colored-mnist": build_colored_mnist,
    "biased-mnist": build_biased_mnist,
    "multi-color-mnist": build_multi_color_mnist,
    "digits-on-textures": build_digits_on_textures,
}


def get_builder(kind: str) -> Callable[..., Any]:
    """The builder registered under ``kind``; `SpurAuditError` listing the kinds otherwise."""
    check_choice("dataset kind", kind, list(BUILDERS))
    return BUILDERS[kind]


__all__ = ["BUILDERS", "get_builder"]
