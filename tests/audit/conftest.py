"""Shared stand-ins for the audit tests: a hand-built 2-feature model whose features are the red
and green channels, so activation maps, crops and corruptions can be checked by hand."""
import numpy as np
import pytest
import torch
from torch import nn

from tests.audit.audit_images import red_square_images  # noqa: F401  (re-exported for tests)

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
