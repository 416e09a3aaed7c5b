"""Core crops (seed 002 §3, appendix "core-cropping").

From the NAMs of a class's core features build a soft mask (mean of the maps, renormalised), take
the bounding box of the pixels >= ``threshold``, make it square by growing the shorter side to the
longer one (centred, shifted to stay inside the image, capped at the shorter image side), crop and
resize back to the image size, and re-evaluate the model. The paper finds this reliable on the top
~20 % activating images, so it is meant for the high-spuriosity images of a class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw
from torchvision.transforms.v2 import functional as TF

from core.device import resolve_device
from core.errors import SpurAuditError
from core.features.maps import activation_maps, soft_mask
from core.progress import ProgressFn, null_progress

__all__ = ["CropConfig", "CropResult", "square_box", "crop_box", "apply_crop", "class_feature_masks",
           "evaluate_core_crops", "predict", "crop_examples", "crop_pair_tile"]


@dataclass
class CropConfig:
    """threshold: soft-mask level defining the box (mask is in [0, 1]); batch_size."""

    threshold: float = 0.5
    batch_size: int = 128

    def validate(self) -> None:
        if not 0 < self.threshold <= 1:
            raise SpurAuditError("threshold must be in (0, 1]")


@dataclass
class CropResult:
    """acc_before / acc_after over the evaluated images; per_class DataFrame (class_index, n,
    acc_before, acc_after); boxes (B, 3) int (top, left, side); predictions before/after (B,)."""

    acc_before: float
    acc_after: float
    per_class: pd.DataFrame
    boxes: np.ndarray
    pred_before: np.ndarray
    pred_after: np.ndarray
    skipped_classes: list[int] = field(default_factory=list)
    kept: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def to_dict(self) -> dict:
        return {"acc_before": self.acc_before, "acc_after": self.acc_after, "n": int(len(self.boxes)),
                "per_class": self.per_class.to_dict(orient="records"), "skipped_classes": self.skipped_classes}


def square_box(top: int, left: int, bottom: int, right: int, height: int, width: int) -> tuple[int, int, int]:
    """Square (top, left, side) around the box rows [top, bottom) x cols [left, right): the shorter
    side grown to the longer, centred on the box, shifted to lie inside an (height, width) image;
    side capped at min(height, width)."""
    h, w = bottom - top, right - left
    if h <= 0 or w <= 0:
        raise SpurAuditError("empty box")
    side = min(max(h, w), height, width)
    cy, cx = (top + bottom) / 2.0, (left + right) / 2.0
    t = int(round(cy - side / 2.0))
    l_ = int(round(cx - side / 2.0))
    t = min(max(t, 0), height - side)
    l_ = min(max(l_, 0), width - side)
    return t, l_, side


def crop_box(mask: np.ndarray, *, threshold: float = 0.5) -> tuple[int, int, int]:
    """Square crop box (top, left, side) around the pixels of ``mask`` (H, W) >= threshold; the
    whole (largest centred square) image when no pixel qualifies."""
    mask = np.asarray(mask)
    H, W = mask.shape
    ys, xs = np.nonzero(mask >= threshold)
    if ys.size == 0:
        return square_box(0, 0, H, W, H, W)
    return square_box(int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1, H, W)


def apply_crop(image: torch.Tensor, box: tuple[int, int, int]) -> torch.Tensor:
    """Crop (3, H, W) (or (B, 3, H, W) with one box) to the square box and resize back to (H, W)."""
    t, l_, side = (int(v) for v in box)
    H, W = image.shape[-2:]
    return TF.resized_crop(image, t, l_, side, side, size=[H, W], antialias=True).clamp(0, 1)


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, *, device: str | torch.device = "auto",
            batch_size: int = 128) -> np.ndarray:
    """argmax predictions (B,) int64 of ``model`` on images (B, 3, H, W) in [0, 1]."""
    dev = resolve_device(device)
    was = model.training
    model.eval().to(dev)
    out = []
    try:
        for s in range(0, images.shape[0], batch_size):
            out.append(model(images[s:s + batch_size].to(dev, torch.float32)).argmax(1).cpu())
    finally:
        model.train(was)
    return torch.cat(out).numpy().astype(np.int64) if out else np.empty(0, dtype=np.int64)


def class_feature_masks(model: torch.nn.Module, images: torch.Tensor, labels: np.ndarray,
                        features: Mapping[int, Sequence[int]], *, device: str | torch.device = "auto",
                        batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Soft mask (B, H, W) in [0, 1] per image from the NAMs of its class's ``features`` (mean of the
    maps, renormalised), and a (B,) bool telling which images had any feature."""
    labels = np.asarray(labels).astype(np.int64)
    B, _, H, W = images.shape
    masks = np.zeros((B, H, W), dtype=np.float32)
    has = np.zeros(B, dtype=bool)
    for c in np.unique(labels):
        feats = [int(j) for j in features.get(int(c), [])]
        if not feats:
            continue
        idx = np.nonzero(labels == c)[0]
        nams = activation_maps(model, images[idx], feats, device=device, batch_size=batch_size)  # (n, F, H, W)
        masks[idx] = soft_mask(nams)
        has[idx] = True
    return masks, has


def evaluate_core_crops(model: torch.nn.Module, images: torch.Tensor, labels: np.ndarray,
                        core: Mapping[int, Sequence[int]], *, config: CropConfig | None = None,
                        device: str | torch.device = "auto", progress: ProgressFn | None = None) -> CropResult:
    """Accuracy of ``images`` (B, 3, H, W) in [0, 1] with ``labels`` (B,) before vs after core crops.

    core: class -> core features. Images of classes without core features are skipped (listed).
    """
    config = config or CropConfig()
    config.validate()
    progress = progress or null_progress
    labels = np.asarray(labels).astype(np.int64)
    if images.dim() != 4 or images.shape[0] != labels.shape[0]:
        raise SpurAuditError("images must be (B, 3, H, W) with one label per image")
    masks, has = class_feature_masks(model, images, labels, core, device=device, batch_size=config.batch_size)
    skipped = sorted({int(c) for c in labels[~has]})
    keep = np.nonzero(has)[0]
    progress(0.4, "core masks")
    images, labels, masks = images[keep], labels[keep], masks[keep]
    boxes = np.array([crop_box(m, threshold=config.threshold) for m in masks], dtype=np.int64).reshape(-1, 3)
    cropped = torch.stack([apply_crop(images[i], tuple(boxes[i])) for i in range(len(keep))]) if len(keep) \
        else images
    before = predict(model, images, device=device, batch_size=config.batch_size)
    after = predict(model, cropped, device=device, batch_size=config.batch_size)
    progress(0.9, "re-evaluated")
    rows = []
    for c in np.unique(labels):
        sel = labels == c
        rows.append(dict(class_index=int(c), n=int(sel.sum()), acc_before=float((before[sel] == c).mean()),
                         acc_after=float((after[sel] == c).mean())))
    progress(1.0, "core crops done")
    return CropResult(acc_before=float((before == labels).mean()) if len(keep) else float("nan"),
                      acc_after=float((after == labels).mean()) if len(keep) else float("nan"),
                      per_class=pd.DataFrame(rows, columns=["class_index", "n", "acc_before", "acc_after"]),
                      boxes=boxes, pred_before=before, pred_after=after, skipped_classes=skipped, kept=keep)


def crop_examples(result: CropResult, rows: np.ndarray, labels: np.ndarray, *, height: int, width: int) -> list[dict]:
    """One record per evaluated image, for showing the crops without the model: ``row`` (its row in the
    split, from ``rows`` (B,) aligned with the input batch), ``class_index``, ``box`` = (top, left, side)
    as fractions (top / H, left / W, side / H, side / W) so it applies to the image at any size, and the
    predicted class before and after the crop."""
    rows = np.asarray(rows, dtype=np.int64)[result.kept]
    labels = np.asarray(labels, dtype=np.int64)[result.kept]
    return [{"row": int(r), "class_index": int(c),
             "box": [round(t / height, 5), round(l_ / width, 5), round(side / height, 5), round(side / width, 5)],
             "pred_before": int(b), "pred_after": int(a)}
            for r, c, (t, l_, side), b, a in zip(rows, labels, result.boxes, result.pred_before, result.pred_after)]


def crop_pair_tile(image: Image.Image, box: Sequence[float], *, size: int) -> Image.Image:
    """(2 size, size) RGB tile: the image with its core-crop box outlined (yellow) beside the crop itself.
    ``box``: (top, left, side_h, side_w) as fractions of the image (`crop_examples`)."""
    image = image.convert("RGB")
    W, H = image.size
    t, l_, sh, sw = box
    px = (int(round(l_ * W)), int(round(t * H)), int(round((l_ + sw) * W)), int(round((t + sh) * H)))
    crop = image.crop(px).resize((size, size), Image.BILINEAR)
    framed = image.resize((size, size), Image.BILINEAR)
    sx, sy = size / W, size / H
    ImageDraw.Draw(framed).rectangle([px[0] * sx, px[1] * sy, px[2] * sx - 1, px[3] * sy - 1],
                                     outline=(255, 221, 0), width=max(1, size // 48))
    tile = Image.new("RGB", (2 * size + 4, size), (255, 255, 255))
    tile.paste(framed, (0, 0))
    tile.paste(crop, (size + 4, 0))
    return tile
