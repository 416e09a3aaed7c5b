"""The feature store: extraction (batched, resumable, torchrun-sharded) and memmap loading.

``from core.features import extract_features, extract_to_workspace, load_features, FeatureSet``.
The extraction module imports torch, so it is loaded on first use.
"""
from __future__ import annotations

from typing import Any

from core.features.store import FeatureSet, load_features

__all__ = ["FeatureSet", "load_features", "extract_features", "extract_to_workspace", "extract_splits",
           "ExtractConfig"]


def __getattr__(name: str) -> Any:
    if name in ("extract_features", "extract_to_workspace", "extract_splits", "ExtractConfig", "shard_range"):
        from core.features import extract

        return getattr(extract, name)
    raise AttributeError(f"module 'core.features' has no attribute {name!r}")
