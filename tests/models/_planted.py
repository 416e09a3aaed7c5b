"""The planted-cue data of the training tests: class k images are noise with a bright patch at position
k (plus noise), so a small CNN learns it within a few epochs."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from core.models import build_model

WIDTHS = [8, 16, 16]


def planted(n: int, *, k: int = 3, seed: int = 0, size: int = 16) -> TensorDataset:
    """(n, 3, size, size) in [0, 1]; class c has a bright 4x4 patch in corner c of the green channel."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    x = torch.rand(n, 3, size, size, generator=g) * 0.3
    corners = [(0, 0), (0, size - 4), (size - 4, 0), (size - 4, size - 4)]
    for c in range(k):
        r, col = corners[c]
        x[y == c, 1, r:r + 4, col:col + 4] = 1.0
    return TensorDataset(x, y)


class ItemDataset(Dataset):
    """A non-tensor dataset yielding (x, y, index), to exercise the DataLoader path."""

    def __init__(self, base: TensorDataset):
        self.x, self.y = base.tensors

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i]), i


def small(k: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=k, widths=WIDTHS)
