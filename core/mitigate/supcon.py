"""DCWP's debiased supervised-contrastive alignment loss (METHODS §2, seed 000 eq. 15).

On L2-normalised penultimate features ``z_i = f_i / ||f_i||`` with similarities
``s_ij = z_i · z_j / τ`` (τ = 0.07), for one batch with labels ``y`` and a bool flag ``c_i`` = "sample
i is a mined bias-conflicting sample":

* Term 1 (align conflicting with their class): positives are the same-class pairs that involve a
  mined conflicting sample, ``P = {(i, p): i ≠ p, y_i = y_p, c_i or c_p}``. Each anchor i with
  positives contributes the supervised-contrastive log-likelihood averaged over its positives::

      ℓ_i = −(1/|P(i)|) Σ_{p ∈ P(i)} [ s_ip − log Σ_{a ≠ i} exp(s_ia) ]

  and term 1 is the mean of ℓ_i over anchors that have at least one positive (0 when none).
* Term 2 (keep bias-aligned samples from collapsing): for every bias-aligned anchor i (c_i false)
  with at least one other aligned sample in the batch, the log-mean-exp of its similarity to the other
  aligned samples, regardless of class::

      u_i = log( (1/|A(i)|) Σ_{a ∈ A(i)} exp(s_ia) ),   A(i) = {a ≠ i : c_a false}

  and term 2 is the mean of u_i (0 when fewer than two aligned samples). Minimising it spreads the
  aligned samples over the sphere (they are the negatives of the contrastive denominator), so the
  tight bias-aligned clusters of a biased model do not absorb the loss.

The loss is ``term1 + term2`` (a scalar); DCWP multiplies it by λ_align = 0.05.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.errors import SpurAuditError


def debiased_supcon_loss(features: torch.Tensor, labels: torch.Tensor, conflicting: torch.Tensor, *,
                         temperature: float = 0.07, return_terms: bool = False, aligned_term: bool = True):
    """DCWP alignment loss on one batch (see the module docstring for the formula).

    Args:
        features: (B, D) float penultimate features (normalised inside; any scale).
        labels: (B,) int64 classes.
        conflicting: (B,) bool, True for mined bias-conflicting samples.
        temperature: τ > 0.
        return_terms: also return ``(term1, term2)`` as detached floats.

    Returns a 0-dim tensor (or ``(loss, (term1, term2))``).
    """
    if features.dim() != 2:
        raise SpurAuditError(f"features must be (B, D), got {tuple(features.shape)}")
    b = features.shape[0]
    if labels.shape != (b,) or conflicting.shape != (b,):
        raise SpurAuditError(f"labels and conflicting flags must have shape ({b},), got "
                             f"{tuple(labels.shape)} and {tuple(conflicting.shape)}")
    if temperature <= 0:
        raise SpurAuditError(f"temperature must be > 0, got {temperature}")
    conflicting = conflicting.to(device=features.device, dtype=torch.bool)
    labels = labels.to(features.device)
    z = F.normalize(features.float(), dim=1)                     # (B, D) on the unit sphere
    sim = z @ z.t() / float(temperature)                          # (B, B)
    eye = torch.eye(b, dtype=torch.bool, device=features.device)
    neg_inf = torch.finfo(sim.dtype).min
    sim_off = sim.masked_fill(eye, neg_inf)                       # exclude a == i
    zero = sim.new_zeros(())

    # term 1: same-class pairs involving a conflicting sample
    same = (labels[:, None] == labels[None, :]) & ~eye            # (B, B)
    pos = same & (conflicting[:, None] | conflicting[None, :])    # (B, B)
    n_pos = pos.sum(1)                                            # (B,)
    if b > 1 and bool((n_pos > 0).any()):
        log_prob = sim - torch.logsumexp(sim_off, dim=1, keepdim=True)          # (B, B)
        per_anchor = -(log_prob * pos).sum(1) / n_pos.clamp(min=1)              # (B,)
        term1 = per_anchor[n_pos > 0].mean()
    else:
        term1 = zero

    # term 2: log-mean-exp similarity among bias-aligned samples
    aligned = ~conflicting
    pair_a = aligned[:, None] & aligned[None, :] & ~eye            # (B, B)
    n_a = pair_a.sum(1)                                            # (B,)
    anchors = aligned & (n_a > 0)
    if aligned_term and bool(anchors.any()):
        masked = sim.masked_fill(~pair_a, neg_inf)
        u = torch.logsumexp(masked, dim=1) - torch.log(n_a.clamp(min=1).to(sim.dtype))  # (B,)
        term2 = u[anchors].mean()
    else:
        term2 = zero
    loss = term1 + term2
    if return_terms:
        return loss, (float(term1.detach()), float(term2.detach()))
    return loss
