"""The L2-PGD attack (`core.models.attacks`); the demo encoder's joint-loss use of it is tested in
test_demo_encoder.py, adversarial training in test_train.py."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.models import TrainConfig, l2_pgd_attack, train_model

from tests.models._planted import planted, small

torch.set_num_threads(1)


def test_l2_pgd_attack_stays_in_ball_and_raises_loss():
    model = train_model(small(), planted(96), config=TrainConfig(epochs=2, batch_size=32, lr=3e-3),
                        device="cpu").model
    x, y = planted(32, seed=5).tensors
    eps = 0.5
    adv = l2_pgd_attack(model, x, y, eps=eps, steps=5)
    delta = (adv - x).flatten(1).norm(dim=1)
    assert bool((delta <= eps + 1e-4).all()) and float(delta.max()) > 0.25 * eps
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)
