"""Labelling assets: activation-map overlays and feature attacks of many (image, feature) pairs,
rendered in batches into the workspace image cache (issue 12).

The files are the ones `core.features.maps.cached_overlay` / `cached_attack` read and write (same
paths, `overlay_cache_rel` / `attack_cache_rel`), so a page that finds them only reads thumbnails;
rendering here is batched (one forward pass for a batch of images and all their features; one
gradient-ascent loop for a batch of (image, feature) pairs) and skips every file that exists, so a
stopped run resumes where it stopped. Writes go through `Workspace.save_image` (PNG compression level 1:
the files are regenerable cache, written by the thousand).

`top_activating_rows` is the one rule for which images show a feature (the Features page, the report
and the labelling-assets job use it), `plan_pairs` turns (class, feature) pairs into (row, feature)
pairs with it, and `render_overlays` / `render_attacks` render a plan.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.device import resolve_device
from core.errors import SpurAuditError
from core.features.attack import AttackConfig, ascend_features, default_step_size, frozen_on
from core.features.maps import (attack_cache_rel, normalize_maps, overlay, overlay_cache_rel, to_pil)
from core.progress import ProgressFn, null_progress
from core.workspace import Workspace

__all__ = ["AssetPlan", "top_activating_rows", "plan_pairs", "render_overlays", "render_attacks",
           "existing_overlays", "existing_attacks"]


def top_activating_rows(fs, class_index: int, feature: int, n: int) -> np.ndarray:
    """Row indices of the ``n`` images of ``class_index`` where ``feature`` fires most (display order)."""
    rows = fs.class_rows(class_index)
    if rows.size == 0 or n <= 0:
        return rows[:0]
    acts = np.asarray(fs.features[rows, feature], dtype=np.float32)
    return rows[np.argsort(-acts, kind="stable")[:n]]


@dataclass
class AssetPlan:
    """What to render: ``overlays`` and ``attacks`` as lists of (row, feature) of one split."""

    overlays: list[tuple[int, int]]
    attacks: list[tuple[int, int]]


def plan_pairs(fs, pairs: Iterable[tuple[int, int]], *, n_images: int, n_attack: int) -> AssetPlan:
    """For each (class, feature): overlays of its ``n_images`` top-activating images of the class and
    attacks of the first ``n_attack`` of them (the Features page's rule)."""
    ov, at = [], []
    for c, j in pairs:
        rows = top_activating_rows(fs, int(c), int(j), max(n_images, n_attack))
        ov += [(int(r), int(j)) for r in rows[:n_images]]
        at += [(int(r), int(j)) for r in rows[:n_attack]]
    return AssetPlan(overlays=list(dict.fromkeys(ov)), attacks=list(dict.fromkeys(at)))


def _sid(manifest, row: int) -> int:
    return int(manifest.df["sample_id"].iat[int(row)])


def _image(manifest, row: int) -> torch.Tensor:
    arr = np.asarray(manifest.load_image(int(row)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()               # (H, W, 3) -> (3, H, W)


def _batches(items: list, batch_size: int) -> Iterable[list]:
    for s in range(0, len(items), batch_size):
        yield items[s:s + batch_size]


def _by_shape(manifest, rows: Sequence[int]) -> tuple[dict[int, torch.Tensor], dict[tuple, list[int]]]:
    images = {r: _image(manifest, r) for r in rows}
    groups: dict[tuple, list[int]] = {}
    for r, x in images.items():
        groups.setdefault(tuple(x.shape), []).append(r)
    return images, groups


def existing_overlays(ws: Workspace, dataset: str, model_name: str, manifest, pairs: Iterable[tuple[int, int]], *,
                      size: int = 128) -> dict[tuple[int, int], Path]:
    """The cached overlay files that exist for ``pairs`` ((row, feature) -> path); renders nothing."""
    out = {}
    for r, j in pairs:
        p = ws.path(overlay_cache_rel(dataset, model_name, _sid(manifest, r), j, size))
        if p.exists():
            out[(int(r), int(j))] = p
    return out


def existing_attacks(ws: Workspace, dataset: str, model_name: str, manifest, pairs: Iterable[tuple[int, int]], *,
                     size: int = 128, steps: int = 100, seed: int = 0) -> dict[tuple[int, int], Path]:
    """The cached feature-attack files that exist for ``pairs``; renders nothing."""
    out = {}
    for r, j in pairs:
        p = ws.path(attack_cache_rel(dataset, model_name, _sid(manifest, r), j, steps, seed, size))
        if p.exists():
            out[(int(r), int(j))] = p
    return out


def render_overlays(ws: Workspace, dataset: str, model_name: str, model: torch.nn.Module, manifest,
                    pairs: Sequence[tuple[int, int]], *, size: int = 128, alpha: float = 0.5, device: str = "auto",
                    batch_size: int = 64, stop: Callable[[], bool] | None = None,
                    progress: ProgressFn | None = None) -> dict[tuple[int, int], Path]:
    """Activation-map overlays of (row, feature) ``pairs`` -> paths (the `cached_overlay` files).
    Missing files are rendered ``batch_size`` images at a time (one forward pass per batch, every
    feature asked of those images taken from it); existing ones are kept."""
    progress = progress or null_progress
    pairs = [(int(r), int(j)) for r, j in dict.fromkeys((int(r), int(j)) for r, j in pairs)]
    out = existing_overlays(ws, dataset, model_name, manifest, pairs, size=size)
    todo = [p for p in pairs if p not in out]
    if not todo:
        progress(1.0, f"{len(out)} overlays cached")
        return out
    if not hasattr(model, "feature_map"):
        raise SpurAuditError("the model has no feature_map(x); activation maps need a spatial encoder")
    feats_of: dict[int, list[int]] = {}
    for r, j in todo:
        feats_of.setdefault(r, []).append(j)
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    done = 0
    try:
        model_dev = model.to(dev)
        for chunk in _batches(list(feats_of), batch_size):
            if stop is not None and stop():
                break
            images, groups = _by_shape(manifest, chunk)
            for shape, rows in groups.items():
                x = torch.stack([images[r] for r in rows])                        # (b, 3, H, W)
                with torch.no_grad():
                    fmap = model_dev.feature_map(x.to(dev, torch.float32))        # (b, D, h, w)
                d = fmap.shape[1]
                idx = [(i, r, j) for i, r in enumerate(rows) for j in feats_of[r]]
                bad = sorted({j for _, _, j in idx if not 0 <= j < d})
                if bad:
                    raise SpurAuditError(f"feature indices {bad} out of range [0, {d})")
                bi = torch.tensor([i for i, _, _ in idx], device=fmap.device)
                bj = torch.tensor([j for _, _, j in idx], device=fmap.device)
                sel = normalize_maps(fmap[bi, bj])[:, None]                       # (P, 1, h, w): one call
                up = F.interpolate(sel, size=shape[-2:], mode="bilinear", align_corners=False)[:, 0]
                up = up.clamp_(0, 1).cpu().numpy()                                # (P, H, W)
                for p_, (_, r, j) in enumerate(idx):
                    rel = overlay_cache_rel(dataset, model_name, _sid(manifest, r), j, size)
                    out[(r, j)] = ws.save_image(rel, to_pil(overlay(images[r], up[p_], alpha=alpha), size=size),
                                                 compress_level=1)
                    done += 1
            progress(done / len(todo), f"overlays {done:,}/{len(todo):,}")
    finally:
        model.train(was_training)
    return out


def render_attacks(ws: Workspace, dataset: str, model_name: str, model: torch.nn.Module, manifest,
                   pairs: Sequence[tuple[int, int]], *, size: int = 128, steps: int = 100, seed: int = 0,
                   device: str = "auto", batch_size: int = 16, stop: Callable[[], bool] | None = None,
                   progress: ProgressFn | None = None) -> dict[tuple[int, int], Path]:
    """Feature attacks (`core.features.attack`, no initial noise) of (row, feature) ``pairs`` -> paths
    (the `cached_attack` files). Missing ones are rendered ``batch_size`` pairs at a time: one
    gradient-ascent loop on each pair's own feature (the summed objective separates per image in
    eval mode, so each image gets its own normalised step, as in a single attack)."""
    progress = progress or null_progress
    AttackConfig(steps=steps).validate()
    pairs = [(int(r), int(j)) for r, j in dict.fromkeys((int(r), int(j)) for r, j in pairs)]
    out = existing_attacks(ws, dataset, model_name, manifest, pairs, size=size, steps=steps, seed=seed)
    todo = [p for p in pairs if p not in out]
    if not todo:
        progress(1.0, f"{len(out)} attacks cached")
        return out
    dev = resolve_device(device)
    done = 0
    with frozen_on(model, dev):
        for chunk in _batches(todo, batch_size):
            if stop is not None and stop():
                break
            images, groups = _by_shape(manifest, sorted({r for r, _ in chunk}))
            by_shape: dict[tuple, list[tuple[int, int]]] = {}
            for r, j in chunk:
                by_shape.setdefault(tuple(images[r].shape), []).append((r, j))
            for shape, group in by_shape.items():
                x = torch.stack([images[r] for r, _ in group]).to(dev, torch.float32)   # (b, 3, H, W)
                js = torch.tensor([j for _, j in group], device=dev)                   # (b,)
                step = default_step_size(shape)
                with torch.no_grad():
                    d = model.features(x[:1]).shape[1]
                bad = [j for _, j in group if not 0 <= j < d]
                if bad:
                    raise SpurAuditError(f"feature indices {bad} out of range [0, {d})")
                x = ascend_features(model, x, js, steps=steps, step=step)
                adv = x.detach().cpu()
                for i, (r, j) in enumerate(group):
                    rel = attack_cache_rel(dataset, model_name, _sid(manifest, r), j, steps, seed, size)
                    out[(r, j)] = ws.save_image(rel, to_pil(adv[i], size=size), compress_level=1)
                    done += 1
            progress(done / len(todo), f"attacks {done:,}/{len(todo):,}")
    return out
