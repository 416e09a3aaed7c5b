"""Adversarial examples: the one L2 projected-gradient (L2-PGD) attack of the engine.

`l2_pgd` ascends any scalar objective of the perturbed images (adversarial training of `train_model`
uses the classifier's cross-entropy through `l2_pgd_attack`; the demo encoder its joint digit +
texture loss). Images live in [0, 1] pixel space; the attack starts at ``x`` (no random start).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def l2_pgd(objective: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, eps: float, steps: int,
           step_size: float | None = None) -> torch.Tensor:
    """L2 projected gradient ascent on ``objective(x_adv)`` (a scalar), in [0, 1] pixel space.

    x: (B, C, H, W) float in [0, 1]. Each of the ``steps`` steps moves ``step_size`` (default
    ``2.5 * eps / steps``) along the per-image L2-normalised gradient, projects the perturbation onto
    the L2 ball of radius ``eps`` and clamps the image to [0, 1]. ``eps <= 0`` or ``steps <= 0``
    returns ``x``. Returns the detached adversarial batch, same shape as ``x``. The model's mode
    (train/eval) is the caller's choice; this function does not change it.
    """
    if eps <= 0 or int(steps) <= 0:
        return x.detach()
    step = float(step_size) if step_size is not None else 2.5 * float(eps) / int(steps)
    x = x.detach()
    delta = torch.zeros_like(x, requires_grad=True)
    for _ in range(int(steps)):
        (grad,) = torch.autograd.grad(objective(x + delta), delta)
        gnorm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        new = delta.detach() + step * grad / gnorm
        dnorm = new.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        new = new * torch.clamp(float(eps) / dnorm, max=1.0)
        new = (x + new).clamp_(0.0, 1.0) - x
        delta = new.requires_grad_(True)
    return (x + delta).detach()


def l2_pgd_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int,
                  step_size: float | None = None) -> torch.Tensor:
    """`l2_pgd` on the cross-entropy of ``model(x_adv)`` (B, K) against ``y`` (B,) int64.

    The model's mode is left as is (train mode during adversarial training, like the robustness library).
    """
    return l2_pgd(lambda adv: F.cross_entropy(model(adv), y), x, eps=eps, steps=steps, step_size=step_size)


__all__ = ["l2_pgd", "l2_pgd_attack"]
