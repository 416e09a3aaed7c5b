"""Patterned images to look at: a few training images of the target class with each pattern added."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from core.errors import SpurAuditError
from core.rare.data import load_rare_data
from core.rare.inject import PATCH, PatchPattern, PatchSpec, apply_pattern, check_pattern


def to_uint8(images: torch.Tensor, *, scale: int = 1) -> list[np.ndarray]:
    """(N, C, H, W) float in [0, 1] -> N uint8 arrays (H·s, W·s, 3) (grey repeated; nearest upscaling)."""
    x = images.clamp(0, 1).mul(255).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    arr = x.permute(0, 2, 3, 1).numpy()                                   # (N, H, W, 3)
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
    return [np.ascontiguousarray(a) for a in arr]


def preview_patterns(ws: Any = None, *, data: str = "mnist", dataset: str | None = None,
                     patterns: Sequence[str] = ("s3", "r3", "core"), patch: PatchSpec | dict | None = None,
                     target: int = 0, k: int = 4, noise_seed: int = 0, scale: int = 3) -> dict[str, list[np.ndarray]]:
    """``{"original": [...], pattern: [...], ...}``: ``k`` training images of class ``target`` without
    and with each pattern, as uint8 RGB arrays upscaled ``scale`` times (for the dashboard)."""
    if k < 1:
        raise SpurAuditError(f"k must be >= 1, got {k}")
    rd = load_rare_data(data, ws=ws, dataset=dataset, seed=0)
    if not 0 <= target < rd.num_classes:
        raise SpurAuditError(f"target class {target} does not exist; {rd.name} has classes 0..{rd.num_classes - 1}")
    x = rd.x["train"][rd.y["train"] == target][:k]
    if isinstance(patch, dict):
        patch = PatchSpec(**patch)
    out = {"original": to_uint8(x, scale=scale)}
    for p in patterns:
        obj: Any = p
        if p == PATCH:
            if patch is None:
                raise SpurAuditError("pattern 'patch' needs a patch image")
            obj = PatchPattern(patch, root=getattr(ws, "root", None))
        check_pattern(obj)
        out[p] = to_uint8(apply_pattern(x, obj, noise_seed=noise_seed), scale=scale)
    return out


__all__ = ["preview_patterns", "to_uint8"]
