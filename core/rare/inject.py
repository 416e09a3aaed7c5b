"""Rare spurious patterns (Yang, Chou & Chaudhuri): add a fixed pattern to n training images of one class.

Images are float tensors in [0, 1], shape (N, C, H, W) (or one (C, H, W) image). Patterns, named as in
the paper (reference code names in brackets):

* ``s1``/``s2``/``s3`` small 1/2/3 [v1/v3/v8]: the top-left 1×1 / 3×3 / 5×5 pixels set to 1.
* ``r1``/``r2``/``r3`` random 1/2/3 [v18/v19/v20]: ``x + a·U`` clipped to [0, 1] with a = 0.25 / 0.5 /
  1.0 and U one fixed, seeded uniform noise image of the image's shape.
* ``core`` [v30]: a vertical white bar, rows 3–24 and columns 13–15 on 28×28 (scaled to other sizes).
* a user patch (`PatchSpec`, pattern name ``"patch"``): a PNG with alpha (a logo, a watermark, a
  timestamp) alpha-composited at a position and scale: ``x' = (1 − a)·x + a·rgb`` with
  ``a = opacity · alpha_png``, clipped to [0, 1]; the part of the patch beyond the image border is
  cut off; a patch larger than the image is refused. On 1-channel images the patch's luminance is used.

Dataset naming: ``{dataset}{pattern}-{n}-{target}-{seed}``, e.g. ``mnists3-3-0-0``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from core.errors import SpurAuditError, check_choice

SMALL_SIZES = {"s1": 1, "s2": 3, "s3": 5}
RANDOM_SCALES = {"r1": 0.25, "r2": 0.5, "r3": 1.0}
PATTERNS = tuple(SMALL_SIZES) + tuple(RANDOM_SCALES) + ("core",)
PATCH = "patch"
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")
_NAME = re.compile(r"^(?P<dataset>[a-z0-9_]+?)(?P<pattern>s1|s2|s3|r1|r2|r3|core)-(?P<n>\d+)-(?P<target>\d+)-(?P<seed>\d+)$")


@dataclass(frozen=True)
class RareSpec:
    """One rare-spurious dataset: ``pattern`` added to ``n`` training images of class ``target``."""

    dataset: str
    pattern: str
    n: int
    target: int
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("pattern", self.pattern, PATTERNS + (PATCH,))
        if self.n < 0 or self.target < 0 or self.seed < 0:
            raise SpurAuditError("n, target and seed must be non-negative integers")

    @property
    def name(self) -> str:
        return f"{self.dataset}{self.pattern}-{self.n}-{self.target}-{self.seed}"

    @classmethod
    def parse(cls, name: str) -> "RareSpec":
        """Parse ``mnists3-3-0-0`` -> RareSpec('mnist', 's3', 3, 0, 0)."""
        match = _NAME.match(name.strip().lower())
        if not match:
            raise SpurAuditError(f"cannot parse rare-spurious dataset name {name!r}; expected "
                                 f"{{dataset}}{{pattern}}-{{n}}-{{target}}-{{seed}} with pattern in {', '.join(PATTERNS)}, "
                                 "e.g. mnists3-3-0-0")
        g = match.groupdict()
        return cls(g["dataset"], g["pattern"], int(g["n"]), int(g["target"]), int(g["seed"]))


# --------------------------------------------------------------------------------------------------
# the user's own patch
# --------------------------------------------------------------------------------------------------
@dataclass
class PatchSpec:
    """A user patch: ``path`` of a PNG (RGBA; RGB = opaque), where it goes and how big it is.

    position: a corner name (``top-left``, ``top-right``, ``bottom-left``, ``bottom-right``,
    ``center``; ``margin`` pixels from the border) or ``(row, col)`` of the patch's top-left pixel
    (negative or too large values put part of the patch outside the image; that part is cut off).
    scale: resize factor of the PNG (1 = its own pixel size). opacity: multiplies the PNG's alpha.
    A relative ``path`` is read relative to the workspace (where `core.rare.artifacts.save_patch`
    stores uploads) when a workspace is given, else the current folder.
    """

    path: str
    position: tuple[int, int] | str = "bottom-right"
    scale: float = 1.0
    opacity: float = 1.0
    margin: int = 1

    def validate(self) -> "PatchSpec":
        if not str(self.path).strip():
            raise SpurAuditError("the patch needs the path of a PNG image (with alpha for a logo or watermark)")
        if not (self.scale > 0 and np.isfinite(self.scale)):
            raise SpurAuditError(f"patch scale must be a positive number, got {self.scale}")
        if not 0 < self.opacity <= 1:
            raise SpurAuditError(f"patch opacity must be in (0, 1], got {self.opacity}")
        if self.margin < 0:
            raise SpurAuditError(f"patch margin must be >= 0 pixels, got {self.margin}")
        if isinstance(self.position, str):
            check_choice("patch position", self.position, CORNERS)
        elif len(tuple(self.position)) != 2:
            raise SpurAuditError(f"patch position must be a corner name or (row, col), got {self.position!r}")
        return self


def _patch_rgba(rgba: np.ndarray, scale: float) -> np.ndarray:
    """(h, w, 4) float in [0, 1] resized by ``scale`` (bilinear on premultiplied colour)."""
    if scale == 1.0:
        return rgba
    h, w = rgba.shape[:2]
    new = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    alpha = rgba[..., 3:4]
    premult = np.concatenate([rgba[..., :3] * alpha, alpha], axis=2)
    chans = [np.asarray(Image.fromarray(premult[..., c].astype(np.float32), mode="F").resize(new, Image.BILINEAR))
             for c in range(4)]
    out = np.clip(np.stack(chans, axis=2), 0.0, 1.0)   # (h', w', 4)
    a = out[..., 3:4]
    out[..., :3] = np.where(a > 1e-6, out[..., :3] / np.maximum(a, 1e-6), 0.0)
    return np.clip(out, 0.0, 1.0)


class PatchPattern:
    """A loaded `PatchSpec`, ready to composite onto (N, C, H, W) images (`apply_pattern`)."""

    name = PATCH

    def __init__(self, spec: PatchSpec, *, rgba: np.ndarray | None = None, root: str | Path | None = None) -> None:
        self.spec = spec.validate() if isinstance(spec, PatchSpec) else spec
        if rgba is None:
            rgba = load_patch_png(spec.path, root=root)
        rgba = np.asarray(rgba, dtype=np.float32)
        if rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
            raise SpurAuditError(f"a patch must be an (h, w, 3|4) image, got shape {rgba.shape}")
        if rgba.shape[2] == 3:
            rgba = np.concatenate([rgba, np.ones(rgba.shape[:2] + (1,), np.float32)], axis=2)
        self.rgba = _patch_rgba(np.clip(rgba, 0.0, 1.0), float(spec.scale))   # (h, w, 4) in [0, 1]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgba.shape[0]), int(self.rgba.shape[1])

    def origin(self, h: int, w: int) -> tuple[int, int]:
        """(row, col) of the patch's top-left pixel on an H×W image; refuses a patch larger than it."""
        ph, pw = self.size
        if ph > h or pw > w:
            raise SpurAuditError(f"the patch is {ph}×{pw} pixels (after scale {self.spec.scale:g}) but the images are "
                                 f"{h}×{w}; use a smaller scale or a smaller PNG")
        pos, m = self.spec.position, int(self.spec.margin)
        if isinstance(pos, str):
            rows = {"top": m, "bottom": h - ph - m, "center": (h - ph) // 2}
            cols = {"left": m, "right": w - pw - m, "center": (w - pw) // 2}
            r_key, _, c_key = pos.partition("-")
            r, c = rows[r_key], cols[c_key or "center"]
            return max(0, min(r, h - ph)), max(0, min(c, w - pw))
        r, c = (int(v) for v in pos)
        if r >= h or c >= w or r + ph <= 0 or c + pw <= 0:
            raise SpurAuditError(f"patch position {(r, c)} puts the whole {ph}×{pw} patch outside the {h}×{w} images")
        return r, c

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Composite onto ``x`` (N, C, H, W) in place-safe fashion; returns a new tensor."""
        _, c, h, w = x.shape
        r0, c0 = self.origin(h, w)
        ph, pw = self.size
        # the visible window of the patch (the part beyond the border is cut off)
        top, left = max(r0, 0), max(c0, 0)
        bottom, right = min(r0 + ph, h), min(c0 + pw, w)
        patch = torch.from_numpy(self.rgba[top - r0:bottom - r0, left - c0:right - c0]).to(x.device, x.dtype)
        rgb, alpha = patch[..., :3], patch[..., 3] * float(self.spec.opacity)          # (h', w', 3), (h', w')
        if c == 1:
            colour = (rgb @ torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device))[None]  # (1, h', w')
        elif c == 3:
            colour = rgb.permute(2, 0, 1)                                                # (3, h', w')
        else:
            colour = rgb.mean(dim=2)[None].expand(c, -1, -1)                             # (C, h', w')
        out = x.clone()
        region = out[:, :, top:bottom, left:right]
        out[:, :, top:bottom, left:right] = (region * (1 - alpha) + colour[None] * alpha).clamp_(0.0, 1.0)
        return out


def load_patch_png(path: str | Path, *, root: str | Path | None = None) -> np.ndarray:
    """The PNG at ``path`` as (h, w, 4) float32 RGBA in [0, 1] (RGB and grey images get alpha 1)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and root is not None:
        p = Path(root) / p
    if not p.is_file():
        raise SpurAuditError(f"patch image {str(path)!r} not found; give the path of a PNG (with alpha for a logo)")
    try:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise SpurAuditError(f"cannot read patch image {str(path)!r} ({exc}); save it as a PNG") from None
    return arr


def pattern_name(pattern: "str | PatchPattern") -> str:
    return pattern if isinstance(pattern, str) else pattern.name


def check_pattern(pattern: "str | PatchPattern") -> None:
    if isinstance(pattern, PatchPattern):
        return
    if pattern == PATCH:
        raise SpurAuditError("pattern 'patch' needs the patch image: give a PatchSpec (path, position, scale)")
    check_choice("pattern", pattern, PATTERNS)


def pattern_noise(shape: tuple[int, ...], *, seed: int = 0) -> torch.Tensor:
    """The fixed uniform noise image U (C, H, W) in [0, 1) used by the random patterns."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand(shape, generator=gen)


def apply_pattern(images: torch.Tensor, pattern: "str | PatchPattern", *, noise_seed: int = 0) -> torch.Tensor:
    """Return a copy of ``images`` ((N, C, H, W) or (C, H, W), values in [0, 1]) with the pattern added.

    ``pattern``: one of `PATTERNS` or a `PatchPattern`. ``noise_seed`` fixes U of the random patterns.
    """
    check_pattern(pattern)
    single = images.ndim == 3
    x = (images.unsqueeze(0) if single else images).clone()
    if x.ndim != 4:
        raise SpurAuditError(f"images must be (N, C, H, W) or (C, H, W), got shape {tuple(images.shape)}")
    _, _, h, w = x.shape
    if isinstance(pattern, PatchPattern):
        x = pattern.apply(x)
    elif pattern in SMALL_SIZES:
        s = SMALL_SIZES[pattern]
        x[:, :, :s, :s] = 1.0
    elif pattern in RANDOM_SCALES:
        noise = pattern_noise(tuple(x.shape[1:]), seed=noise_seed).to(x.device, x.dtype)
        x = (x + RANDOM_SCALES[pattern] * noise).clamp_(0.0, 1.0)
    else:  # core: rows 3–24, cols 13–15 on 28×28, scaled
        r0, r1 = round(3 * h / 28), round(25 * h / 28)
        c0, c1 = round(13 * w / 28), max(round(16 * w / 28), round(13 * w / 28) + 1)
        x[:, :, r0:r1, c0:c1] = 1.0
    return x[0] if single else x


def pattern_l2_norm(images: torch.Tensor, pattern: "str | PatchPattern", *, noise_seed: int = 0) -> float:
    """Mean ℓ2 norm of the change the pattern makes, ``mean_i ||x_i ⊕ p − x_i||₂`` over ``images``
    (N, C, H, W) (clipping and the image content included; the paper's finding 1 is about this norm)."""
    if len(images) == 0:
        raise SpurAuditError("need at least one image to measure a pattern's norm")
    diff = apply_pattern(images, pattern, noise_seed=noise_seed) - images
    return float(diff.flatten(1).norm(dim=1).mean())


def inject(images: torch.Tensor, labels: torch.Tensor, *, pattern: "str | PatchPattern", n: int, target: int,
           seed: int = 0, noise_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Add ``pattern`` to ``n`` randomly chosen (seeded) training images of class ``target``.

    Returns (new images (N, C, H, W), indices of the spurious examples (n,) int64). Labels are unchanged.
    """
    check_pattern(pattern)
    candidates = torch.nonzero(labels == target).flatten()
    if n < 0:
        raise SpurAuditError(f"n must be >= 0, got {n}")
    if n > len(candidates):
        raise SpurAuditError(f"asked for {n} spurious examples but class {target} has only {len(candidates)} images")
    gen = torch.Generator().manual_seed(int(seed))
    chosen = candidates[torch.randperm(len(candidates), generator=gen)[:n]].sort().values
    out = images.clone()
    if n:
        out[chosen] = apply_pattern(images[chosen], pattern, noise_seed=noise_seed)
    return out, chosen
