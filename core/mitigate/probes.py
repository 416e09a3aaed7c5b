"""Probes of how much a representation tells about the bias: FFW's mutual-information estimator and
privacy head, a fresh standardized probe's bias accuracy, and the bias's share of each feature's variance.

* `empirical_mutual_information`: the differentiable batch MI between bias labels and a head's
  predicted distribution (METHODS.md §3), normalised by log K.
* `PrivacyHead` / `train_privacy_head`: FFW's P, a linear bias classifier on the bottleneck, blind to a
  global rescaling of the features, trained with CE on bias labels until a plateau.
* `privacy_bias_accuracy`: held-out accuracy of a *fresh* standardized linear head
  (`core.models.linear.fit_standardized_linear`) — the bias leakage FFW reports and selects on.
* `bias_variance_share`: η² per feature (the share of its variance the bias value explains), the rank
  of FFW's "bias-rank" variant (`core.mitigate.ffw_rank`).
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import SpurAuditError
from core.models.linear import fit_linear, fit_standardized_linear
from core.models.optim import make_optimizer


def empirical_mutual_information(bias: torch.Tensor, probs: torch.Tensor, *, num_values: int | None = None,
                                 eps: float = 1e-8, normalize: bool = True) -> torch.Tensor:
    """Empirical MI between bias labels and a head's predicted distribution over a batch.

    ``joint = onehot(b)ᵀ p / N`` (K × K', clamped to ``eps``), ``MI = Σ joint · log(joint /
    (row · col))`` with the row (true bias) and column (predicted) marginals of the joint;
    divided by ``log K`` when ``normalize`` (so identical variables with K uniform values give 1 and
    independent ones give ≈ 0). Differentiable in ``probs``.

    Args:
        bias: (N,) int64 bias labels in ``[0, K)``.
        probs: (N, K') float, rows summing to 1 (e.g. ``softmax(P(z))``).
        num_values: K (default: ``probs.shape[1]``).
    Returns: scalar tensor (≥ 0 up to the clamp's rounding).
    """
    if bias.dim() != 1 or probs.dim() != 2 or probs.shape[0] != bias.shape[0]:
        raise SpurAuditError(f"MI needs bias (N,) and probs (N, K); got {tuple(bias.shape)} and {tuple(probs.shape)}")
    k = int(num_values or probs.shape[1])
    if k < 2:
        raise SpurAuditError("MI needs at least two bias values")
    if bias.numel() and (int(bias.min()) < 0 or int(bias.max()) >= k):
        raise SpurAuditError(f"bias labels must lie in [0, {k}) for the MI estimate (unknown = -1 rows must be dropped)")
    onehot = F.one_hot(bias, k).to(probs.dtype)                      # (N, K)
    joint = (onehot.t() @ probs / bias.shape[0]).clamp_min(eps)       # (K, K')
    row = joint.sum(dim=1, keepdim=True)                              # (K, 1)
    col = joint.sum(dim=0, keepdim=True)                              # (1, K')
    mi = (joint * torch.log(joint / (row * col))).sum()
    return mi / math.log(k) if normalize else mi


class PrivacyHead(nn.Module):
    """P: a linear bias classifier on normalised bottleneck features, (B, D) -> (B, K_b).

    Input normalisation (no parameters, so P's parameter count equals the task head's when K_b = K):
    ``u = z / rms(z)`` with ``rms`` the root-mean-square of the whole batch (one scalar), then a per-feature
    z-score of ``u`` with *fixed* statistics (buffers ``mean``/``std``, re-fitted by
    `fit_standardization` every time P is (re)trained). The scalar makes P blind to a global rescaling
    of the bottleneck, so the gates cannot lower the MI by shrinking every feature (the reference run's
    features shrank ~40× after pruning); the per-feature statistics are fixed (not per batch) so that
    shrinking *one* neuron relative to the others still changes P's output and the MI stays
    differentiable in the gates (a per-batch, per-feature z-score would make structured gates
    invisible to P). Call it on batches of ≥ 2 rows.
    """

    def __init__(self, dim: int, num_values: int) -> None:
        super().__init__()
        self.linear = nn.Linear(int(dim), int(num_values))
        self.register_buffer("mean", torch.zeros(1, int(dim)))
        self.register_buffer("std", torch.ones(1, int(dim)))

    @staticmethod
    def _rescale(z: torch.Tensor) -> torch.Tensor:
        return z / (z.pow(2).mean().sqrt() + 1e-12)          # (B, D) / scalar

    @torch.no_grad()
    def fit_standardization(self, z: torch.Tensor) -> None:
        """Set the z-score statistics from features (N, D)."""
        u = self._rescale(z)
        self.mean.copy_(u.mean(dim=0, keepdim=True))
        self.std.copy_(u.std(dim=0, keepdim=True, unbiased=False) + 1e-6)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear((self._rescale(z) - self.mean) / self.std)


def train_privacy_head(head: PrivacyHead, z_train: torch.Tensor, b_train: torch.Tensor,
                       z_val: torch.Tensor, b_val: torch.Tensor, *, lr: float = 0.1, momentum: float = 0.9,
                       max_epochs: int = 100, patience: int = 5, batch_size: int = 128,
                       generator: torch.Generator | None = None) -> dict[str, float]:
    """Train P with CE on bias labels (features detached) until the val loss plateaus.

    Args: features (N, D) float and bias (N,) int64 on the head's device. The standardisation is
    re-fitted on ``z_train`` first; the linear weights continue from their current values (a refresh).
    Keeps the epoch with the lowest val CE. Returns ``{"epochs", "val_loss", "val_accuracy"}``.
    """
    head.fit_standardization(z_train.detach())
    for p in head.parameters():
        p.requires_grad_(True)
    opt = make_optimizer("sgd", head.parameters(), lr=lr, momentum=momentum)
    z_train, z_val = z_train.detach(), z_val.detach()
    best = {"loss": float("inf"), "state": copy.deepcopy(head.state_dict()), "acc": 0.0, "stale": 0}

    def after_epoch(epoch: int, loss: float) -> bool:
        with torch.no_grad():
            logits = head(z_val)
            val_loss = float(F.cross_entropy(logits, b_val))
            val_acc = float((logits.argmax(1) == b_val).float().mean())
        if val_loss < best["loss"] - 1e-4:
            best.update(loss=val_loss, state=copy.deepcopy(head.state_dict()), acc=val_acc, stale=0)
            return False
        best["stale"] += 1
        return best["stale"] >= patience

    epochs = fit_linear(head, z_train, b_train, optimizer=opt, epochs=max_epochs, batch_size=batch_size,
                        generator=generator, min_batch=2, on_epoch=after_epoch)
    head.load_state_dict(best["state"])
    for p in head.parameters():
        p.requires_grad_(False)
    return {"epochs": epochs, "val_loss": best["loss"], "val_accuracy": best["acc"]}


def privacy_bias_accuracy(z_fit: torch.Tensor, b_fit: torch.Tensor, z_eval: torch.Tensor, b_eval: torch.Tensor,
                          *, num_values: int, steps: int = 300, lr: float = 0.05) -> float:
    """Accuracy on (z_eval, b_eval) of a *fresh* standardized privacy head fitted to convergence on
    (z_fit, b_fit) (`core.models.linear.fit_standardized_linear`; the fit set's statistics standardise both sets).

    Inputs: (N, D) float, (N,) int64.
    """
    head = fit_standardized_linear(z_fit, b_fit, num_values=num_values, steps=steps, lr=lr)
    with torch.no_grad():
        return float((head(z_eval.detach().float()).argmax(1) == b_eval).float().mean())


def bias_variance_share(z: torch.Tensor, bias: torch.Tensor, *, num_values: int) -> torch.Tensor:
    """η² per feature: the share of each feature's variance explained by the bias value (between-group
    over total variance), (D,) float in [0, 1]; 0 for a constant feature. ``z`` (N, D), ``bias`` (N,)."""
    z = z.detach().float()
    total = z.var(0, unbiased=False)                           # (D,)
    mean = z.mean(0)
    between = torch.zeros_like(total)
    for v in range(int(num_values)):
        rows = bias == v
        if bool(rows.any()):
            between += rows.float().mean() * (z[rows].mean(0) - mean) ** 2
    return torch.where(total > 1e-12, between / total.clamp_min(1e-12), torch.zeros_like(total)).clamp(0, 1)


__all__ = ["empirical_mutual_information", "PrivacyHead", "train_privacy_head", "privacy_bias_accuracy",
           "bias_variance_share"]
