"""Feature sensitivity (seed 002 appendix; Salient ImageNet): corrupt only a masked region.

Corruptions (each touches only the pixels where the mask is True; the rest is bit-identical):
- ``gray`` (colour): ``rgb_to_grayscale`` replicated to 3 channels;
- ``blur`` (texture): Gaussian blur, sigma = ``blur_sigma`` x H / 28 by default;
- ``rotate`` (shape): the image split in a grid of square patches (side ``patch`` px, default H/4),
  each rotated by a random multiple of 90 degrees;
- ``noise``: additive Gaussian noise, sigma 0.25 (Salient ImageNet), clamped to [0, 1].
Gray, blur and rotate use ``torchvision.transforms.v2.functional``.

Masks come from a class's core features, its spurious features (NAMs binarised at a quantile), a
given object mask, or Salient ImageNet's soft feature masks (`core.audit.salient_masks`). A bool mask
replaces the pixels it covers; a soft mask m in [0, 1] blends, x + m (corrupted(x) − x) — for ``noise``
that is Salient ImageNet's own x + m · N(0, σ²), clamped to [0, 1] — so pixels with m = 0 are untouched
either way. The control corrupts a random region of equal area: the same mask circularly shifted by a
random offset (seeded). Drop = acc(clean) − acc(corrupted); a feature group the model relies on shows
drop(masked) > drop(random). With Salient masks of the spurious features, acc_masked is Salient
ImageNet's "core accuracy" (the cue is noised away); with those of the core features, its "spurious
accuracy".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torchvision.transforms.v2 import functional as TF

from core.audit.crops import class_feature_masks, predict
from core.errors import SpurAuditError, check_choice
from core.features.maps import binarize
from core.progress import ProgressFn, null_progress

__all__ = ["CORRUPTIONS", "SensitivityConfig", "SensitivityResult", "corrupt", "random_region",
           "feature_masks", "measure_sensitivity"]

CORRUPTIONS = ("gray", "blur", "rotate", "noise")


@dataclass
class SensitivityConfig:
    corruptions: tuple[str, ...] = CORRUPTIONS
    noise_sigma: float = 0.25
    blur_sigma: float | None = None      # None = 1.5 * H / 28
    patch: int | None = None             # None = max(2, H // 4)
    quantile: float = 0.8                # NAM binarisation for feature masks
    seed: int = 0
    batch_size: int = 128

    def validate(self) -> None:
        for c in self.corruptions:
            check_choice("corruption", c, CORRUPTIONS)
        if self.noise_sigma < 0:
            raise SpurAuditError("noise_sigma must be >= 0")
        if self.blur_sigma is not None and self.blur_sigma <= 0:
            raise SpurAuditError("blur_sigma must be > 0")
        if self.patch is not None and self.patch < 1:
            raise SpurAuditError("patch must be >= 1 pixel")
        if not 0 <= self.quantile < 1:
            raise SpurAuditError("quantile must be in [0, 1)")


@dataclass
class SensitivityResult:
    """table: one row per (class_index, corruption) plus class_index -1 = all images: n, acc_clean,
    acc_masked, acc_random, drop_masked, drop_random, mask_area."""

    table: pd.DataFrame
    mask_source: str

    def summary(self) -> pd.DataFrame:
        return self.table[self.table.class_index == -1].reset_index(drop=True)


def _noise(images: torch.Tensor, config: SensitivityConfig, gen: torch.Generator) -> torch.Tensor:
    """Gaussian noise (B, 3, H, W) of sigma ``config.noise_sigma``, drawn on the CPU (seeded), on the images' device."""
    return (torch.randn(images.shape, generator=gen) * config.noise_sigma).to(images.device)


def _corrupt_full(images: torch.Tensor, kind: str, config: SensitivityConfig, gen: torch.Generator) -> torch.Tensor:
    """The corrupted version of the whole images (B, 3, H, W)."""
    B, C, H, W = images.shape
    if kind == "gray":
        return TF.rgb_to_grayscale(images, num_output_channels=3)
    if kind == "blur":
        sigma = config.blur_sigma if config.blur_sigma is not None else 1.5 * H / 28
        k = int(2 * np.ceil(3 * sigma) + 1)
        k = min(k, (min(H, W) // 2) * 2 - 1)
        k = max(k, 3)
        return TF.gaussian_blur(images, kernel_size=[k, k], sigma=[sigma, sigma])
    if kind == "noise":
        return (images + _noise(images, config, gen)).clamp(0, 1)
    if kind == "rotate":
        p = config.patch or max(2, H // 4)
        out = images.clone()
        for top in range(0, H - p + 1, p):
            for left in range(0, W - p + 1, p):
                ks = torch.randint(1, 4, (B,), generator=gen)
                patch = images[:, :, top:top + p, left:left + p]                      # (B, C, p, p)
                for k in (1, 2, 3):
                    sel = torch.nonzero(ks == k).flatten()
                    if sel.numel():
                        out[sel, :, top:top + p, left:left + p] = TF.rotate(patch[sel], 90.0 * k)
        return out
    raise SpurAuditError(f"unknown corruption {kind!r}; valid choices: {', '.join(CORRUPTIONS)}")


def corrupt(images: torch.Tensor, masks: torch.Tensor | np.ndarray, kind: str, *,
            config: SensitivityConfig | None = None, seed: int | None = None) -> torch.Tensor:
    """Apply corruption ``kind`` only inside ``masks``.

    images: (B, 3, H, W) float in [0, 1]; masks: (B, H, W) bool (True = corrupt) or float in [0, 1]
    (soft: blended, see the module docstring). Returns a new tensor; pixels outside the mask (False / 0)
    are exactly the input's.
    """
    config = config or SensitivityConfig()
    check_choice("corruption", kind, CORRUPTIONS)
    m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks)
    if images.dim() != 4 or m.shape != (images.shape[0], *images.shape[-2:]):
        raise SpurAuditError(f"masks must be (B, H, W) matching images {tuple(images.shape)}; got {tuple(m.shape)}")
    gen = torch.Generator().manual_seed(int(config.seed if seed is None else seed))
    if m.dtype == torch.bool:
        return torch.where(m[:, None].to(images.device), _corrupt_full(images, kind, config, gen), images)
    w = m.float().clamp(0, 1)[:, None].to(images.device)                           # (B, 1, H, W)
    if kind == "noise":                 # Salient ImageNet: the noise itself is scaled by the soft mask
        return (images + w * _noise(images, config, gen)).clamp(0, 1)
    return images + w * (_corrupt_full(images, kind, config, gen) - images)


def random_region(masks: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Control masks of equal area: each (H, W) mask circularly shifted by a random (dy, dx); bool masks
    stay bool, soft ones keep their values."""
    masks = np.asarray(masks)
    masks = masks if masks.dtype == bool else masks.astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty_like(masks)
    H, W = masks.shape[-2:]
    for i in range(masks.shape[0]):
        dy, dx = int(rng.integers(0, H)), int(rng.integers(0, W))
        out[i] = np.roll(masks[i], (dy, dx), axis=(0, 1))
    return out


def feature_masks(model: torch.nn.Module, images: torch.Tensor, labels: np.ndarray,
                  features: Mapping[int, Sequence[int]], *, quantile: float = 0.8,
                  device: str | torch.device = "auto", batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Binary masks (B, H, W) from each image's class ``features`` (core or spurious), and which images had any."""
    soft, has = class_feature_masks(model, images, labels, features, device=device, batch_size=batch_size)
    return binarize(soft, quantile=quantile) & has[:, None, None], has


def measure_sensitivity(model: torch.nn.Module, images: torch.Tensor, labels: np.ndarray, masks: np.ndarray, *,
                        mask_source: str = "given", config: SensitivityConfig | None = None,
                        device: str | torch.device = "auto", progress: ProgressFn | None = None
                        ) -> SensitivityResult:
    """Accuracy drop per class and corruption, masked region vs a random region of equal area.

    images: (B, 3, H, W) in [0, 1]; labels: (B,) int; masks: (B, H, W) bool, or float in [0, 1] (soft;
    ``mask_area`` is then the mean mask value).
    """
    config = config or SensitivityConfig()
    config.validate()
    progress = progress or null_progress
    labels = np.asarray(labels).astype(np.int64)
    masks = np.asarray(masks)
    masks = masks if masks.dtype == bool else np.clip(masks.astype(np.float32), 0, 1)
    if masks.shape != (images.shape[0], *images.shape[-2:]) or labels.shape[0] != images.shape[0]:
        raise SpurAuditError("images (B, 3, H, W), labels (B,) and masks (B, H, W) must agree")
    ctrl = random_region(masks, seed=config.seed)
    clean = predict(model, images, device=device, batch_size=config.batch_size) == labels
    rows = []
    area = masks.mean(axis=(1, 2))
    for ci, kind in enumerate(config.corruptions):
        pm = predict(model, corrupt(images, masks, kind, config=config, seed=config.seed), device=device,
                     batch_size=config.batch_size) == labels
        pr = predict(model, corrupt(images, ctrl, kind, config=config, seed=config.seed + 1), device=device,
                     batch_size=config.batch_size) == labels
        for c in [-1, *np.unique(labels).tolist()]:
            sel = np.ones_like(labels, bool) if c == -1 else labels == c
            a0, am, ar = clean[sel].mean(), pm[sel].mean(), pr[sel].mean()
            rows.append(dict(class_index=int(c), corruption=kind, n=int(sel.sum()), acc_clean=float(a0),
                             acc_masked=float(am), acc_random=float(ar), drop_masked=float(a0 - am),
                             drop_random=float(a0 - ar), mask_area=float(area[sel].mean())))
        progress((ci + 1) / len(config.corruptions), f"corruption {kind}")
    return SensitivityResult(table=pd.DataFrame(rows), mask_source=mask_source)
