"""Soft (Salient ImageNet) masks in `core.audit.sensitivity`: pixels with mask 0 untouched, noise scaled by the
mask, and a planted model whose decision lives in the left half: corrupting the left-half mask drops its
accuracy, the right-half mask does not."""
from __future__ import annotations

import numpy as np
import torch

from core.audit.sensitivity import SensitivityConfig, corrupt, measure_sensitivity, random_region


def test_soft_masks_leave_zero_pixels_untouched_and_scale_the_noise():
    gen = torch.Generator().manual_seed(0)
    images = 0.25 + 0.5 * torch.rand(4, 3, 32, 32, generator=gen)
    masks = np.zeros((4, 32, 32), np.float32)
    masks[:, :, :16] = 0.5
    cfg = SensitivityConfig(noise_sigma=0.05)
    out = corrupt(images, masks, "noise", config=cfg)
    assert torch.equal(out[..., 16:], images[..., 16:])
    dev = (out[..., :16] - images[..., :16]).std().item()
    assert 0.8 * 0.025 < dev < 1.2 * 0.025                              # sigma x mask value, no clamping here
    gray = corrupt(images, masks, "gray", config=cfg)
    full = corrupt(images, masks > 0, "gray", config=cfg)               # the bool path replaces
    assert torch.allclose(gray[..., :16], (images[..., :16] + full[..., :16]) / 2, atol=1e-6)
    assert torch.equal(gray[..., 16:], images[..., 16:])
    ctrl = random_region(masks, seed=0)
    assert ctrl.dtype == np.float32 and np.isclose(ctrl.sum(), masks.sum())


class LeftHalfColour(torch.nn.Module):
    """Class 0 when the left half is clearly redder than green (mean R − G > 0.1), else class 1: the cue
    lives in the left half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x[:, :, :, : x.shape[-1] // 2]
        a = (left[:, 0] - left[:, 1]).mean(dim=(1, 2))                    # (B,)
        return torch.stack([a - 0.1, 0.1 - a], dim=1)


def test_planted_left_half_cue_shows_only_under_the_left_mask():
    rng = np.random.default_rng(0)
    n = 40
    labels = np.arange(n) % 2
    img = rng.uniform(0, 1, (n, 3, 32, 32)).astype(np.float32)
    img[labels == 0, 0, :, :16], img[labels == 0, 1, :, :16] = 0.9, 0.1        # red left half: class 0
    img[labels == 1, 0, :, :16], img[labels == 1, 1, :, :16] = 0.1, 0.9        # green left half: class 1
    images = torch.from_numpy(img)
    soft_left = np.zeros((n, 32, 32), np.float32)
    soft_left[:, :, :16] = 1.0
    soft_left[:, :, 14:16] = 0.6                                            # soft edge
    soft_right = soft_left[:, :, ::-1].copy()
    cfg = SensitivityConfig(corruptions=("gray",))
    left = measure_sensitivity(LeftHalfColour(), images, labels, soft_left, mask_source="salient_spurious",
                               config=cfg, device="cpu").summary().iloc[0]
    right = measure_sensitivity(LeftHalfColour(), images, labels, soft_right, mask_source="salient_core",
                                config=cfg, device="cpu").summary().iloc[0]
    assert left.acc_clean == 1.0 and right.acc_clean == 1.0
    assert left.drop_masked >= 0.45                        # gray left half: class 0 images fall to class 1
    assert right.drop_masked == 0.0
    assert 0.45 < left.mask_area < 0.5                     # soft area = the mean mask value
