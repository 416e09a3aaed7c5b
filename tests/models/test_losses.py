"""Losses (`core.models.losses`): the generalized cross-entropy of LfF / DCWP."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.errors import SpurAuditError
from core.models import gce_loss


def test_gce_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], requires_grad=True)
    targets = torch.tensor([0, 2])
    q = 0.7
    z = logits.detach().numpy().astype(np.float64)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    p_y = p[[0, 1], [0, 2]]
    expected = q * p_y ** q * (-np.log(p_y))  # LfF/DCWP: q * p_y^q (detached) * CE
    per_sample = gce_loss(logits, targets, q=q, reduction="none")
    np.testing.assert_allclose(per_sample.detach().numpy(), expected, rtol=1e-5)
    assert float(gce_loss(logits, targets, q=q).detach()) == pytest.approx(expected.mean(), rel=1e-5)
    assert float(gce_loss(logits, targets, q=q, reduction="sum").detach()) == pytest.approx(expected.sum(), rel=1e-5)
    # its gradient equals the gradient of 1 - p_y^q (q times the GCE loss (1 - p_y^q)/q)
    (g1,) = torch.autograd.grad(gce_loss(logits, targets, q=q, reduction="sum"), logits)
    probs = torch.softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
    (g2,) = torch.autograd.grad((1 - probs ** q).sum(), logits)
    torch.testing.assert_close(g1, g2)
    # more confident samples get a larger weight than under CE
    ce = F.cross_entropy(logits, targets, reduction="none").detach()
    ratio = (per_sample.detach() / ce).numpy()
    assert ratio[0] > ratio[1]
    with pytest.raises(SpurAuditError):
        gce_loss(logits, targets, q=0.0)
