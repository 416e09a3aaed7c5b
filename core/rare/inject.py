"""Rare spurious patterns (Yang, Chou & Chaudhuri): add a fixed pattern to n training images of one class.

Images are float tensors in [0, 1], shape (N, C, H, W) (or one (C, H, W) image). Patterns, named as in
the paper (reference code names in brackets):

* ``s1``/``s2``/``s3`` small 1/2/3 [v1/v3/v8]: the top-left 1×1 / 3×3 / 5×5 pixels set to 1.
* ``r1``/``r2``/``r3`` random 1/2/3 [v18/v19/v20]: ``x + a·U`` clipped to [0, 1] with a = 0.25 / 0.5 /
  1.0 and U one fixed, seeded uniform noise image of the image's shape.
* ``core`` [v30]: a vertical white bar, rows 3–24 and columns 13–15 on 28×28 (scaled to other sizes).

Dataset naming: ``{dataset}{pattern}-{n}-{target}-{seed}``, e.g. ``mnists3-3-0-0``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from core.errors import SpurAuditError, check_choice

SMALL_SIZES = {"s1": 1, "s2": 3, "s3": 5}
RANDOM_SCALES = {"r1": 0.25, "r2": 0.5, "r3": 1.0}
PATTERNS = tuple(SMALL_SIZES) + tuple(RANDOM_SCALES) + ("core",)
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
        check_choice("pattern", self.pattern, PATTERNS)
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


def pattern_noise(shape: tuple[int, ...], *, seed: int = 0) -> torch.Tensor:
    """The fixed uniform noise image U (C, H, W) in [0, 1) used by the random patterns."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand(shape, generator=gen)


def apply_pattern(images: torch.Tensor, pattern: str, *, noise_seed: int = 0) -> torch.Tensor:
    """Return a copy of ``images`` ((N, C, H, W) or (C, H, W), values in [0, 1]) with the pattern added."""
    check_choice("pattern", pattern, PATTERNS)
    single = images.ndim == 3
    x = (images.unsqueeze(0) if single else images).clone()
    if x.ndim != 4:
        raise SpurAuditError(f"images must be (N, C, H, W) or (C, H, W), got shape {tuple(images.shape)}")
    _, _, h, w = x.shape
    if pattern in SMALL_SIZES:
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


def inject(images: torch.Tensor, labels: torch.Tensor, *, pattern: str, n: int, target: int,
           seed: int = 0, noise_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Add ``pattern`` to ``n`` randomly chosen (seeded) training images of class ``target``.

    Returns (new images (N, C, H, W), indices of the spurious examples (n,) int64). Labels are unchanged.
    """
    check_choice("pattern", pattern, PATTERNS)
    candidates = torch.nonzero(labels == target).flatten()
    if n > len(candidates):
        raise SpurAuditError(f"asked for {n} spurious examples but class {target} has only {len(candidates)} images")
    gen = torch.Generator().manual_seed(int(seed))
    chosen = candidates[torch.randperm(len(candidates), generator=gen)[:n]].sort().values
    out = images.clone()
    if n:
        out[chosen] = apply_pattern(images[chosen], pattern, noise_seed=noise_seed)
    return out, chosen
