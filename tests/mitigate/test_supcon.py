"""DCWP's debiased supervised-contrastive alignment loss (core/mitigate/supcon.py)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.errors import SpurAuditError
from core.mitigate.supcon import debiased_supcon_loss


def test_hand_checked_batch():
    # z0=(1,0) class 0 aligned; z1=(0,1) class 0 mined-conflicting; z2=(1,0) class 1 aligned; tau = 1
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])   # scale must not matter (L2-normalised)
    y = torch.tensor([0, 0, 1])
    c = torch.tensor([False, True, False])
    loss, (t1, t2) = debiased_supcon_loss(f, y, c, temperature=1.0, return_terms=True)
    # term 1: anchor 0 -> positive 1: -(0 - log(e^0 + e^1)); anchor 1 -> positive 0: -(0 - log(e^0 + e^0))
    expected_t1 = (math.log(1 + math.e) + math.log(2.0)) / 2
    # term 2: aligned {0, 2}: each anchor's log-mean-exp similarity to the other = 1
    assert t1 == pytest.approx(expected_t1, abs=1e-6)
    assert t2 == pytest.approx(1.0, abs=1e-6)
    assert float(loss) == pytest.approx(expected_t1 + 1.0, abs=1e-6)


def _reference(f, y, c, tau):
    z = F.normalize(f, dim=1)
    s = (z @ z.t() / tau).tolist()
    n = len(y)
    per_anchor, u = [], []
    for i in range(n):
        pos = [p for p in range(n) if p != i and y[p] == y[i] and (c[i] or c[p])]
        denom = math.log(sum(math.exp(s[i][a]) for a in range(n) if a != i))
        if pos:
            per_anchor.append(-sum(s[i][p] - denom for p in pos) / len(pos))
        others = [a for a in range(n) if a != i and not c[a]]
        if not c[i] and others:
            u.append(math.log(sum(math.exp(s[i][a]) for a in others) / len(others)))
    t1 = sum(per_anchor) / len(per_anchor) if per_anchor else 0.0
    t2 = sum(u) / len(u) if u else 0.0
    return t1 + t2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop_reference_at_paper_temperature(seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(9, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (9,), generator=g)
    c = torch.rand(9, generator=g) < 0.3
    c[0] = True
    got = float(debiased_supcon_loss(f, y, c, temperature=0.07))
    assert got == pytest.approx(_reference(f, y.tolist(), c.tolist(), 0.07), rel=1e-5)


def test_no_conflicting_sample_leaves_only_the_aligned_term():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss, (t1, t2) = debiased_supcon_loss(f, torch.tensor([0, 0]), torch.tensor([False, False]), temperature=1.0,
                                          return_terms=True)
    assert t1 == 0.0 and t2 == pytest.approx(0.0)      # one other aligned sample at similarity 0
    assert float(loss) == pytest.approx(0.0)


def test_gradient_pulls_conflicting_sample_towards_its_class():
    f = torch.tensor([[1.0, 0.0], [0.2, 1.0], [-1.0, 0.1], [-0.9, -0.3]], requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    c = torch.tensor([False, True, False, False])
    before = F.cosine_similarity(f[0:1], f[1:2]).item()
    loss = debiased_supcon_loss(f, y, c)
    loss.backward()
    with torch.no_grad():
        g = f - 0.01 * f.grad
    assert F.cosine_similarity(g[0:1], g[1:2]).item() > before


def test_rejects_bad_shapes():
    with pytest.raises(SpurAuditError):
        debiased_supcon_loss(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(SpurAuditError):
        debiased_supcon_loss(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.bool),
                             temperature=0.0)
