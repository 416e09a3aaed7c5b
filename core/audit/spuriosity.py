"""Spuriosity of images and per-class spuriosity rankings (seed 002, METHODS.md §1).

Spuriosity of image i of class c = mean over c's spurious features j of the within-class z-score
``(a_ij - mean_c(a_j)) / std_c(a_j)``; higher spuriosity = stronger spurious cue. A class with no
spurious feature gets NaN scores and is listed in ``SpuriosityResult.classes_without_spurious``
(it is reported as such, never silently ranked).

Scale: the feature store is an (N, D) float16 memmap (ImageNet: 1.28M x 2048 = 5.2 GB). The scores
need only the <= m spurious columns of each row's own class, so the store is read once, sequentially,
in large row blocks (a fixed, reused buffer when the array is a file-backed memmap, so resident
memory stays bounded), and each block keeps only a gathered (B, m) float32 slice. The class
statistics are then O(N * m) ``bincount`` reductions and the ranking one ``lexsort``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from core.errors import SpurAuditError
from core.progress import ProgressFn, null_progress

__all__ = [
    "SpuriosityResult",
    "compute_spuriosity",
    "group_by_class",
    "iter_row_blocks",
    "gather_class_columns",
]


@dataclass
class SpuriosityResult:
    """Spuriosity scores and rankings of one split.

    scores: (N,) float32, row-aligned with the feature store; NaN for classes without spurious features.
    labels: (N,) int64 class of each row (ranking is within class).
    order: (N,) int64 row indices grouped by class (ascending class), ascending spuriosity within class.
    class_start: (K+1,) int64; rows of class c in ``order[class_start[c]:class_start[c+1]]``.
    spurious: the spurious features used per class.
    classes_without_spurious: classes that have no spurious feature (scores NaN, not ranked).
    """

    scores: np.ndarray
    labels: np.ndarray
    order: np.ndarray
    class_start: np.ndarray
    spurious: dict[int, list[int]]
    classes_without_spurious: list[int] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_start) - 1

    def ranking(self, class_index: int) -> np.ndarray:
        """Row indices of class ``class_index``, lowest spuriosity first (empty when unranked)."""
        if class_index in self.classes_without_spurious:
            return np.empty(0, dtype=np.int64)
        return self.order[self.class_start[class_index]:self.class_start[class_index + 1]]

    def lowest(self, class_index: int, n: int) -> np.ndarray:
        return self.ranking(class_index)[:n]

    def highest(self, class_index: int, n: int) -> np.ndarray:
        """The ``n`` highest-spuriosity rows, highest first."""
        r = self.ranking(class_index)
        return r[::-1][:n]


def group_by_class(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Group row indices by class once: ``order`` (stable argsort) and ``start`` (K+1 offsets)."""
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=num_classes)
    start = np.zeros(num_classes + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    return order, start


def iter_row_blocks(features: np.ndarray, *, block_rows: int = 16384):
    """Yield ``(row0, block)`` over ``features`` in row blocks, each block a float16/float32 array.

    For a file-backed ``np.memmap`` (as ``np.load(mmap_mode='r')`` returns), blocks are read with
    ``readinto`` into one reused buffer, so the pages never accumulate in this process's resident
    set; the yielded block is only valid until the next iteration.
    """
    n = features.shape[0]
    filename = getattr(features, "filename", None)
    offset = getattr(features, "offset", None)
    contiguous = features.flags["C_CONTIGUOUS"] if hasattr(features, "flags") else False
    if isinstance(features, np.memmap) and filename and offset is not None and contiguous \
            and features.ndim == 2 and _is_whole_file_view(features):
        row_bytes = features.shape[1] * features.dtype.itemsize
        buf = np.empty((min(block_rows, max(n, 1)), features.shape[1]), dtype=features.dtype)
        with open(filename, "rb", buffering=0) as fh:
            fh.seek(offset)
            for row0 in range(0, n, block_rows):
                rows = min(block_rows, n - row0)
                view = buf[:rows]
                mv = memoryview(view).cast("B")
                got = 0
                while got < rows * row_bytes:
                    r = fh.readinto(mv[got:])
                    if not r:
                        raise SpurAuditError(f"feature file {filename} is truncated at row {row0}; "
                                             "re-run feature extraction")
                    got += r
                yield row0, view
    else:
        for row0 in range(0, n, block_rows):
            yield row0, np.asarray(features[row0:row0 + block_rows])


def _is_whole_file_view(arr: np.memmap) -> bool:
    # A memmap sliced from a larger one keeps the base's filename/offset; only trust the offset when
    # this array owns its mapping start (np.load/np.memmap results do).
    base = arr.base
    try:
        import mmap

        return isinstance(base, mmap.mmap) and len(base) >= arr.offset + arr.nbytes
    except Exception:  # pragma: no cover - defensive
        return False


def _column_table(spurious: Mapping[int, Sequence[int]], num_classes: int, dim: int
                  ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(K, m) int64 column table (padded with 0) and (K, m) bool validity."""
    m = max([len(v) for v in spurious.values()] + [1])
    cols = np.zeros((num_classes, m), dtype=np.int64)
    valid = np.zeros((num_classes, m), dtype=bool)
    missing = []
    for c in range(num_classes):
        feats = list(dict.fromkeys(int(j) for j in spurious.get(c, [])))
        for j in feats:
            if not 0 <= j < dim:
                raise SpurAuditError(f"spurious feature {j} of class {c} is out of range [0, {dim}); "
                                     "check the labels against this model's feature dimension")
        if not feats:
            missing.append(c)
        cols[c, :len(feats)] = feats
        valid[c, :len(feats)] = True
    return cols, valid, missing


def gather_class_columns(features: np.ndarray, labels: np.ndarray, cols: np.ndarray, *,
                         block_rows: int = 16384, progress: ProgressFn | None = None) -> np.ndarray:
    """For every row i read ``features[i, cols[labels[i]]]`` -> (N, m) float32, streaming row blocks."""
    progress = progress or null_progress
    n = features.shape[0]
    m = cols.shape[1]
    out = np.empty((n, m), dtype=np.float32)
    for row0, block in iter_row_blocks(features, block_rows=block_rows):
        rows = block.shape[0]
        c = cols[labels[row0:row0 + rows]]                     # (B, m) column of each row's slot
        out[row0:row0 + rows] = np.take_along_axis(block, c, axis=1)  # (B, m)
        progress((row0 + rows) / max(n, 1), f"read {row0 + rows:,}/{n:,} rows")
    return out


def compute_spuriosity(features: np.ndarray, labels: np.ndarray, spurious: Mapping[int, Sequence[int]],
                       *, num_classes: int | None = None, block_rows: int = 16384,
                       progress: ProgressFn | None = None) -> SpuriosityResult:
    """Spuriosity scores and within-class rankings of one split.

    features: (N, D) float16/float32 array or memmap (row-aligned with ``labels``).
    labels: (N,) int class of each row (rankings are within the true class).
    spurious: class -> spurious feature indices of that class (from the label verdicts).
    Returns a `SpuriosityResult`; z-scores use the split's own class statistics (population std;
    a constant feature contributes 0).
    """
    progress = progress or null_progress
    if getattr(features, "ndim", 0) != 2:
        raise SpurAuditError("features must be a 2-D (N, D) array; load them with load_features()")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise SpurAuditError(f"labels has shape {labels.shape} but features has {features.shape[0]} rows; "
                             "both must come from the same split")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise SpurAuditError("labels contain negative class indices; use 0..K-1")
    k = int(num_classes if num_classes is not None else (labels.max() + 1 if labels.size else 0))
    if labels.size and labels.max() >= k:
        raise SpurAuditError(f"num_classes={k} but labels go up to {labels.max()}")
    if block_rows < 1:
        raise SpurAuditError("block_rows must be >= 1")
    cols, valid, missing = _column_table(spurious, k, features.shape[1])

    values = gather_class_columns(features, labels, cols, block_rows=block_rows,
                                  progress=lambda f, m: progress(0.9 * f, m))   # (N, m)
    m = cols.shape[1]
    counts = np.bincount(labels, minlength=k).astype(np.float64)             # (K,)
    safe = np.maximum(counts, 1.0)
    z = np.empty_like(values)
    for s in range(m):
        v = values[:, s].astype(np.float64)
        mu = np.bincount(labels, weights=v, minlength=k) / safe               # (K,)
        d = v - mu[labels]
        var = np.bincount(labels, weights=d * d, minlength=k) / safe
        sd = np.sqrt(var)
        sd_rows = sd[labels]
        z[:, s] = np.where(sd_rows > 0, d / np.where(sd_rows > 0, sd_rows, 1.0), 0.0)
    row_valid = valid[labels]                                                 # (N, m)
    n_valid = row_valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = (np.where(row_valid, z, 0.0).sum(axis=1) / n_valid).astype(np.float32)
    scores[n_valid == 0] = np.nan
    # Group by class, ascending spuriosity within class (NaN rows keep their stable order).
    order = np.lexsort((np.nan_to_num(scores, nan=0.0), labels)).astype(np.int64)
    class_start = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(counts.astype(np.int64), out=class_start[1:])
    progress(1.0, "spuriosity ranked")
    return SpuriosityResult(scores=scores, labels=labels, order=order, class_start=class_start,
                            spurious={c: [int(j) for j in cols[c][valid[c]]] for c in range(k)},
                            classes_without_spurious=missing)
