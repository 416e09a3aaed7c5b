"""Losses for training and bias mining.

`gce_loss` is the generalized cross-entropy of Zhang & Sabuncu (2018) in the gradient-equivalent
form used by LfF and DCWP (METHODS §2) to train a *bias-capturing* model: easy (bias-aligned)
samples, on which the model is already confident, get larger weight, so the model latches onto
the shortcut and misclassifies the bias-conflicting samples (which are then mined).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.errors import SpurAuditError, check_choice


def gce_loss(logits: torch.Tensor, targets: torch.Tensor, q: float = 0.7, reduction: str = "mean") -> torch.Tensor:
    """Generalized cross-entropy, per sample ``q * stopgrad(p_y**q) * CE`` (LfF / DCWP form).

    The GCE loss of Zhang & Sabuncu is ``(1 - p_y**q) / q`` with gradient ``-p_y**q * d log p_y``.
    LfF and DCWP (METHODS §2) implement it as the cross-entropy ``-log p_y`` weighted by the
    *detached* ``p_y**q`` and scaled by ``q``::

        loss_i = q * stopgrad(p_{i, y_i} ** q) * (-log p_{i, y_i}),   p = softmax(logits, dim=1)

    so its gradient equals that of ``1 - p_y**q`` (q times the GCE gradient); its value is not the
    GCE value. Confident (easy, bias-aligned) samples get more weight than in CE.

    Args:
        logits: (B, K) float, unnormalised scores.
        targets: (B,) int64 class indices in [0, K).
        q: the GCE exponent in (0, 1]; 0.7 by default (LfF/DCWP).
        reduction: ``"mean"`` (scalar), ``"sum"`` (scalar) or ``"none"`` ((B,) per-sample losses).

    Returns:
        The reduced loss (0-dim tensor) or the (B,) per-sample losses. Non-negative.
    """
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    if logits.dim() != 2:
        raise SpurAuditError(f"gce_loss expects logits of shape (B, K), got {tuple(logits.shape)}")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise SpurAuditError(f"gce_loss expects targets of shape ({logits.shape[0]},), got {tuple(targets.shape)}")
    if not 0.0 < float(q) <= 1.0:
        raise SpurAuditError(f"gce_loss q must be in (0, 1], got {q}; LfF/DCWP use 0.7")
    ce = F.cross_entropy(logits, targets, reduction="none")  # (B,) = -log p_y
    p_y = torch.exp(-ce.detach())  # (B,) softmax probability of the target, no gradient
    loss = float(q) * p_y.pow(float(q)) * ce  # (B,)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
