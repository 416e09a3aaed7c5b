"""Tiny, fast rare-pattern runs for the tests (sklearn digits, a one-layer MLP, a couple of epochs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_sweep(**overrides) -> dict:
    """SweepConfig fields of a sweep that trains in well under a second per cell."""
    base = dict(data="digits", n_train=200, patterns=("s3",), counts=(0, 5), seeds=(0, 1), epochs=8,
                model_kwargs={"hidden": [16]}, membership=False, device="cpu", lr_sgd=0.05)
    base.update(overrides)
    return base


def draw_logo(path: Path, size: int = 4) -> Path:
    """A small RGBA logo (opaque red square with a transparent corner), the kind a user uploads."""
    from PIL import Image

    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, mode="RGBA").save(path)
    return path


def tiny_cmnist(ws, name: str = "cmnist") -> str:
    """A 300-image Colored-MNIST workspace dataset (200 / 50 / 50)."""
    from core.data import build_dataset

    if not ws.has_dataset(name):
        build_dataset(ws, "colored-mnist", name, seed=0, conflict=0.05, n_train=200, n_val=50, n_test=50)
    return name


def populate_rare_workspace(root: Path) -> dict:
    """A workspace with one finished sweep (two regularisers, membership, deletion) and one canary
    audit with a user patch; returns the run ids."""
    import torch

    from core.rare.canary import run_canary
    from core.rare.sweep import run_sweep
    from core.workspace import Workspace

    torch.set_num_threads(1)
    ws = Workspace(root)
    sweep = run_sweep(ws, tiny_sweep(patterns=("s3", "r3"), regularisers=("none", "wd=0.01"), membership=True,
                                     deletion_counts=(5,), deletion_epochs=1, lissa_iterations=3))
    tiny_cmnist(ws)
    logo = draw_logo(ws.path("logo.png"))
    canary = run_canary(ws, {"dataset": "cmnist", "arch": "mlp", "model_kwargs": {"hidden": [16]},
                             "train": {"epochs": 1, "lr": 0.01}, "pattern": "patch",
                             "patch": {"path": str(logo), "position": "top-left"}, "counts": (0, 10), "seeds": (0, 1),
                             "device": "cpu"})
    return {"root": str(ws.root), "sweep": sweep.run_id, "canary": canary.run_id}
