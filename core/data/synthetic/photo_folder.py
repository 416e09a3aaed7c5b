"""A generated ImageFolder of JPEG photos at photo sizes (issue 14's extraction benchmark and tests).

``write_photo_folder(root, n_images=2000, n_classes=100, min_side=256, max_side=500)`` writes
``root/<wnid-like class>/<i>.JPEG``: each image is a random crop of one of scikit-image's bundled real
photos/textures, resized to a random width and height in [min_side, max_side], with a per-class colour
tint and a class-dependent bright square (so a model can tell classes apart), saved as JPEG quality 90.
Decode cost is that of real JPEGs of those sizes. Class folders are named like ImageNet wnids
(``n0000000c``), sorted = class order. Seeded. It writes into a folder of the caller's choosing (a
dataset source to import, like any user folder), not into a workspace.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from core.errors import SpurAuditError
from core.progress import ProgressFn, null_progress

_SOURCES = ("brick", "grass", "gravel", "coffee", "chelsea", "astronaut", "rocket", "coins", "camera", "moon")

__all__ = ["write_photo_folder", "wnid"]


def wnid(c: int) -> str:
    """An ImageNet-style folder name for class ``c`` (``n`` + 8 digits)."""
    return f"n{int(c):08d}"


def _sources() -> list[np.ndarray]:
    out = []
    for name in _SOURCES:
        a = np.asarray(getattr(skdata, name)())
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)
        out.append(a[..., :3].astype(np.uint8))
    return out


def write_photo_folder(root: str | Path, *, n_images: int = 2000, n_classes: int = 100, min_side: int = 256,
                       max_side: int = 500, seed: int = 0, quality: int = 90,
                       progress: ProgressFn | None = None) -> dict:
    """Write the folder; returns {root, n_images, n_classes, bytes}. Existing files are overwritten."""
    if n_classes < 1 or n_images < n_classes:
        raise SpurAuditError(f"need n_images >= n_classes >= 1 (got {n_images} images, {n_classes} classes)")
    if not 16 <= min_side <= max_side:
        raise SpurAuditError(f"need 16 <= min_side <= max_side (got {min_side}, {max_side})")
    progress = progress or null_progress
    rng = np.random.default_rng(seed)
    root = Path(root)
    srcs = _sources()
    tints = rng.uniform(0.6, 1.4, size=(n_classes, 3))
    total = 0
    for i in range(n_images):
        c = i % n_classes
        src = srcs[int(rng.integers(len(srcs)))]
        h, w = int(rng.integers(min_side, max_side + 1)), int(rng.integers(min_side, max_side + 1))
        ch, cw = int(rng.integers(src.shape[0] // 3, src.shape[0] + 1)), int(rng.integers(src.shape[1] // 3, src.shape[1] + 1))
        y0, x0 = int(rng.integers(0, src.shape[0] - ch + 1)), int(rng.integers(0, src.shape[1] - cw + 1))
        img = Image.fromarray(src[y0:y0 + ch, x0:x0 + cw]).resize((w, h), Image.BILINEAR)
        a = np.clip(np.asarray(img, dtype=np.float32) * tints[c], 0, 255)
        s = max(8, min(h, w) // 5)
        py, px = (c * 37) % (h - s), (c * 53) % (w - s)
        a[py:py + s, px:px + s] = 255 * (np.array([c % 2, (c // 2) % 2, (c // 4) % 2]) * 0.8 + 0.2)
        folder = root / wnid(c)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:06d}.JPEG"
        Image.fromarray(a.astype(np.uint8)).save(path, format="JPEG", quality=quality)
        total += path.stat().st_size
        if i % 100 == 0:
            progress((i + 1) / n_images, f"wrote {i + 1}/{n_images} JPEGs")
    progress(1.0, f"wrote {n_images} JPEGs")
    return {"root": str(root), "n_images": n_images, "n_classes": n_classes, "bytes": total}
