"""The feature store: extraction (batched, resumable, torchrun-sharded) and memmap loading.

``from core.features import extract_features, extract_to_workspace, load_features, FeatureSet``.

Modules: `store` (layout of a feature set, `load_features`), `extract` (`extract_features`,
`extract_to_workspace`, `extract_splits`), `npy_writer` (positional row writes into ``.npy``),
`sharding` (torchrun ranges, process group, merge), `maps` (activation maps, overlays, image cache),
`attack` (feature attack visualisation), `jobs` (the ``extract`` job kind).
"""
from __future__ import annotations

from core.features.extract import ExtractConfig, extract_features, extract_splits, extract_to_workspace
from core.features.sharding import shard_range
from core.features.store import FeatureSet, load_features

__all__ = ["FeatureSet", "load_features", "extract_features", "extract_to_workspace", "extract_splits",
           "ExtractConfig", "shard_range"]
