"""Feature attack: visualise a neural feature by gradient ascent on its activation (Salient ImageNet).

x_{t+1} = clamp(x_t + step * g / ||g||_2, 0, 1) with g = d a_j(x_t) / d x_t, a_j = ``model.features(x)[:, j]``
(the pooled activation). Reference: 100 steps, step 10, for 3 x 224 x 224 images. L2 step sizes
scale with the square root of the input dimension, so the default step is
``10 * sqrt(C H W / (3 * 224 * 224))`` (1.25 for 3 x 28 x 28). Deterministic: the only randomness is the
optional initial noise, drawn from a generator seeded with ``seed``.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from core.device import resolve_device
from core.errors import SpurAuditError
from core.progress import ProgressFn, null_progress

__all__ = ["AttackConfig", "default_step_size", "feature_attack", "frozen_on", "ascend_features"]

REFERENCE_DIM = 3 * 224 * 224


@dataclass
class AttackConfig:
    """steps: ascent steps; step_size: L2 step (None = scaled reference); init_noise: std of seeded
    Gaussian noise added to the start image (0 = start from the image itself); seed."""

    steps: int = 100
    step_size: float | None = None
    init_noise: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 0:
            raise SpurAuditError("steps must be >= 0")
        if self.step_size is not None and self.step_size <= 0:
            raise SpurAuditError("step_size must be > 0 (or None for the scaled reference step)")
        if self.init_noise < 0:
            raise SpurAuditError("init_noise must be >= 0")


def default_step_size(shape: tuple[int, ...]) -> float:
    """10 * sqrt(numel / (3*224*224)) for one image of ``shape`` (C, H, W)."""
    numel = math.prod(shape[-3:])
    return 10.0 * math.sqrt(numel / REFERENCE_DIM)


@contextmanager
def frozen_on(model: torch.nn.Module, device: torch.device) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode on ``device`` with every parameter's ``requires_grad`` off (so an attack
    accumulates no parameter gradients); training mode and the flags are restored on exit."""
    was_training = model.training
    model.eval()
    model.to(device)
    req = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, r in zip(model.parameters(), req):
            p.requires_grad_(r)
        model.train(was_training)


def ascend_features(model: torch.nn.Module, x: torch.Tensor, features: torch.Tensor, *, steps: int, step: float,
                    progress: ProgressFn | None = None) -> torch.Tensor:
    """``steps`` normalised ascent steps (module docstring), each image on its own feature.

    x: (B, 3, H, W) float in [0, 1] on the model's device; features: (B,) long indices (one per image).
    Returns the attacked (B, 3, H, W), still on the device. Call inside `frozen_on`."""
    js = features.view(-1, 1)
    for t in range(steps):
        x.requires_grad_(True)
        act = model.features(x).gather(1, js).sum()                         # (B, 1) summed -> scalar
        (grad,) = torch.autograd.grad(act, x)
        with torch.no_grad():
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)   # (B, 1, 1, 1)
            x = (x + step * grad / norm).clamp_(0, 1)
        if progress is not None and (t % 10 == 0 or t == steps - 1):
            progress((t + 1) / steps, f"attack step {t + 1}/{steps}")
    return x


def feature_attack(model: torch.nn.Module, images: torch.Tensor, feature: int, *,
                   config: AttackConfig | None = None, device: str | torch.device = "auto",
                   progress: ProgressFn | None = None) -> torch.Tensor:
    """Gradient ascent on feature ``feature``'s activation from each image.

    images: (B, 3, H, W) or (3, H, W) float in [0, 1]. Returns the same shape, float32 in [0, 1], on
    the CPU. The model's parameters are not changed (no parameter gradients are accumulated).
    """
    config = config or AttackConfig()
    config.validate()
    progress = progress or null_progress
    single = images.dim() == 3
    x0 = images.unsqueeze(0) if single else images
    if x0.dim() != 4:
        raise SpurAuditError(f"images must be (B, 3, H, W) in [0, 1]; got shape {tuple(images.shape)}")
    dev = resolve_device(device)
    step = config.step_size if config.step_size is not None else default_step_size(tuple(x0.shape[1:]))
    with frozen_on(model, dev):
        x = x0.detach().to(dev, torch.float32).clone()
        if config.init_noise > 0:
            gen = torch.Generator(device="cpu").manual_seed(int(config.seed))
            noise = torch.randn(x.shape, generator=gen) * config.init_noise
            x = (x + noise.to(dev)).clamp_(0, 1)
        with torch.no_grad():
            d = model.features(x[:1]).shape[1]
        if not 0 <= int(feature) < d:
            raise SpurAuditError(f"feature {feature} out of range [0, {d})")
        x = ascend_features(model, x, torch.full((len(x),), int(feature), dtype=torch.long, device=dev),
                            steps=config.steps, step=step, progress=progress)
    out = x.detach().cpu()
    return out[0] if single else out
