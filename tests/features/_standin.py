"""A tiny stand-in for an AuditModel (features/forward_head) and seeded data, shared by the feature tests
and the torchrun worker script."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset


class TinyModel(nn.Module):
    """conv -> ReLU -> global average pool (B, 6) -> Linear head (B, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(6, 3)
        self.calls = 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.encoder(x)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.features(x))


def make_model(seed: int = 0) -> TinyModel:
    torch.manual_seed(seed)
    return TinyModel()


def make_data(n: int = 103, seed: int = 1) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return TensorDataset(x, y)


class TripleDataset(Dataset):
    """Yields (x, y, index) like Manifest.to_dataset() (goes through the DataLoader path)."""

    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x, int(y), i


def array_bytes(folder) -> dict[str, bytes]:
    """The bytes of the three arrays of a feature folder (for byte-identity checks)."""
    from pathlib import Path

    return {f: (Path(folder) / f).read_bytes() for f in ("features.npy", "logits.npy", "labels.npy")}


def make_toy_workspace(root):
    """A workspace with a real 30-image manifest dataset "toy" (train 20 / val 10, 16x16 PNGs with a planted
    colour per class, sample ids descending with file order) and a small_cnn AuditModel "cnn"."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from core.data.manifest import Manifest
    from core.models import build_model
    from core.models.checkpoints import save_workspace_model
    from core.workspace import Workspace

    w = Workspace(root)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        label = i % 3
        img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        img[..., label] = 255
        w.save_image(f"datasets/toy/images/{i}.png", Image.fromarray(img))
        rows.append({"sample_id": 100 - i, "path": f"images/{i}.png", "label": label, "class_name": "abc"[label],
                     "split": "train" if i < 20 else "val"})
    manifest = Manifest(pd.DataFrame(rows), root=w.path("datasets/toy"), class_names=["a", "b", "c"])
    with w.atomic_path("datasets/toy/manifest.parquet") as tmp:
        manifest.save(tmp)
    w.add_dataset("toy", manifest_rel="datasets/toy/manifest.parquet", root_rel="datasets/toy", source="test",
                  class_names=["a", "b", "c"])
    torch.manual_seed(0)
    save_workspace_model(w, "cnn", build_model("small_cnn", num_classes=3, widths=(4, 8, 8)), dataset="toy")
    return w
