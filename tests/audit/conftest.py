"""Shared stand-ins for the audit tests: a hand-built 2-feature model whose features are the red
and green channels, so activation maps, crops and corruptions can be checked by hand."""
import numpy as np
import pytest
import torch
from torch import nn

torch.set_num_threads(1)


class ChannelModel(nn.Module):
    """feature_map(x) = (R, G) channels (B, 2, H, W); features = their means; logits = [R, G] means
    (class 0 when the image is redder than green). Same hooks as AuditModel."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.head = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(2))
        self.feature_dim, self.num_classes = 2, 2

    def feature_map(self, x):
        return x[:, :2] * self.scale                      # (B, 2, H, W)

    def features(self, x):
        return self.feature_map(x).mean(dim=(2, 3))       # (B, 2)

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture
def channel_model():
    return ChannelModel().eval()


def red_square_images(n=4, size=12, side=3, background=(0.0, 0.0, 0.0), seed=0, color=(1.0, 0.0, 0.0)):
    """n images (n, 3, size, size): black (or given) background with a pure red (or ``color``) square at
    a seeded position; returns images and the boolean object masks (n, size, size)."""
    rng = np.random.default_rng(seed)
    imgs = torch.zeros(n, 3, size, size)
    imgs += torch.tensor(background, dtype=torch.float32).view(1, 3, 1, 1)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        t, l_ = rng.integers(0, size - side + 1, size=2)
        imgs[i, :, t:t + side, l_:l_ + side] = torch.tensor(color).view(3, 1, 1)
        masks[i, t:t + side, l_:l_ + side] = True
    return imgs, masks
