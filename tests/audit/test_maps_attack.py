import numpy as np
import pytest
import torch
from torch import nn

from core.features.attack import AttackConfig, default_step_size, feature_attack
from core.features.maps import activation_maps, binarize, overlay, soft_mask, to_pil
from core.errors import SpurAuditError

from tests.audit.audit_images import red_square_images


def test_nam_is_normalised_channel_resized(channel_model):
    imgs, masks = red_square_images(n=3, size=12)
    nam = activation_maps(channel_model, imgs, [0, 1], device="cpu")
    assert nam.shape == (3, 2, 12, 12) and nam.dtype == np.float32
    assert nam.min() >= 0 and nam.max() <= 1
    np.testing.assert_allclose(nam[:, 0], masks.astype(np.float32), atol=1e-6)   # red channel = the square
    assert (nam[:, 1] == 0).all()                                                # constant map -> 0


def test_nam_upsampled_bilinear():
    class Pooled(nn.Module):
        def feature_map(self, x):
            return torch.nn.functional.avg_pool2d(x[:, :1], 4)                  # (B, 1, H/4, W/4)

    x = torch.zeros(1, 3, 16, 16)
    x[0, 0, :4, :4] = 1.0                                                       # top-left cell fires
    nam = activation_maps(Pooled(), x, 0, device="cpu")[0, 0]
    assert nam.shape == (16, 16)
    assert nam[0, 0] == pytest.approx(1.0) and nam[15, 15] == pytest.approx(0.0)
    assert 0 < nam[4, 4] < 1                                                    # interpolated, not nearest


def test_binarize_overlay_softmask():
    rng = np.random.default_rng(0)
    nam = rng.random((2, 20, 20)).astype(np.float32)
    m = binarize(nam, quantile=0.8)
    assert m.dtype == bool and abs(m.mean() - 0.2) < 0.02
    assert not binarize(np.zeros((5, 5)), quantile=0.5).any()
    img = torch.rand(3, 20, 20)
    ov = overlay(img, nam[0], alpha=0.4)
    assert ov.shape == (20, 20, 3) and ov.dtype == np.uint8
    np.testing.assert_array_equal(overlay(img, nam[0], alpha=0.0), (img.permute(1, 2, 0).numpy() * 255).round())
    sm = soft_mask(np.stack([nam, nam], axis=1))
    assert sm.shape == (2, 20, 20) and sm.max() == pytest.approx(1.0) and sm.min() == pytest.approx(0.0)
    assert to_pil(img, size=40).size == (40, 40)
    with pytest.raises(SpurAuditError):
        binarize(nam, quantile=1.5)


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
