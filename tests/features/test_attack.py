"""Feature attack visualisation (`core.features.attack`)."""
import pytest
import torch
from torch import nn

from core.errors import SpurAuditError
from core.features.attack import AttackConfig, default_step_size, feature_attack

torch.set_num_threads(1)


def test_feature_attack_increases_activation_and_is_deterministic():
    torch.manual_seed(0)

    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def feature_map(self, x):
            return torch.relu(self.conv(x))

        def features(self, x):
            return self.feature_map(x).mean((2, 3))

    m = Conv()
    x = torch.rand(2, 3, 16, 16) * 0.5
    cfg = AttackConfig(steps=20, seed=1, init_noise=0.05)
    a = feature_attack(m, x, 2, config=cfg, device="cpu")
    b = feature_attack(m, x, 2, config=cfg, device="cpu")
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1
    with torch.no_grad():
        assert (m.features(a)[:, 2] > m.features(x)[:, 2]).all()
    c = feature_attack(m, x, 2, config=AttackConfig(steps=20, seed=2, init_noise=0.05), device="cpu")
    assert not torch.equal(a, c)
    assert all(p.grad is None for p in m.parameters())
    assert default_step_size((3, 224, 224)) == pytest.approx(10.0)
    assert default_step_size((3, 28, 28)) == pytest.approx(1.25)
    with pytest.raises(SpurAuditError, match="out of range"):
        feature_attack(m, x[0], 9, config=AttackConfig(steps=1), device="cpu")
