"""Neural activation maps, binary/soft masks and overlays (`core.features.maps`)."""
import numpy as np
import pytest
import torch
from torch import nn

from core.errors import SpurAuditError
from core.features.maps import activation_maps, binarize, overlay, soft_mask, to_pil

from tests.audit.audit_images import red_square_images
from tests.audit.conftest import ChannelModel   # features = the R and G channels (maps checkable by hand)

torch.set_num_threads(1)


def test_nam_is_normalised_channel_resized():
    channel_model = ChannelModel().eval()
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
