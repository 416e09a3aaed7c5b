"""Spuriosity of images and per-class spuriosity rankings (seed 002, METHODS.md §1).

Spuriosity of image i of class c = mean over c's spurious features j of the within-class z-score
``(a_ij - mean_c(a_j)) / std_c(a_j)``; higher spuriosity = stronger spurious cue. A class with no
spurious feature gets NaN scores and is listed in ``SpuriosityResult.classes_without_spurious``
(it is reported as such, never silently ranked).

Scale: the feature store is an (N, D) float16 memmap (ImageNet: 1.28M x 2048 = 5.2 GB). The scores
need only the <= m spurious columns of each row's own class, so the store is read once, sequentially,
in large row blocks (zero-copy views of one sequential mapping whose pages are released from the
process after each block, so resident memory stays bounded; every 4 KiB row is one page, so the
whole file is read whatever columns are needed), and each block keeps only a gathered (B, m)
float32 slice. The class
statistics are then O(N * m) ``bincount`` reductions and the ranking one ``lexsort``.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from core.errors import SpurAuditError
from core.progress import ProgressFn, null_progress

_READAHEAD_BYTES = 256 << 20   # asynchronous read-ahead window of the memmap reader

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
    """Yield ``(row0, block)`` over ``features`` in row blocks (float16/float32 arrays).

    For a file-backed ``np.memmap`` (as ``np.load(mmap_mode='r')`` returns), the file is mapped
    once with sequential read-ahead; each block is a zero-copy view of the mapping, and once it has
    been consumed its pages are released from this process (``MADV_DONTNEED``; the kernel's page
    cache keeps them), so resident memory stays at about one block whatever the file size. The
    yielded block is only valid until the next iteration — copy what you keep.
    """
    n = features.shape[0]
    if _mappable(features):
        yield from _iter_mmap_blocks(features, block_rows)
        return
    for row0 in range(0, n, block_rows):
        yield row0, np.asarray(features[row0:row0 + block_rows])


def _mappable(features: np.ndarray) -> bool:
    return (isinstance(features, np.memmap) and getattr(features, "filename", None) is not None
            and getattr(features, "offset", None) is not None and features.ndim == 2
            and features.flags["C_CONTIGUOUS"] and hasattr(mmap, "MADV_DONTNEED") and _is_whole_file_view(features))


def _iter_mmap_blocks(features: np.memmap, block_rows: int):
    n, d = features.shape
    row_bytes = d * features.dtype.itemsize
    page = mmap.PAGESIZE
    with open(features.filename, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        if hasattr(mmap, "MADV_SEQUENTIAL"):
            mm.madvise(mmap.MADV_SEQUENTIAL)
        ahead = max(1, _READAHEAD_BYTES // max(block_rows * row_bytes, 1))
        for b, row0 in enumerate(range(0, n, block_rows)):
            rows = min(block_rows, n - row0)
            start = features.offset + row0 * row_bytes
            if b % ahead == 0 and hasattr(mmap, "MADV_WILLNEED"):
                # start reading the next blocks asynchronously (deeper I/O queue on a cold cache)
                nxt = ((start + rows * row_bytes) // page) * page
                length = min(2 * _READAHEAD_BYTES, len(mm) - nxt)
                if length > 0:
                    mm.madvise(mmap.MADV_WILLNEED, nxt, length)
            block = np.frombuffer(mm, dtype=features.dtype, count=rows * d, offset=start).reshape(rows, d)
            yield row0, block
            del block
            first = (start // page) * page
            mm.madvise(mmap.MADV_DONTNEED, first, start + rows * row_bytes - first)
    finally:
        try:
            mm.close()
        except BufferError:  # a caller still holds the last block; the mapping closes when it is freed
            pass


def _sortable_uint(x: np.ndarray) -> np.ndarray:
    """float32 -> uint64 keys with the same order (-0.0 = +0.0); NaN gets the largest key (after +inf)."""
    x = np.asarray(x, dtype=np.float32) + np.float32(0.0)
    u = x.view(np.uint32).astype(np.uint64)
    neg = (u >> np.uint64(31)) == 1
    key = np.where(neg, ~u & np.uint64(0xFFFFFFFF), u | np.uint64(0x80000000))
    key[np.isnan(x)] = np.uint64(0xFFFFFFFF)
    return key


def class_score_order(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row indices grouped by class (ascending), ascending score within a class, ties by row index.

    The one NaN rule of every ranking: a row whose score is NaN (unknown spuriosity) sorts after every
    scored row of its class (numpy's convention), so it is never taken as a low-spuriosity image; a
    class whose scores are all NaN keeps row order. Same result as ``np.lexsort((scores, labels))``,
    with one integer-key sort (faster)."""
    key = (np.asarray(labels).astype(np.uint64) << np.uint64(32)) | _sortable_uint(scores)
    return np.argsort(key, kind="stable").astype(np.int64)


def _is_whole_file_view(arr: np.memmap) -> bool:
    # A memmap sliced from a larger one keeps the base's filename/offset; only trust the offset when
    # this array owns its mapping start (np.load / np.memmap results do).
    base = arr.base
    return isinstance(base, mmap.mmap) and len(base) >= arr.offset + arr.nbytes


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
    safe = np.maximum(counts, 1.0)[:, None]                                   # (K, 1)
    slot = (labels[:, None] * m + np.arange(m)).ravel()                       # (N*m,) class-slot index
    mu = (np.bincount(slot, weights=values.ravel(), minlength=k * m).reshape(k, m) / safe)   # (K, m)
    z = values - mu[labels].astype(np.float32)                                # (N, m) centred
    sd = np.sqrt(np.bincount(slot, weights=(z * z).ravel(), minlength=k * m).reshape(k, m) / safe)
    inv = np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 0.0).astype(np.float32)  # constant -> z = 0
    z *= inv[labels]
    row_valid = valid[labels]                                                 # (N, m)
    n_valid = row_valid.sum(axis=1)
    z[~row_valid] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = (z.sum(axis=1) / n_valid).astype(np.float32)
    scores[n_valid == 0] = np.nan
    # Group by class, ascending spuriosity within class (NaN rows keep their stable order).
    order = class_score_order(labels, scores)
    class_start = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(counts.astype(np.int64), out=class_start[1:])
    progress(1.0, "spuriosity ranked")
    return SpuriosityResult(scores=scores, labels=labels, order=order, class_start=class_start,
                            spurious={c: [int(j) for j in cols[c][valid[c]]] for c in range(k)},
                            classes_without_spurious=missing)
