"""Neural activation maps (NAMs), overlays, soft masks and the workspace image cache.

NAM of image x for feature j = channel j of ``model.feature_map(x)`` (B, D, h, w), normalised per
image to [0, 1] (min-max; a constant map becomes 0), resized bilinearly to the image size (H, W).
Higher = the feature fires more there.

Cached images (thumbnails, overlays, attacks) live under ``cache/`` of the workspace and are written
only through ``Workspace.save_image``; the ``cached_*`` functions return the PNG path, computing it
only when missing, so the dashboard never recomputes them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.device import resolve_device
from core.errors import SpurAuditError
from core.features.attack import AttackConfig, feature_attack
from core.workspace import Workspace

__all__ = ["activation_maps", "normalize_maps", "binarize", "soft_mask", "overlay", "to_pil", "colormap",
           "cached_image", "cached_thumbnail", "cached_overlay", "cached_attack", "overlay_cache_rel",
           "attack_cache_rel"]


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each (h, w) map of (..., h, w) to [0, 1] (constant maps -> 0)."""
    flat = maps.flatten(-2)
    lo = flat.min(dim=-1, keepdim=True).values
    hi = flat.max(dim=-1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return out.view_as(maps)


@torch.no_grad()
def activation_maps(model: torch.nn.Module, images: torch.Tensor, features: Sequence[int] | int, *,
                    device: str | torch.device = "auto", batch_size: int = 64,
                    size: tuple[int, int] | None = None) -> np.ndarray:
    """NAMs of ``features`` for each image -> (B, F, H, W) float32 in [0, 1].

    images: (B, 3, H, W) float in [0, 1] (or (3, H, W) for one image); features: indices into the
    model's feature map channels; size: output (H, W) (default: the image size).
    """
    if isinstance(features, (int, np.integer)):
        features = [int(features)]
    feats = [int(j) for j in features]
    if not feats:
        raise SpurAuditError("give at least one feature index")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4:
        raise SpurAuditError(f"images must be (B, 3, H, W) floats in [0, 1]; got shape {tuple(images.shape)}")
    if not hasattr(model, "feature_map"):
        raise SpurAuditError("the model has no feature_map(x); use an AuditModel with a spatial encoder")
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    out_hw = tuple(size) if size is not None else tuple(images.shape[-2:])
    outs = []
    try:
        model_dev = model.to(dev)
        for s in range(0, images.shape[0], batch_size):
            x = images[s:s + batch_size].to(dev, torch.float32)
            fmap = model_dev.feature_map(x)                                   # (b, D, h, w)
            d = fmap.shape[1]
            bad = [j for j in feats if not 0 <= j < d]
            if bad:
                raise SpurAuditError(f"feature indices {bad} out of range [0, {d})")
            sel = fmap[:, feats]                                              # (b, F, h, w)
            sel = normalize_maps(sel)
            up = F.interpolate(sel, size=out_hw, mode="bilinear", align_corners=False)  # (b, F, H, W)
            outs.append(up.clamp_(0, 1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(outs).numpy().astype(np.float32)


def binarize(nam: np.ndarray, *, quantile: float = 0.8) -> np.ndarray:
    """Binary mask of the pixels at or above the ``quantile`` of each (H, W) map in (..., H, W) -> bool.

    quantile 0.8 keeps about the top 20 % of pixels (fewer when many pixels sit at the map's minimum,
    which never count). A constant map gives an empty mask.
    """
    if not 0 <= quantile < 1:
        raise SpurAuditError(f"quantile must be in [0, 1), got {quantile}")
    nam = np.asarray(nam, dtype=np.float32)
    thr = np.quantile(nam.reshape(*nam.shape[:-2], -1), quantile, axis=-1)[..., None, None]
    mn = nam.reshape(*nam.shape[:-2], -1).min(axis=-1)[..., None, None]
    return (nam >= thr) & (nam > mn)          # pixels at the map's minimum never count (flat maps: empty)


def soft_mask(nams: np.ndarray, *, quantile: float | None = None) -> np.ndarray:
    """Combine NAMs (..., F, H, W) of several features into one soft mask (..., H, W) in [0, 1]
    (mean then re-normalised per image); with ``quantile`` return its binarised version instead."""
    nams = np.asarray(nams, dtype=np.float32)
    m = nams.mean(axis=-3)
    t = torch.from_numpy(np.ascontiguousarray(m))
    m = normalize_maps(t).numpy()
    if quantile is not None:
        return binarize(m, quantile=quantile).astype(np.float32)
    return m


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (H, W) to an RGB heat colour (H, W, 3) uint8 (dark blue -> red -> yellow)."""
    stops = np.array([[0, 0, 80], [0, 60, 200], [0, 200, 200], [240, 220, 0], [230, 30, 0]], dtype=np.float32)
    pos = np.linspace(0, 1, len(stops))
    v = np.clip(np.asarray(values, dtype=np.float32), 0, 1)
    rgb = np.stack([np.interp(v, pos, stops[:, c]) for c in range(3)], axis=-1)
    return rgb.round().astype(np.uint8)


def _image_hwc_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        img = image.detach().cpu().float()
        if img.dim() != 3:
            raise SpurAuditError(f"image must be (3, H, W) in [0, 1]; got shape {tuple(img.shape)}")
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        return (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)   # (H, W, 3)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return arr


def overlay(image: torch.Tensor | np.ndarray, nam: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """Heat map of ``nam`` (H, W) in [0, 1] blended on ``image`` ((3, H, W) float tensor in [0, 1] or
    (H, W, 3) uint8) -> (H, W, 3) uint8. ``alpha`` = weight of the heat map."""
    if not 0 <= alpha <= 1:
        raise SpurAuditError("alpha must be in [0, 1]")
    img = _image_hwc_uint8(image).astype(np.float32)
    nam = np.asarray(nam, dtype=np.float32)
    if nam.shape != img.shape[:2]:
        t = torch.from_numpy(nam)[None, None]
        nam = F.interpolate(t, size=img.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
    heat = colormap(nam).astype(np.float32)
    return ((1 - alpha) * img + alpha * heat).round().clip(0, 255).astype(np.uint8)


def to_pil(image: torch.Tensor | np.ndarray, *, size: int | None = None) -> Image.Image:
    """(3, H, W) float tensor in [0, 1] or (H, W, 3) uint8 -> PIL RGB image, optionally resized so
    the longer side is ``size`` (nearest for upscaling tiny images, bilinear for downscaling)."""
    pil = Image.fromarray(_image_hwc_uint8(image), mode="RGB")
    if size:
        w, h = pil.size
        scale = size / max(w, h)
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
        pil = pil.resize(new, Image.NEAREST if scale > 1 else Image.BILINEAR)
    return pil


def cached_image(ws: Workspace, rel: str, make: Callable[[], Image.Image]) -> Path:
    """Return ``ws.path(rel)``; call ``make()`` and save its image there only when the file is missing."""
    if not rel.startswith("cache/"):
        raise SpurAuditError(f"cache paths live under cache/ (got {rel!r})")
    path = ws.path(rel)
    if not path.exists():
        ws.save_image(rel, make())
    return path


def _cache_rel(kind: str, dataset: str, *parts: object) -> str:
    safe = "_".join(str(p).replace("/", "-").replace("\\", "-") for p in parts)
    return f"cache/{kind}/{dataset.replace('/', '-')}/{safe}.png"


def overlay_cache_rel(dataset: str, model_name: str, sample_id: int, feature: int, size: int) -> str:
    """Workspace-relative cache path of an activation-map overlay (`cached_overlay`, `core.features.assets`)."""
    return _cache_rel("overlays", dataset, model_name, int(sample_id), f"f{int(feature)}", size)


def attack_cache_rel(dataset: str, model_name: str, sample_id: int, feature: int, steps: int, seed: int,
                     size: int) -> str:
    """Workspace-relative cache path of a feature attack (`cached_attack`, `core.features.assets`)."""
    return _cache_rel("attacks", dataset, model_name, int(sample_id), f"f{int(feature)}", steps, seed, size)


def cached_thumbnail(ws: Workspace, dataset: str, manifest, row: int, *, size: int = 128) -> Path:
    """PNG thumbnail of manifest row ``row`` (longer side ``size``), cached by sample_id."""
    sid = int(manifest.df["sample_id"].iat[int(row)])

    def make():
        img = manifest.load_image(int(row))
        arr = np.asarray(img)
        return to_pil(arr, size=size)

    return cached_image(ws, _cache_rel("thumbs", dataset, sid, size), make)


def cached_overlay(ws: Workspace, dataset: str, model_name: str, model: torch.nn.Module, manifest, row: int,
                   feature: int, *, size: int = 128, alpha: float = 0.5, device: str = "auto") -> Path:
    """PNG of the NAM of ``feature`` over manifest row ``row``'s image, cached per (model, sample, feature)."""
    sid = int(manifest.df["sample_id"].iat[int(row)])

    def make():
        arr = np.asarray(manifest.load_image(int(row)), dtype=np.float32) / 255.0
        x = torch.from_numpy(arr).permute(2, 0, 1).contiguous()               # (H, W, 3) -> (3, H, W)
        nam = activation_maps(model, x, [int(feature)], device=device)[0, 0]
        return to_pil(overlay(x, nam, alpha=alpha), size=size)

    return cached_image(ws, overlay_cache_rel(dataset, model_name, sid, feature, size), make)


def cached_attack(ws: Workspace, dataset: str, model_name: str, model: torch.nn.Module, manifest, row: int,
                  feature: int, *, size: int = 128, steps: int = 100, step_size: float | None = None,
                  seed: int = 0, device: str = "auto") -> Path:
    """PNG of the feature attack (`core.features.attack.feature_attack`) from row ``row``'s image."""
    sid = int(manifest.df["sample_id"].iat[int(row)])

    def make():
        arr = np.asarray(manifest.load_image(int(row)), dtype=np.float32) / 255.0
        x = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        adv = feature_attack(model, x, int(feature), config=AttackConfig(steps=steps, step_size=step_size,
                                                                         seed=seed), device=device)
        return to_pil(adv, size=size)

    return cached_image(ws, attack_cache_rel(dataset, model_name, sid, feature, steps, seed, size), make)
